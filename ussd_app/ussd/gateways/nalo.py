"""Nalo Solutions (Ghana): JSON both ways, and no session id.

A request has ``USERID`` (our account at Nalo), ``MSISDN`` (233...), ``USERDATA`` (on the first
request of a session the dialled string, after that the one input typed), ``MSGTYPE`` (true on
the first request of a session, false after) and ``NETWORK``. The answer repeats ``USERID`` and
``MSISDN`` and adds ``MSG`` (the screen) and ``MSGTYPE`` (true: wait for an input; false: end).

With no session id, the session is the number's: ``MSGTYPE`` true starts a new one (a fresh id,
kept per E.164 number in Redis for the session's lifetime), false continues the number's
current one; if that has expired, the hop starts at home as any unknown session does. A phone
has one USSD session at a time, so this is the session. Nalo numbers no message and sends no
end notice: the same input again within ``USSD_RESEND_WINDOW_SECONDS`` of our answer is taken for
its retry (see ``views.hop``).
Fixtures: tests/gateway_fixtures/nalo.py.
"""

import logging
import secrets

from flask import current_app
from redis.exceptions import RedisError

from ...queues import get_redis
from ..sessions import PREFIX
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
    """The number's current session (a new one on ``MSGTYPE`` true); None if Redis is down."""
    key = f"{PREFIX}:nalo:{phone}"
    ttl = current_app.config["USSD_SESSION_TTL_SECONDS"]
    try:
        redis = get_redis()
        current = None if message.kind == BEGIN else redis.get(key)
        if current is None:
            current = f"{NAME}:{phone}:{secrets.token_hex(8)}"
        else:
            current = current.decode() if isinstance(current, bytes) else current
        redis.set(key, current, ex=ttl)  # each hop keeps it as long as the session lives
    except RedisError as exc:
        log.error("ussd nalo: Redis unavailable (%s)", type(exc).__name__)
        return None
    return current


def caller(doc) -> str:
    return loose(doc, "MSISDN")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    echo = message.echo if message else {"USERID": "", "MSISDN": ""}
    return {**echo, "MSG": screen, "MSGTYPE": more}


def closed(message: Message) -> dict:
    return answer("END ", message)
