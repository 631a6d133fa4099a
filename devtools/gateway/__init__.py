"""A local stand-in for Africa's Talking's API, for development (``make run``) and tests.

It speaks what the ``africastalking`` SDK sends, so the real SDK talks to it unchanged
(point ``AT_API_URL`` at it):

- ``POST /version1/messaging`` (form: username, to = comma-separated numbers, message, from,
  enqueue; header apiKey) answers 201 with ``SMSMessageData`` as Africa's Talking does, and
  records every message.
- ``GET /messages[?phone=+2547...]`` lists recorded messages as JSON (a phone simulator's inbox).

Tests (and a developer) can make it misbehave, through the Python API of ``Gateway`` when it
runs in a thread, or ``POST /_gateway/faults`` (JSON) when it runs as a process:

- ``fail_next(times, http_status=500, after=0)``: after ``after`` more requests, the next
  ``times`` get that HTTP status (429 for Africa's Talking's rate limit);
- ``refuse(phone, status_code=403, times=None)``: that number gets a per-recipient refusal
  (every time, or the next ``times`` times);
- ``hold_next(times, after=0)``: after ``after`` more requests, the next ``times`` wait until
  ``release()`` (a gateway that hangs);
- ``outage(http_status=503)``: every request gets that HTTP status until ``recover()`` (a
  gateway down for everyone, however long); ``outage(http_status, phone=...)``: only requests
  to that number do, until ``recover(phone)`` or ``recover()`` (a "poison" message: its own
  call fails at the HTTP level while the gateway answers everyone else).

Other products plug in as blueprints on the same app (airtime ``/version1/airtime/send``, SIM
swap insights): a module with its state and a blueprint factory, registered in ``create_gateway``.
SIM swap: ``POST /v1/sim-swap`` answers like Africa's Talking's insight (``Gateway.sim_swaps``:
``swap(phone, days_ago)`` marks a number swapped, ``hang()``/``release()`` make it not answer).

``python -m devtools.gateway --port 8025`` runs it (never with ``TUMA_ENV=production``: it
refuses); ``serve_in_thread()`` runs it in the background and returns a handle with its URL.
SIM swap is in ``insights.py``, airtime in ``airtime.py``; the command line in ``__main__.py``.
It keeps HTTP/1.1 connections alive between requests, as Africa's Talking does (``server.py``).
"""

import itertools
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from flask import Blueprint, Flask, jsonify, request

from ussd_app import country

from .airtime import Airtimes, airtime_blueprint
from .insights import SimSwaps, sim_swap_blueprint
from .server import close_connections, make_gateway_server

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
COST_PER_MESSAGE = "0.8000"  # in the account's currency (Gateway.currency), for one segment


def _currency() -> str:
    """An Africa's Talking account bills in its country's currency: ``TUMA_COUNTRY``'s."""
    return country.profile(os.environ.get("TUMA_COUNTRY") or country.DEFAULT_COUNTRY).currency


@dataclass
class Message:
    id: str
    to: str
    message: str
    sender: str | None
    username: str
    received_at: str


@dataclass
class Gateway:
    """The gateway's state: what it received and how it should misbehave. Thread-safe."""

    api_key: str | None = None  # when set, requests with another apiKey get 401
    currency: str = field(default_factory=_currency)  # what the message costs are said in
    messages: list[Message] = field(default_factory=list)
    requests_seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failures: list[int] = field(default_factory=list, repr=False)
    _fail_after: int = 0
    _refusals: dict[str, list] = field(default_factory=dict, repr=False)
    _hold_after: int = 0
    _outage: int | None = None
    _phone_outages: dict[str, int] = field(default_factory=dict, repr=False)
    _holds: int = 0
    _held: int = 0
    _released: threading.Event = field(default_factory=threading.Event, repr=False)
    sim_swaps: SimSwaps = field(default_factory=SimSwaps, repr=False)
    airtime: Airtimes = field(default_factory=Airtimes, repr=False)

    # -- faults ---------------------------------------------------------------------------
    def fail_next(self, times: int = 1, http_status: int = 500, after: int = 0) -> None:
        with self._lock:
            self._fail_after = after
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

    def outage(self, http_status: int = 503, phone: str | None = None) -> None:
        with self._lock:
            if phone is None:
                self._outage = http_status
            else:
                self._phone_outages[phone] = http_status

    def recover(self, phone: str | None = None) -> None:
        """End the outage of ``phone`` only, or (None) every outage."""
        with self._lock:
            if phone is None:
                self._outage = None
                self._phone_outages.clear()
            else:
                self._phone_outages.pop(phone, None)

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
            if self._outage is not None:
                return self._outage, False
            if self._failures and self._fail_after:
                self._fail_after -= 1
                return None, False
            return (self._failures.pop(0) if self._failures else None), False

    def _phone_outage(self, to: str | None) -> int | None:
        """The HTTP status of an outage of one of the request's numbers (``outage(phone=...)``)."""
        with self._lock:
            if not self._phone_outages:
                return None
            numbers = (n.strip() for n in (to or "").split(","))
            return next((self._phone_outages[n] for n in numbers if n in self._phone_outages), None)

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
        if status is None:
            status = self._phone_outage(form.get("to"))
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
                    entry.update(cost=f"{self.currency} {COST_PER_MESSAGE}", messageId=message_id)
                    total += 1
                else:
                    entry.update(cost="0", messageId="None")
            recipients.append(entry)
        cost = f"{self.currency} {total * float(COST_PER_MESSAGE):.4f}"
        summary = f"Sent to {total}/{len(recipients)} Total Cost: {cost}"
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
                gateway.fail_next(
                    int(spec["fail_next"]), int(spec.get("http_status", 500)), int(spec.get("after", 0))
                )
            if "refuse" in spec:
                gateway.refuse(str(spec["refuse"]), int(spec.get("status_code", 403)))
            if "hold_next" in spec:
                gateway.hold_next(int(spec["hold_next"]), int(spec.get("after", 0)))
            if spec.get("release"):
                gateway.release()
            phone = str(spec["phone"]) if spec.get("phone") else None
            if "outage" in spec:
                gateway.outage(int(spec["outage"]), phone)
            if spec.get("recover"):
                gateway.recover(phone)
        except (TypeError, ValueError):
            return jsonify({"error": "bad fault spec"}), 400
        return jsonify({"ok": True})

    return bp


def create_gateway(gateway: Gateway | None = None) -> Flask:
    gateway = gateway or Gateway()
    app = Flask(__name__)
    app.extensions["gateway"] = gateway
    app.register_blueprint(_messaging(gateway))
    app.register_blueprint(sim_swap_blueprint(gateway.sim_swaps, lambda: gateway.api_key))
    app.register_blueprint(airtime_blueprint(gateway.airtime, lambda: gateway.api_key))
    return app


class RunningGateway:
    """A gateway serving from a background thread; ``url`` is what AT_API_URL should be."""

    _ids = itertools.count()

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0):
        self.gateway = gateway
        self._server = make_gateway_server(host, port, create_gateway(gateway))
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
        close_connections(self._server)  # a stopped gateway answers on no connection
        self._thread.join(timeout=5)


def serve_in_thread(gateway: Gateway | None = None, port: int = 0) -> RunningGateway:
    return RunningGateway(gateway or Gateway(), port=port)
