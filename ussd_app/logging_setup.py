"""Structured logs: one JSON object a line, each carrying the trace id it belongs to.

The trace id names one web request: it is minted (or taken from a well-formed ``X-Request-Id``
header, the name proxies use) when the web request starts, and follows a transfer from the
webhook to the worker to the SMS: ``ops.tracing`` remembers, for each transfer request
recorded, the trace id of the web request that recorded it, and the worker's jobs and the SMS
sender's log lines name it again. (A trace id is never a transfer request's id: that is
``transfer_id`` in a log line.)

Nothing here logs request bodies. The USSD ``text`` field carries PINs: the webhook logs only
its redacted shape (``ussd.views.redact``), and that is the rule for every log line.
"""

import contextvars
import json
import logging
import os
import re
import traceback
from contextlib import contextmanager
from datetime import UTC, datetime

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)
transfer_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("transfer_id", default=None)

_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_trace_id(offered: str | None = None) -> str:
    """The caller's id when it looks like one (a proxy's), else a fresh one."""
    if offered and _WELL_FORMED.match(offered):
        return offered
    return os.urandom(16).hex()  # 32 hex digits, as uuid4().hex, without building a UUID


def current_trace_id() -> str | None:
    return trace_id_var.get()


@contextmanager
def bound(trace_id: str | None = None, transfer_id: str | None = None):
    """Log lines inside carry these ids (a job, one receipt)."""
    tokens = []
    if trace_id is not None:
        tokens.append((trace_id_var, trace_id_var.set(trace_id)))
    if transfer_id is not None:
        tokens.append((transfer_id_var, transfer_id_var.set(transfer_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


# One encoder for every line. ``JSONEncoder.encode`` makes json's C encoder anew on each call
# (its arguments checked, a closure made: a third of a line's JSON); the one it makes for
# ``JSONEncoder(ensure_ascii=False)`` is made here once and kept, so a line's text is the same.
# No check for cycles: a line's fields are strings, numbers and a list of strings.
_JSON = json.JSONEncoder(ensure_ascii=False)
_line = json.encoder.c_make_encoder(
    None, _JSON.default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
)


def _encode(entry: dict) -> str:
    return "".join(_line(entry, 0))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "trace_id", "transfer_id", ...extra}``.

    Per line it does only what changes from one line to the next: the timestamp's text up to
    the second is kept for the second it names, the extra fields are looked for only when a
    record has a field a plain record lacks, and one JSON encoder serves every line."""

    _second: tuple[int, str] = (-1, "")  # (a whole second since the epoch, its ISO text)

    def _timestamp(self, created: float) -> str:
        """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``: its
        microseconds rounded half to even from the fraction as datetime does (a fraction that
        rounds up to a whole second counts in the next second), then truncated to milliseconds."""
        seconds = int(created)
        micros = round((created - seconds) * 1e6)
        if micros >= 1_000_000:
            seconds += 1
            micros -= 1_000_000
        second, text = self._second
        if second != seconds:
            text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")[:-6]
            self._second = (seconds, text)  # one tuple: a thread reads a pair that belongs together
        return f"{text}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None) or trace_id_var.get(),
        }
        transfer_id = getattr(record, "transfer_id", None) or transfer_id_var.get()
        if transfer_id:
            entry["transfer_id"] = transfer_id
        fields = vars(record)
        if fields.keys() - _STANDARD:  # an extra field (most lines have none): in the record's order
            for key, value in fields.items():
                if key not in _STANDARD and key not in entry and not key.startswith("_"):
                    entry[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            # The type and the frames only: an exception's message may quote the input.
            exc_type, exc, tb = record.exc_info
            entry["exception"] = exc_type.__name__ if exc_type else None
            entry["stack"] = [line.rstrip() for line in traceback.format_tb(tb)[-10:]]
            cause = exc.__cause__ or exc.__context__ if exc is not None else None
            if cause is not None:
                entry["cause"] = type(cause).__name__
        return _encode(entry)


_MARK = "_tuma_json"


def configure(level: int = logging.INFO) -> None:
    """Make every root handler write JSON (adding one on stderr when there is none). Idempotent:
    create_app may run several times in one process."""
    root = logging.getLogger()
    if not any(getattr(h, _MARK, False) for h in root.handlers):
        if not root.handlers:
            root.addHandler(logging.StreamHandler())
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
            setattr(handler, _MARK, True)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    lean_records()


def lean_records() -> None:
    """What a JSON line never shows is not gathered for it: where the call was made (a walk up
    the stack for every record: a fifth of a line's cost, and one line is logged per USSD hop)
    and the thread's and multiprocessing's names. The switches are the ones the logging
    HOWTO's "Optimization" section names. The process id stays (gunicorn's own lines print
    it)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
