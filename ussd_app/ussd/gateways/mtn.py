"""MTN's USSD gateway through its developer API (MADAPI, "Messaging USSD API"): JSON both ways.

The gateway posts each message the phone sends (``/messages/ussd/inbound`` in MTN's
description) with ``sessionId``, ``messageType`` (``0`` begin: ``ussdString`` is the dialled
string; ``1`` continue: the one input typed; ``2`` end, ``4`` cancel, ``5`` timeout: the session
is over; ``3`` notification: nothing to answer), ``msisdn``, ``serviceCode``, ``ussdString`` and
optionally ``cellId``, ``language``, ``imsi``. The answer is MTN's envelope (``statusCode``
``0000``, ``statusMessage``, ``transactionId``, ``_link``) around ``data``: ``inboundResponse``
(the screen), ``userInputRequired``, ``messageType`` (``1`` continue or ``2`` end),
``serviceCode``, ``msisdn``. MTN numbers no message: the same input again
within ``USSD_RESEND_WINDOW_SECONDS`` of our answer is taken for its retry (see ``views.hop``).
Fixtures: tests/gateway_fixtures/mtn.py.
"""

from . import BEGIN, END, INPUT, NOTICE, Message, Unreadable, loose, split, text

NAME = "mtn"
KINDS = {"0": BEGIN, "1": INPUT, "2": END, "3": NOTICE, "4": END, "5": END}


def read(doc: dict) -> Message:
    kind = KINDS.get(text(doc, "messageType"))
    if kind is None:
        raise Unreadable("messageType is not 0-5")
    session = text(doc, "sessionId")
    return Message(
        kind=kind,
        session=session,
        text=text(doc, "ussdString", required=False, limit=None),
        echo={
            "sessionId": session,
            "msisdn": text(doc, "msisdn"),
            "serviceCode": text(doc, "serviceCode", required=False),
        },
        service_code=loose(doc, "serviceCode"),
    )


def caller(doc) -> str:
    return loose(doc, "msisdn")


def answer(body: str, message: Message | None) -> dict:
    more, screen = split(body)
    echo = message.echo if message else {"sessionId": "", "msisdn": "", "serviceCode": ""}
    return {
        "statusCode": "0000",
        "statusMessage": "",
        "transactionId": echo["sessionId"],
        "data": {
            "inboundResponse": screen,
            "userInputRequired": more,
            "messageType": 1 if more else 2,
            "serviceCode": echo["serviceCode"],
            "msisdn": echo["msisdn"],
        },
        "_link": {"self": {"href": "/ussd/mtn"}},
    }


def closed(message: Message) -> dict:
    return answer("END ", message)
