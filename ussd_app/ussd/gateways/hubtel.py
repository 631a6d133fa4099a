"""Hubtel (Ghana), the USSD channel of its Programmable Services API: JSON both ways.

A request has ``Type`` (``Initiation``: the session begins and ``Message`` is the dialled
string, e.g. ``*713*7#``; ``Response``: ``Message`` is the one input typed; ``Release``: the
person ended it; ``Timeout``: it timed out), ``SessionId``, ``Mobile`` (233...), ``ServiceCode``,
``Operator``, ``Sequence`` (the message's number in the session) and ``ClientState`` (what our
last answer asked to be sent back; we keep our state in Redis and send none). Hubtel sends the
type in either case ("initiation", "Initiation"). The answer: ``Type`` ``Response`` (wait for an
input) or ``Release`` (show and end), ``Message``, and the display fields of Hubtel's app
channels (``Label``, ``DataType``, ``FieldType``).

Sequence numbers each message, so a resend (same ``Sequence``, same ``Message``) is recognised
and answered from the store. Fixtures: tests/gateway_fixtures/hubtel.py.
"""

from . import BEGIN, END, INPUT, Message, Unreadable, loose, split, text

NAME = "hubtel"
KINDS = {"initiation": BEGIN, "response": INPUT, "release": END, "timeout": END}


def read(doc: dict) -> Message:
    kind = KINDS.get(text(doc, "Type").lower())
    if kind is None:
        raise Unreadable("Type is not one of Hubtel's")
    session = text(doc, "SessionId")
    typed = text(doc, "Message", required=False, limit=None)
    sequence = text(doc, "Sequence", required=False)
    return Message(
        kind=kind,
        session=session,
        text=typed,
        repeat_key=f"{sequence}\x00{typed}" if sequence else None,
        echo={"SessionId": session},
        service_code=loose(doc, "ServiceCode"),
    )


def caller(doc) -> str:
    return loose(doc, "Mobile")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    return {
        **(message.echo if message else {"SessionId": ""}),
        "Type": "Response" if more else "Release",
        "Message": screen,
        "Label": screen.split("\n", 1)[0],
        "ClientState": "",
        "DataType": "input" if more else "display",
        "FieldType": "text",
    }


def closed(message: Message) -> dict:
    return answer("END ", message)
