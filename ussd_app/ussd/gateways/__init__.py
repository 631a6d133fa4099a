"""USSD gateways other than Africa's Talking: one small module each, one endpoint each.

Each module knows only its gateway's protocol: how a request says "a session began" (with what
was dialled), "the person typed this" (one input, or everything so far) or "the session is over"
(the person left, it timed out), where the caller's number and the session id are, and how an
answer that continues or ends the session is written back. Everything else is the one core
``views.hop`` that ``POST /ussd`` runs too: the session lock, a repeat answered from the store,
only the newest input applied, the engine and the flows unchanged.

A module offers ``NAME``, ``read(doc) -> Message`` (``Unreadable`` when it is not one of the
gateway's requests), ``caller(doc) -> str`` (the raw number, never raising: the rate limit
reads it before the view), ``answer(body, message) -> dict`` for an engine body ``CON ...`` /
``END ...`` (``message`` None when the request could not be read), ``closed(message) -> dict``
for an end notice, and optionally ``session_for(message, phone)`` when the gateway sends no
session id of its own and ``answered(message, phone)`` after each answer (Nalo).

The endpoints sit on the ``ussd`` blueprint, so the webhook guards (security.py) apply: the
gateway's own secret or allow-list (``USSD_<GATEWAY>_SECRET``/``_ALLOWED_IPS``, else the
``WEBHOOK_`` ones), the body cap, the per-phone rate on the E.164 number. A refusal the phone
would see (body too large, too many requests) is the gateway's own end-of-session shape.
"""

import logging
from dataclasses import dataclass, field

from flask import current_app, g, jsonify, request

from ... import security
from .. import bp, views

log = logging.getLogger(__name__)

BEGIN, INPUT, END, NOTICE = "begin", "input", "end", "notice"


class Unreadable(ValueError):
    """Not one of the gateway's requests: a field missing, of the wrong type or too long."""


@dataclass(frozen=True)
class Message:
    """One request of a gateway, in the core's words."""

    kind: str  # BEGIN (``text`` is what was dialled), INPUT, END (over: close it), NOTICE
    session: str  # the gateway's session id ("" when it sends none)
    text: str = ""  # the newest input
    # What tells a repeat of this very request (see ``views.hop``); None when the gateway
    # numbers nothing: then the same input within USSD_RESEND_WINDOW_SECONDS is its retry.
    repeat_key: str | None = None
    echo: dict = field(default_factory=dict)  # what the answer repeats back to the gateway
    service_code: str = ""  # the gateway's own service-code field, if it sends one (Hubtel, MTN)


def text(doc: dict, name: str, *, required: bool = True, limit: int | None = views.MAX_FIELD) -> str:
    """A string field (a number is taken as its digits); ``Unreadable`` when missing and
    required, of another type, longer than ``limit``, or holding a NUL. An id or number
    (``limit`` set) loses surrounding spaces; an input (``limit=None``: the core bounds it) is
    kept as typed."""
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise Unreadable(f"{name} missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Unreadable(f"{name} is not a string")
    value = str(value)
    if (limit is not None and len(value) > limit) or "\x00" in value:
        raise Unreadable(f"{name} too long or not text")
    return value.strip() if limit is not None else value


def flag(doc: dict, name: str) -> bool:
    """A yes/no field, sent as a JSON boolean or as "true"/"false" (or 1/0)."""
    value = doc.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and str(value).strip().lower() in ("true", "1", "false", "0"):
        return str(value).strip().lower() in ("true", "1")
    raise Unreadable(f"{name} is not true or false")


def loose(doc, name: str) -> str:
    """``doc[name]`` as a string for the rate limit, "" when there is none (never raises)."""
    value = doc.get(name) if isinstance(doc, dict) else None
    return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""


def split(body: str) -> tuple[bool, str]:
    """An engine body: (does the session continue, the screen's text)."""
    return body.startswith("CON "), body[4:] if body.startswith(("CON ", "END ")) else body


def after_service_code(dialled: str, service_code: str = "") -> str:
    """What was dialled after the service's code: "1*0711000002*500#" from
    "*384*7*1*0711000002*500#", "" from "*384*7#" or from anything that does not start with
    the code. The code is ours (``SERVICE_CODE``), or the gateway's ``service_code`` field when
    that is a whole code with its extension ("*384*7#" or "384*7"); a bare short code ("384",
    as Hubtel sends for "*384*7#") only tells the network's part, so it is never taken as ours:
    a wrong cut would walk the extension as a menu choice."""
    dialled = dialled.strip()
    codes = [current_app.config["SERVICE_CODE"]]
    given = service_code.strip().strip("*#")
    if "*" in given:
        codes.append(given)
    for code in sorted({"*" + c.strip().strip("*#") for c in codes}, key=len, reverse=True):
        if code == "*":
            continue
        if dialled.startswith(code + "*"):
            return dialled[len(code) + 1 :]
        if dialled in (code, code + "#"):
            return ""
    return ""


def _json_body():
    try:
        doc = request.get_json(silent=True)  # silent: a ValueError only
    except RecursionError:  # nested deeper than the decoder goes: unreadable, not a failure
        return None
    return doc if isinstance(doc, dict) else None


def _reply(gateway, body: str, message: Message | None) -> dict:
    g.ussd_outcome = "con" if body.startswith("CON ") else "end"  # for the metrics (ops/tracing.py)
    return gateway.answer(body, message)


def _handle(gateway) -> dict:
    doc = _json_body()
    if doc is None:
        log.warning("ussd %s: body is not a JSON object", gateway.NAME)
        return _reply(gateway, "END " + views.to_stranger(views.UNREADABLE), None)
    try:
        message = gateway.read(doc)
    except Unreadable as exc:
        log.warning("ussd %s: unreadable request (%s)", gateway.NAME, exc)
        return _reply(gateway, "END " + views.to_stranger(views.UNREADABLE), None)
    phone = security.caller_phone()  # E.164, as the rate limit counted it
    if phone is None:
        log.warning("ussd %s: from a number that is not a mobile number of ours", gateway.NAME)
        return _reply(gateway, "END " + views.to_stranger(views.UNREADABLE), message)
    if len(message.text) > views.MAX_TEXT:
        log.warning("ussd %s: an input of %d characters: ended", gateway.NAME, len(message.text))
        return _reply(gateway, "END " + views.to_stranger(views.UNREADABLE), message)
    session_for = getattr(gateway, "session_for", None)
    session = session_for(message, phone) if session_for else f"{gateway.NAME}:{message.session}"
    if session is None:
        return _reply(gateway, "END " + views.to_stranger("Sorry, we are busy. Please dial again."), message)
    if message.kind == NOTICE:
        return gateway.closed(message)
    if message.kind == END:
        views.close(session, phone)
        return gateway.closed(message)
    newest = message.text if message.kind == INPUT else ""
    # The first message carries what was dialled: a shortcut's inputs follow the service code.
    dialled = after_service_code(message.text, message.service_code) if message.kind == BEGIN else ""
    if message.repeat_key is not None:
        body = views.hop(session, phone, message.repeat_key, newest, dialled=dialled)
    else:  # nothing numbers the messages: the same input again, at once, is the gateway's retry
        window = current_app.config["USSD_RESEND_WINDOW_SECONDS"]
        key = f"{message.kind}\x00{message.text}"
        body = views.hop(session, phone, key, newest, fresh_for=window, dialled=dialled)
    answered = getattr(gateway, "answered", None)
    if answered is not None:  # Nalo: its retry window runs from this answer
        answered(message, phone)
    return _reply(gateway, body, message)


def register(gateway) -> None:
    """``POST /ussd/<name>`` for ``gateway`` on the ``ussd`` blueprint (and so behind its guards)."""

    def view():
        try:
            return jsonify(_handle(gateway))
        except Exception as exc:  # a gateway must get its own shape, never a 500
            log.error("ussd %s failed: %s", gateway.NAME, type(exc).__name__)
            return jsonify(
                gateway.answer(
                    "END " + views.to_stranger("Sorry, something went wrong. Please try again later."),
                    None,
                )
            )

    view.__name__ = f"gateway_{gateway.NAME}"
    view.ussd_gateway = gateway.NAME  # its own secret and allow-list (security._setting)
    view.raw_caller = lambda: gateway.caller(_json_body() or {})  # for the per-phone rate limit
    view.ussd_refusal = lambda ussd_text: jsonify(gateway.answer("END " + ussd_text, None))
    bp.post(f"/ussd/{gateway.NAME}")(view)


# The gateways, each a module of this package (they import the names above).
from . import arkesel, beem, hubtel, mtn, nalo  # noqa: E402

GATEWAYS = {gateway.NAME: gateway for gateway in (hubtel, arkesel, nalo, beem, mtn)}
for _gateway in GATEWAYS.values():
    register(_gateway)
