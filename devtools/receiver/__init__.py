"""A local stand-in for a merchant's system, for development (``make run``) and tests: it
receives Tuma's webhook events and answers pay-bill validation, as a merchant's server would.

- ``POST /hooks/<name>``: an event. Recorded (raw body, headers, whether ``Tuma-Signature``
  verifies under the secret it was given), answered 200, unless told to fail.
- ``POST /validate/<name>``: a pay-bill validation question; answers ``{"accept": true}``
  unless the account reference was refused (``refuse(reference)``).
- ``GET /events[?name=...]``: the events answered 200, as JSON (the phone simulator's pane).

Tests (and a developer) can make it misbehave, through the Python API of ``Receiver`` when it
runs in a thread, or ``POST /_receiver/faults`` (JSON) when it runs as a process:
``fail_next(times, http_status=500)``, ``delay_next(seconds, times=1)`` (answer late),
``refuse(reference)``.

``python -m devtools.receiver --port 8026 --secret whsec_...`` runs it (refuses
``TUMA_ENV=production``); ``serve_in_thread()`` runs it in the background with its URL.
The signature is checked here with ``ussd_app.events.signing.verify``; tests check it again
with an implementation of their own.
"""

import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from flask import Blueprint, Flask, jsonify, request
from werkzeug.serving import make_server

from ussd_app.events import signing


@dataclass
class Received:
    name: str
    event_id: str | None
    type: str | None
    body: str  # the raw body, as signed
    signature: str | None
    verified: bool
    received_at: str
    data: dict | None = None


@dataclass
class Receiver:
    """What it received and how it should misbehave. Thread-safe."""

    secret: str | None = None
    received: list[Received] = field(default_factory=list)  # answered 200
    attempts: int = 0  # every POST to /hooks, answered or failed
    questions: list[dict] = field(default_factory=list)  # validation questions, as received
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failures: list[int] = field(default_factory=list, repr=False)
    _delays: list[float] = field(default_factory=list, repr=False)
    _refused: set[str] = field(default_factory=set, repr=False)

    def fail_next(self, times: int = 1, http_status: int = 500) -> None:
        with self._lock:
            self._failures.extend([http_status] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._delays.extend([seconds] * times)

    def refuse(self, reference: str) -> None:
        with self._lock:
            self._refused.add(reference.upper())

    def events(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if name is None or r.name == name]

    def _fault(self) -> tuple[int | None, float]:
        with self._lock:
            return (
                self._failures.pop(0) if self._failures else None,
                self._delays.pop(0) if self._delays else 0.0,
            )

    def event(self, name: str, raw: bytes, headers):
        with self._lock:
            self.attempts += 1
        status, delay = self._fault()
        if delay:
            time.sleep(delay)
        if status is not None:
            return jsonify({"error": "told to fail"}), status
        header = headers.get(signing.HEADER)
        verified = bool(self.secret and header and signing.verify(self.secret, raw, header))
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        entry = Received(
            name=name,
            event_id=headers.get(signing.EVENT_ID_HEADER),
            type=headers.get(signing.EVENT_TYPE_HEADER),
            body=raw.decode(errors="replace"),
            signature=header,
            verified=verified,
            received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data=data if isinstance(data, dict) else None,
        )
        with self._lock:
            self.received.append(entry)
        return jsonify({"received": True})

    def validate(self, raw: bytes, headers):
        status, delay = self._fault()
        if delay:
            time.sleep(delay)
        if status is not None:
            return jsonify({"error": "told to fail"}), status
        try:
            question = json.loads(raw)
        except ValueError:
            return jsonify({"error": "not JSON"}), 400
        with self._lock:
            self.questions.append(question)
            refused = str(question.get("account_reference", "")).upper() in self._refused
        return jsonify({"accept": not refused})


def _routes(receiver: Receiver) -> Blueprint:
    bp = Blueprint("receiver", __name__)

    @bp.post("/hooks/<path:name>")
    def hook(name):
        return receiver.event(name, request.get_data(), request.headers)

    @bp.post("/validate/<path:name>")
    def validate(name):
        return receiver.validate(request.get_data(), request.headers)

    @bp.get("/events")
    def events():
        found = receiver.events(request.args.get("name"))
        return jsonify({"events": [asdict(r) for r in reversed(found)]})

    @bp.post("/_receiver/faults")
    def faults():
        spec = request.get_json(silent=True) or {}
        try:
            if "fail_next" in spec:
                receiver.fail_next(int(spec["fail_next"]), int(spec.get("http_status", 500)))
            if "delay_next" in spec:
                receiver.delay_next(float(spec["delay_next"]), int(spec.get("times", 1)))
            if "refuse" in spec:
                receiver.refuse(str(spec["refuse"]))
        except (TypeError, ValueError):
            return jsonify({"error": "bad fault spec"}), 400
        return jsonify({"ok": True})

    return bp


def create_receiver(receiver: Receiver | None = None) -> Flask:
    app = Flask(__name__)
    app.extensions["receiver"] = receiver or Receiver()
    app.register_blueprint(_routes(app.extensions["receiver"]))
    return app


class RunningReceiver:
    """A receiver serving from a background thread; ``url`` is its base URL."""

    _ids = itertools.count()

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0):
        self.receiver = receiver
        self._server = make_server(host, port, create_receiver(receiver), threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"webhook-receiver-{next(self._ids)}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_in_thread(receiver: Receiver | None = None, port: int = 0) -> RunningReceiver:
    return RunningReceiver(receiver or Receiver(), port=port)
