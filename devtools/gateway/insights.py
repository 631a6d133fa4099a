"""The local gateway's SIM-swap insight: ``POST /v1/sim-swap`` as Africa's Talking answers it."""

import threading
import uuid
from datetime import UTC, datetime, timedelta

from flask import Blueprint, jsonify, request


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


def sim_swap_blueprint(sim_swaps: SimSwaps, api_key) -> Blueprint:  # api_key(): the key expected
    """``POST /v1/sim-swap`` as the SDK's InsightService sends it (JSON: username,
    phoneNumbers; header apiKey); ``POST /_gateway/sim-swap`` (JSON: swap, days_ago, hang,
    release) sets it up when the gateway runs as a process."""
    bp = Blueprint("sim_swap", __name__)

    @bp.post("/v1/sim-swap")
    def check():
        payload = request.get_json(silent=True) or {}
        return sim_swaps.check(payload, request.headers.get("apiKey"), api_key())

    @bp.post("/_gateway/sim-swap")
    def control():
        spec = request.get_json(silent=True) or {}
        try:
            if "swap" in spec:
                sim_swaps.swap(str(spec["swap"]), int(spec.get("days_ago", 0)))
            if spec.get("hang"):
                sim_swaps.hang()
            if spec.get("release"):
                sim_swaps.release()
        except (TypeError, ValueError):
            return jsonify({"error": "bad sim-swap spec"}), 400
        return jsonify({"ok": True})

    return bp
