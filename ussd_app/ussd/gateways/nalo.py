"""Nalo Solutions (Ghana): JSON both ways, and no session id.

A request has ``USERID`` (our account at Nalo), ``MSISDN`` (233...), ``USERDATA`` (on the first
request of a session the dialled string, after that the one input typed), ``MSGTYPE`` (true on
the first request of a session, false after) and ``NETWORK``. The answer repeats ``USERID`` and
``MSISDN`` and adds ``MSG`` (the screen) and ``MSGTYPE`` (true: wait for an input; false: end).

With no session id, the session is the number's: ``MSGTYPE`` true starts a new one (a fresh id,
kept per E.164 number in Redis for the session's lifetime; the same first message again while
it is answered or within the resend window after our answer is Nalo's retry and keeps it),
false continues the number's current one; if that has expired, the hop starts at home as any
unknown session does. A phone has one USSD session at a time, so this is the session. Nalo
numbers no message and sends no end notice: the same input again within
``USSD_RESEND_WINDOW_SECONDS`` of our answer is taken for its retry (see ``views.hop``).
Fixtures: tests/gateway_fixtures/nalo.py.
"""

import logging
import secrets

from flask import current_app
from redis.exceptions import RedisError

from ...queues import get_redis
from ..sessions import LOCK_SECONDS, PREFIX, text_digest
from . import BEGIN, INPUT, Message, flag, loose, split, text

log = logging.getLogger(__name__)

NAME = "nalo"


def read(doc: dict) -> Message:
    return Message(
        kind=BEGIN if flag(doc, "MSGTYPE") else INPUT,
        session="",
        text=text(doc, "USERDATA", required=False, limit=None),
        echo={"USERID": text(doc, "USERID", required=False), "MSISDN": text(doc, "MSISDN")},
    )


def session_for(message: Message, phone: str) -> str | None:
    """The number's current session (a new one on ``MSGTYPE`` true); None if Redis is down.

    A first message sent again at once (the same dialled string within
    ``USSD_RESEND_WINDOW_SECONDS``, nothing typed since) is Nalo's retry, not a new dial: it
    keeps the session, so its stored answer is given and a shortcut is not walked twice. What
    was dialled is kept only as a keyed digest (it may hold a PIN)."""
    key, begun = f"{PREFIX}:nalo:{phone}", f"{PREFIX}:nalo-begin:{phone}"
    ttl = current_app.config["USSD_SESSION_TTL_SECONDS"]
    window_ms = int(current_app.config["USSD_RESEND_WINDOW_SECONDS"] * 1000)
    try:
        redis = get_redis()
        # Read (and, past the first message, forget the first message's digest) in one trip.
        pipe = redis.pipeline(transaction=False)
        pipe.get(key).get(begun) if message.kind == BEGIN else pipe.get(key).delete(begun)
        current, previous = pipe.execute()
        pipe = redis.pipeline(transaction=False)
        if message.kind == BEGIN:
            digest = text_digest(key, message.text)
            if not (window_ms > 0 and _text(previous) == digest):
                current = None  # a new dial: a new session
            if window_ms > 0:
                # Until answered (``answered``) as long as a hop may hold its session: a retry
                # while the walk runs is the same dial and waits for its answer.
                pipe.set(begun, digest, px=window_ms + LOCK_SECONDS * 1000)
        if current is None:
            # Not the number: the id is logged beside the masked number (views.hop).
            current = f"{NAME}:{secrets.token_hex(12)}"
        else:
            current = _text(current)
        pipe.set(key, current, ex=ttl)  # each hop keeps it as long as the session lives
        pipe.execute()
    except RedisError as exc:
        log.error("ussd nalo: Redis unavailable (%s)", type(exc).__name__)
        return None
    return current


def answered(message: Message, phone: str) -> None:
    """The first message was answered: Nalo's retry of it is the one within
    ``USSD_RESEND_WINDOW_SECONDS`` of this answer (as every gateway's retry is), not of its
    arrival, so a slow walk (a pay bill asks the business, up to its timeout) is not walked
    again in a new session by the retry that its slowness caused."""
    window_ms = int(current_app.config["USSD_RESEND_WINDOW_SECONDS"] * 1000)
    if message.kind != BEGIN or window_ms <= 0:
        return
    key, begun = f"{PREFIX}:nalo:{phone}", f"{PREFIX}:nalo-begin:{phone}"
    try:
        get_redis().set(begun, text_digest(key, message.text), px=window_ms, xx=True)
    except RedisError as exc:
        log.error("ussd nalo: Redis unavailable (%s)", type(exc).__name__)


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else (raw or "")


def caller(doc) -> str:
    return loose(doc, "MSISDN")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    echo = message.echo if message else {"USERID": "", "MSISDN": ""}
    return {**echo, "MSG": screen, "MSGTYPE": more}


def closed(message: Message) -> dict:
    return answer("END ", message)
