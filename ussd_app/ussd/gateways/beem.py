"""Beem Africa (Tanzania), the USSD Hub: JSON both ways.

A request has ``command`` (``initiate``: the session begins; ``continue``: the person typed
``payload.response``; ``terminate``: it is over), ``msisdn`` (255...), ``session_id``,
``operator`` and ``payload`` with ``request_id`` and ``response``. The answer repeats
``msisdn``, ``operator`` and ``session_id``, says ``command`` ``continue`` or ``terminate``, and
carries the screen in ``payload.request`` with a ``payload.request_id``. We number our answers
(the request's ``request_id`` plus one); the next request carries that number back, so a resend
(same ``request_id``, same ``response``) is recognised and answered from the store.
Fixtures: tests/gateway_fixtures/beem.py.
"""

from . import BEGIN, END, INPUT, Message, Unreadable, loose, split, text

NAME = "beem"
KINDS = {"initiate": BEGIN, "continue": INPUT, "terminate": END}


def read(doc: dict) -> Message:
    kind = KINDS.get(text(doc, "command").lower())
    if kind is None:
        raise Unreadable("command is not one of Beem's")
    session = text(doc, "session_id")
    payload = doc.get("payload") if doc.get("payload") is not None else {}
    if not isinstance(payload, dict):
        raise Unreadable("payload is not an object")
    request_id = text(payload, "request_id", required=False)
    if request_id and not request_id.isdigit():
        raise Unreadable("payload.request_id is not a number")
    typed = text(payload, "response", required=False, limit=None)
    return Message(
        kind=kind,
        session=session,
        text=typed,
        repeat_key=f"{request_id}\x00{typed}" if request_id else None,
        echo={
            "msisdn": text(doc, "msisdn"),
            "operator": text(doc, "operator", required=False),
            "session_id": session,
            "request_id": int(request_id or 0),
        },
    )


def caller(doc) -> str:
    return loose(doc, "msisdn")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    echo = (
        dict(message.echo) if message else {"msisdn": "", "operator": "", "session_id": "", "request_id": 0}
    )
    request_id = echo.pop("request_id")
    return {
        **echo,
        "command": "continue" if more else "terminate",
        "payload": {"request_id": request_id + 1, "request": screen},
    }


def closed(message: Message) -> dict:
    return answer("END ", message)
