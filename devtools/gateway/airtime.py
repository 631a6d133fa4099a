"""The local gateway's airtime: ``POST /version1/airtime/send`` as Africa's Talking answers it."""

import json
import threading
import uuid

from flask import Blueprint, jsonify, request


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
            responses, sent, total, currency = [], 0, 0.0, "KES"
            for recipient in recipients:
                number, amount = str(recipient.get("phoneNumber")), str(recipient.get("amount"))
                currency = amount.split()[0] if " " in amount else currency  # as the request says it
                ok = number not in self._failing
                responses.append(
                    {
                        "phoneNumber": number,
                        "amount": amount,
                        "discount": f"{currency} 0.0000",
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
                "totalAmount": f"{currency} {total:.4f}",
                "totalDiscount": f"{currency} 0.0000",
                "responses": responses,
            }
            if idempotency_key:
                self._answers[idempotency_key] = answer
        return jsonify(answer), 201


def airtime_blueprint(airtime: Airtimes, api_key) -> Blueprint:  # api_key(): the key expected
    """``POST /version1/airtime/send`` as the SDK's AirtimeService sends it (form: username,
    recipients = JSON [{phoneNumber, amount: "KES 100"}]; headers apiKey, Idempotency-Key);
    ``POST /_gateway/airtime`` (JSON: fail, fail_next, http_status) sets up its failures."""
    bp = Blueprint("airtime", __name__)

    @bp.post("/version1/airtime/send")
    def send():
        return airtime.send(
            request.form,
            request.headers.get("apiKey"),
            api_key(),
            request.headers.get("Idempotency-Key"),
        )

    @bp.post("/_gateway/airtime")
    def control():
        spec = request.get_json(silent=True) or {}
        try:
            if "fail" in spec:
                airtime.fail(str(spec["fail"]))
            if "fail_next" in spec:
                airtime.fail_next(int(spec["fail_next"]), int(spec.get("http_status", 500)))
        except (TypeError, ValueError):
            return jsonify({"error": "bad airtime spec"}), 400
        return jsonify({"ok": True})

    return bp
