"""Arkesel (Ghana): JSON both ways.

A request has ``sessionID``, ``userID`` (our account at Arkesel), ``newSession`` (true on the
first request of a session, whose ``userData`` is the dialled string; false after, with the one
input typed), ``msisdn`` (233...), ``userData`` and ``network``. The answer repeats
``sessionID``, ``userID`` and ``msisdn`` and adds ``message`` and ``continueSession`` (false
ends the session). Arkesel sends no end-of-session notice and numbers no message: the same input
again within ``USSD_RESEND_WINDOW_SECONDS`` of our answer is taken for its retry (see
``views.hop``). Fixtures: tests/gateway_fixtures/arkesel.py.
"""

from . import BEGIN, INPUT, Message, flag, loose, split, text

NAME = "arkesel"


def read(doc: dict) -> Message:
    session = text(doc, "sessionID")
    new = flag(doc, "newSession")
    return Message(
        kind=BEGIN if new else INPUT,
        session=session,
        text=text(doc, "userData", required=False, limit=None),
        echo={
            "sessionID": session,
            "userID": text(doc, "userID", required=False),
            "msisdn": text(doc, "msisdn"),
        },
    )


def caller(doc) -> str:
    return loose(doc, "msisdn")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    echo = message.echo if message else {"sessionID": "", "userID": "", "msisdn": ""}
    return {**echo, "message": screen, "continueSession": more}


def closed(message: Message) -> dict:
    return answer("END ", message)
