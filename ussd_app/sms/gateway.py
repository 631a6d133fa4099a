"""A local stand-in for Africa's Talking's API, for development (``make run``) and tests.

It speaks what the ``africastalking`` SDK sends, so the real SDK talks to it unchanged
(point ``AT_API_URL`` at it):

- ``POST /version1/messaging`` (form: username, to = comma-separated numbers, message, from,
  enqueue; header apiKey) answers 201 with ``SMSMessageData`` as Africa's Talking does, and
  records every message.
- ``GET /messages[?phone=+2547...]`` lists recorded messages as JSON (a phone simulator's inbox).

Tests (and a developer) can make it misbehave, through the Python API of ``Gateway`` when it
runs in a thread, or ``POST /_gateway/faults`` (JSON) when it runs as a process:

- ``fail_next(times, http_status=500)``: the next ``times`` requests get that HTTP status;
- ``refuse(phone, status_code=403, times=None)``: that number gets a per-recipient refusal
  (every time, or the next ``times`` times);
- ``hold_next(times, after=0)``: after ``after`` more requests, the next ``times`` wait until
  ``release()`` (a gateway that hangs).

Other products plug in as blueprints on the same app (airtime ``/version1/airtime/send``, SIM
swap insights): add a blueprint factory next to ``_messaging`` and register it in ``create_gateway``.
SIM swap: ``POST /v1/sim-swap`` answers like Africa's Talking's insight (``Gateway.sim_swaps``:
``swap(phone, days_ago)`` marks a number swapped, ``hang()``/``release()`` make it not answer).

``python -m ussd_app.sms.gateway --port 8025`` runs it (never with ``TUMA_ENV=production``: it
refuses); ``serve_in_thread()`` runs it in the background and returns a handle with its URL.
"""

import argparse
import itertools
import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Flask, jsonify, request
from werkzeug.serving import make_server

AT_STATUS = {
    101: "Success",
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}
COST_PER_MESSAGE = "0.8000"  # KES, for a one-segment message


@dataclass
class Message:
    id: str
    to: str
    message: str
    sender: str | None
    username: str
    received_at: str


class SimSwaps:
    """The SIM-swap insight's state: numbers whose SIM was swapped, and whether to hang.

    ``swap(phone, days_ago=0)`` records a swap; ``hang()`` makes every check wait until
    ``release()`` (a gateway that does not answer in time). Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._swapped: dict[str, datetime] = {}
        self._answer = threading.Event()
        self._answer.set()
        self.checks = 0

    def swap(self, phone: str, days_ago: int = 0) -> None:
        with self._lock:
            self._swapped[phone] = datetime.now(UTC) - timedelta(days=days_ago)

    def hang(self) -> None:
        self._answer.clear()

    def release(self) -> None:
        self._answer.set()

    def check(self, payload, api_key: str | None, expected_key: str | None):
        with self._lock:
            self.checks += 1
        self._answer.wait()
        if not api_key or (expected_key is not None and api_key != expected_key):
            return "The supplied authentication is invalid", 401
        numbers = payload.get("phoneNumbers") if isinstance(payload, dict) else None
        if not payload.get("username") or not isinstance(numbers, list) or not numbers:
            return "Missing required field: username and phoneNumbers are required", 400
        responses = []
        for number in numbers:
            with self._lock:
                swapped = self._swapped.get(str(number))
            responses.append(
                {
                    "phoneNumber": {"number": str(number), "numberType": "Mobile"},
                    "status": "Swapped" if swapped else "NotSwapped",
                    "lastSimSwapDate": swapped.strftime("%d-%m-%Y") if swapped else "01-01-1900",
                    "requestId": f"ATSwpid_{uuid.uuid4().hex}",
                }
            )
        return jsonify(
            {"status": "Processed", "transactionId": str(uuid.uuid4()), "responses": responses}
        ), 200


class Airtimes:
    """Airtime's state: what was sent, by idempotency key, and the numbers it cannot top up.

    ``fail(phone)`` makes every send to that number fail the way Africa's Talking reports it
    (``status: Failed`` in an HTTP 201 answer); ``fail_next(times, http_status)`` makes the
    next sends answer that HTTP status (a gateway in trouble). A repeated ``Idempotency-Key``
    gets the first answer again and sends nothing. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.sent: list[dict] = []
        self._answers: dict[str, dict] = {}
        self._failing: set[str] = set()
        self._http: list[int] = []
        self.calls = 0

    def fail(self, phone: str) -> None:
        with self._lock:
            self._failing.add(phone)

    def fail_next(self, times: int = 1, http_status: int = 500) -> None:
        with self._lock:
            self._http.extend([http_status] * times)

    def send(self, form, api_key: str | None, expected_key: str | None, idempotency_key: str | None):
        with self._lock:
            self.calls += 1
            if self._http:
                return "Internal Server Error", self._http.pop(0)
        if not api_key or (expected_key is not None and api_key != expected_key):
            return "The supplied authentication is invalid", 401
        try:
            recipients = json.loads(form.get("recipients") or "")
        except ValueError:
            recipients = None
        if not form.get("username") or not isinstance(recipients, list) or not recipients:
            return "Missing required field: username and recipients are required", 400
        with self._lock:
            if idempotency_key and idempotency_key in self._answers:
                return jsonify(self._answers[idempotency_key]), 201
            responses, sent, total = [], 0, 0.0
            for recipient in recipients:
                number, amount = str(recipient.get("phoneNumber")), str(recipient.get("amount"))
                ok = number not in self._failing
                responses.append(
                    {
                        "phoneNumber": number,
                        "amount": amount,
                        "discount": "KES 0.0000",
                        "status": "Sent" if ok else "Failed",
                        "requestId": f"ATQid_{uuid.uuid4().hex}" if ok else "None",
                        "errorMessage": "None" if ok else "Invalid phone number",
                    }
                )
                if ok:
                    sent += 1
                    total += float(amount.split()[-1])
                    self.sent.append({"phoneNumber": number, "amount": amount, "key": idempotency_key})
            answer = {
                "errorMessage": "None" if sent else "Could not send any airtime",
                "numSent": sent,
                "totalAmount": f"KES {total:.4f}",
                "totalDiscount": "KES 0.0000",
                "responses": responses,
            }
            if idempotency_key:
                self._answers[idempotency_key] = answer
        return jsonify(answer), 201


@dataclass
class Gateway:
    """The gateway's state: what it received and how it should misbehave. Thread-safe."""

    api_key: str | None = None  # when set, requests with another apiKey get 401
    messages: list[Message] = field(default_factory=list)
    requests_seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failures: list[int] = field(default_factory=list, repr=False)
    _refusals: dict[str, list] = field(default_factory=dict, repr=False)
    _hold_after: int = 0
    _holds: int = 0
    _held: int = 0
    _released: threading.Event = field(default_factory=threading.Event, repr=False)
    sim_swaps: SimSwaps = field(default_factory=SimSwaps, repr=False)
    airtime: Airtimes = field(default_factory=Airtimes, repr=False)

    # -- faults ---------------------------------------------------------------------------
    def fail_next(self, times: int = 1, http_status: int = 500) -> None:
        with self._lock:
            self._failures.extend([http_status] * times)

    def refuse(self, phone: str, status_code: int = 403, times: int | None = None) -> None:
        with self._lock:
            self._refusals[phone] = [status_code, times]

    def hold_next(self, times: int = 1, after: int = 0) -> None:
        with self._lock:
            self._hold_after = after
            self._holds = times
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def held(self) -> int:
        """How many requests are waiting for ``release()`` right now."""
        with self._lock:
            return self._held

    # -- reading --------------------------------------------------------------------------
    def inbox(self, phone: str | None = None) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if phone is None or m.to == phone]

    # -- the API --------------------------------------------------------------------------
    def _take_fault(self) -> tuple[int | None, bool]:
        with self._lock:
            self.requests_seen += 1
            if self._hold_after:
                self._hold_after -= 1
            elif self._holds:
                self._holds -= 1
                self._held += 1
                return None, True
            return (self._failures.pop(0) if self._failures else None), False

    def _refusal(self, number: str) -> int:
        """The statusCode for ``number`` (101 unless refused). Caller holds the lock."""
        refusal = self._refusals.get(number)
        if refusal is None:
            return 101
        code, times = refusal
        if times is not None:
            refusal[1] = times - 1
            if refusal[1] <= 0:
                del self._refusals[number]
        return code

    def messaging(self, form, api_key: str | None):
        status, hold = self._take_fault()
        if hold:
            self._released.wait()
            with self._lock:
                self._held -= 1
        if status is not None:
            return "Internal Server Error" if status >= 500 else "Request failed", status
        if not api_key or (self.api_key is not None and api_key != self.api_key):
            return "The supplied authentication is invalid", 401
        username, message, to = form.get("username"), form.get("message"), form.get("to")
        if not username or not message or not to:
            return "Missing required field: username, to and message are required", 400
        recipients, total = [], 0
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for number in (n.strip() for n in to.split(",") if n.strip()):
            with self._lock:
                code = self._refusal(number)
                entry = {"statusCode": code, "number": number, "status": AT_STATUS.get(code, "Failed")}
                if code == 101:
                    message_id = f"ATXid_{uuid.uuid4().hex}"
                    self.messages.append(
                        Message(message_id, number, message, form.get("from"), username, now)
                    )
                    entry.update(cost=f"KES {COST_PER_MESSAGE}", messageId=message_id)
                    total += 1
                else:
                    entry.update(cost="0", messageId="None")
            recipients.append(entry)
        summary = f"Sent to {total}/{len(recipients)} Total Cost: KES {total * float(COST_PER_MESSAGE):.4f}"
        return jsonify({"SMSMessageData": {"Message": summary, "Recipients": recipients}}), 201


def _messaging(gateway: Gateway) -> Blueprint:
    bp = Blueprint("messaging", __name__)

    @bp.post("/version1/messaging")
    def send():
        return gateway.messaging(request.form, request.headers.get("apiKey"))

    @bp.get("/messages")
    def messages():
        phone = request.args.get("phone")
        if phone is not None:
            # A "+" in a query string arrives as a space unless it was encoded.
            phone = "+" + phone.strip().lstrip("+")
        return jsonify({"messages": [asdict(m) for m in gateway.inbox(phone)]})

    @bp.post("/_gateway/faults")
    def faults():
        spec = request.get_json(silent=True) or {}
        try:
            if "fail_next" in spec:
                gateway.fail_next(int(spec["fail_next"]), int(spec.get("http_status", 500)))
            if "refuse" in spec:
                gateway.refuse(str(spec["refuse"]), int(spec.get("status_code", 403)))
            if "hold_next" in spec:
                gateway.hold_next(int(spec["hold_next"]), int(spec.get("after", 0)))
            if spec.get("release"):
                gateway.release()
        except (TypeError, ValueError):
            return jsonify({"error": "bad fault spec"}), 400
        return jsonify({"ok": True})

    return bp


def _sim_swap(gateway: Gateway) -> Blueprint:
    """``POST /v1/sim-swap`` as the SDK's InsightService sends it (JSON: username,
    phoneNumbers; header apiKey); ``POST /_gateway/sim-swap`` (JSON: swap, days_ago, hang,
    release) sets it up when the gateway runs as a process."""
    bp = Blueprint("sim_swap", __name__)

    @bp.post("/v1/sim-swap")
    def check():
        payload = request.get_json(silent=True) or {}
        return gateway.sim_swaps.check(payload, request.headers.get("apiKey"), gateway.api_key)

    @bp.post("/_gateway/sim-swap")
    def control():
        spec = request.get_json(silent=True) or {}
        try:
            if "swap" in spec:
                gateway.sim_swaps.swap(str(spec["swap"]), int(spec.get("days_ago", 0)))
            if spec.get("hang"):
                gateway.sim_swaps.hang()
            if spec.get("release"):
                gateway.sim_swaps.release()
        except (TypeError, ValueError):
            return jsonify({"error": "bad sim-swap spec"}), 400
        return jsonify({"ok": True})

    return bp


def _airtime(gateway: Gateway) -> Blueprint:
    """``POST /version1/airtime/send`` as the SDK's AirtimeService sends it (form: username,
    recipients = JSON [{phoneNumber, amount: "KES 100"}]; headers apiKey, Idempotency-Key);
    ``POST /_gateway/airtime`` (JSON: fail, fail_next, http_status) sets up its failures."""
    bp = Blueprint("airtime", __name__)

    @bp.post("/version1/airtime/send")
    def send():
        return gateway.airtime.send(
            request.form,
            request.headers.get("apiKey"),
            gateway.api_key,
            request.headers.get("Idempotency-Key"),
        )

    @bp.post("/_gateway/airtime")
    def control():
        spec = request.get_json(silent=True) or {}
        try:
            if "fail" in spec:
                gateway.airtime.fail(str(spec["fail"]))
            if "fail_next" in spec:
                gateway.airtime.fail_next(int(spec["fail_next"]), int(spec.get("http_status", 500)))
        except (TypeError, ValueError):
            return jsonify({"error": "bad airtime spec"}), 400
        return jsonify({"ok": True})

    return bp


def create_gateway(gateway: Gateway | None = None) -> Flask:
    gateway = gateway or Gateway()
    app = Flask(__name__)
    app.extensions["gateway"] = gateway
    app.register_blueprint(_messaging(gateway))
    app.register_blueprint(_sim_swap(gateway))
    app.register_blueprint(_airtime(gateway))
    return app


class RunningGateway:
    """A gateway serving from a background thread; ``url`` is what AT_API_URL should be."""

    _ids = itertools.count()

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0):
        self.gateway = gateway
        self._server = make_server(host, port, create_gateway(gateway), threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"at-gateway-{next(self._ids)}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.gateway.release()  # a held request must not keep the server from stopping
        self.gateway.sim_swaps.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_in_thread(gateway: Gateway | None = None, port: int = 0) -> RunningGateway:
    return RunningGateway(gateway or Gateway(), port=port)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ussd_app.sms.gateway", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    if os.environ.get("TUMA_ENV") == "production":
        # It accepts any API key and records every message instead of sending it.
        parser.exit(
            2, "Refusing to start: TUMA_ENV=production. The local gateway is for development and tests.\n"
        )
    server = make_server(args.host, args.port, create_gateway(), threaded=True)
    print(f"Local Africa's Talking gateway on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
