"""What a reversal of a wrong send tells people by SMS: the answers to ``REVERSE <code>``
(``sms_commands/inbound.py``), one per outcome of ``payments.reversals.start``. (The hold's own
receipts are ``receipts.RECEIPTS["reversal"]`` and its resolutions'.)
"""

from flask import current_app

from ..payments.reversals import DECIDED, LATE, NOT_SEND, OPEN_ALREADY, SHORT
from . import money, say, sms_name

# Answers to ``REVERSE <code>`` by SMS (sms_commands/inbound.py; Kiswahili in sms-reversals.po).
SMS_REPLIES = {
    "ok": "Received: your request to reverse {code}, {amount} sent to {name} {phone}. They are asked to "
    "agree; we will SMS you.",
    NOT_SEND: "{code} cannot be reversed by SMS. Only money sent to a person can be.",
    LATE: "{code} is more than {hours} hours old and cannot be reversed by SMS. Please call customer care.",
    OPEN_ALREADY: "A reversal of {code} is already waiting for {name} {phone}.",
    DECIDED: "A reversal of {code} was already decided.",
    SHORT: "{name} {phone} no longer has the {amount} you sent ({code}), so it cannot be reversed. "
    "Please call customer care.",
}


def reply(language: str, outcome: str, found, code: str) -> str:
    """The answer to ``REVERSE <code>`` for ``outcome`` ("ok" or why not), in ``language``."""
    fields = {"code": code, "hours": current_app.config["REVERSAL_WINDOW_SECONDS"] // 3600}
    if found is not None:
        fields["amount"] = money(found.send.amount)
        recipient = found.recipient
        fields["name"] = sms_name(recipient) if recipient else ""
        fields["phone"] = recipient.phone if recipient else ""
    return say(language, SMS_REPLIES[outcome], **fields)
