"""One hand-over to Africa's Talking (``SMS.send`` through the SDK) and what its answer means:
accepted, retried, refused for good, or the gateway's or our account's failure (``Answer.pause``)."""

import enum
from dataclasses import dataclass

import requests
from africastalking.Service import AfricasTalkingException

from ...africas_talking import SmsClient

# Africa's Talking's per-recipient statusCode.
ACCEPTED = {100: "Processed", 101: "Sent", 102: "Queued"}


# Refusals that no retry can fix: the number or the person is the problem.
PERMANENT = {
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    406: "UserInBlacklist",
    409: "DoNotDisturbRejection",
}


# Our account's, not the message's: no use trying other numbers until they are fixed (our
# account gets topped up, an operator fixes the sender id). They cost no attempt and open the
# gateway's circuit (circuit.py), as a network error or a non-2xx answer does.
ACCOUNT_WIDE = {402: "InvalidSenderId", 405: "InsufficientBalance"}


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    """What one hand-over came to."""

    outcome: Outcome
    reason: str | None = None
    message_id: str | None = None
    status_code: int | None = None
    status: str | None = None
    cost: str | None = None
    pause: bool = False  # the gateway or our account is the problem: stop this batch


def hand_over(client: SmsClient, phone: str, body: str) -> Answer:
    """One ``SMS.send`` and what it means. Never raises for anything the gateway or the
    network does; only a bug in our code gets through (and reaches rq)."""
    try:
        answer = client.send(phone, body)
    except ValueError as exc:  # the SDK refused the number before any request
        return Answer(Outcome.FAILED, reason=f"invalid number: {exc}")
    except requests.RequestException as exc:  # connection refused, reset, timed out
        return Answer(Outcome.RETRY, reason=f"network: {type(exc).__name__}", pause=True)
    except AfricasTalkingException as exc:  # a non-2xx answer; the SDK keeps only the body
        return Answer(Outcome.RETRY, reason=f"gateway error: {str(exc)[:80]}", pause=True)
    return read_answer(answer)


def read_answer(answer) -> Answer:
    """Africa's Talking's 2xx answer for one recipient."""
    try:
        data = answer["SMSMessageData"]
        recipients = data.get("Recipients") or []
    except (TypeError, KeyError, AttributeError):
        return Answer(Outcome.RETRY, reason=f"unexpected answer: {str(answer)[:80]}", pause=True)
    if not recipients:
        # e.g. {"Message": "InvalidSenderId", "Recipients": []}: nothing was sent.
        return Answer(Outcome.RETRY, reason=f"not sent: {str(data.get('Message'))[:80]}", pause=True)
    first = recipients[0]
    try:
        code = int(first.get("statusCode"))
    except (TypeError, ValueError):
        return Answer(Outcome.RETRY, reason=f"unexpected answer: {str(first)[:80]}")
    status = str(first.get("status") or "")[:40]
    fields = {"status_code": code, "status": status, "cost": str(first.get("cost") or "")[:24] or None}
    if code in ACCEPTED:
        return Answer(Outcome.SENT, message_id=str(first.get("messageId") or "")[:64] or None, **fields)
    if code in PERMANENT:
        return Answer(Outcome.FAILED, reason=f"{code} {status or PERMANENT[code]}", **fields)
    return Answer(Outcome.RETRY, reason=f"{code} {status}".strip(), pause=code in ACCOUNT_WIDE, **fields)
