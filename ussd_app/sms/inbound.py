"""Inbound SMS: what people text to our short code, and what we answer.

A customer who texts a transaction code learns whether it is genuine (the answer to fake-receipt
fraud), but only a party to the transfer learns its details: anyone else gets the same answer
as for a code that does not exist, so codes cannot be probed. ``REVERSE <code>`` from the
sender of a send asks for its reversal (``payments/reversals.py``), answered with the outcome.
"""

import enum
import re
from datetime import datetime

from flask import current_app
from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..i18n import t
from ..money import format_amount
from ..payments.models import TransferRequest
from ..users import User, find_by_phone
from .outbox import add_sms
from .receipts import when

# Transaction codes are base32 (A-Z, 2-7), 10 characters (payments.models.transaction_code).
CODE = re.compile(r"^[A-Z2-7]{10}$")
REVERSE = re.compile(r"^REVERSE\s+(\S+)$")


class Intent(enum.StrEnum):
    CHECK = "check"  # a transaction code: is this receipt genuine?
    REVERSE = "reverse"  # REVERSE <code>
    HELP = "help"  # anything else


class InboundMessage(db.Model):
    """Every message Africa's Talking forwarded, once (``at_id`` is its id: a retried
    callback is recognised and not answered twice)."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_id: Mapped[str] = mapped_column(String(64), unique=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # "from", E.164
    to: Mapped[str] = mapped_column(String(20))  # our short code
    text: Mapped[str] = mapped_column(String(480))
    link_id: Mapped[str | None] = mapped_column(String(64), default=None)
    sent_at: Mapped[str | None] = mapped_column(String(40), default=None)  # AT's "date", verbatim
    intent: Mapped[str] = mapped_column(String(12))
    code: Mapped[str | None] = mapped_column(String(10), index=True, default=None)
    # For REVERSE: the request it names, when the sender is its payer (else NULL).
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    received_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


def parse(text: str) -> tuple[Intent, str | None]:
    words = " ".join(text.split()).upper()
    if CODE.match(words):
        return Intent.CHECK, words
    match = REVERSE.match(words)
    if match and CODE.match(match.group(1)):
        return Intent.REVERSE, match.group(1)
    return Intent.HELP, None


def _parties(session, request: TransferRequest) -> tuple[User | None, User | None]:
    users = {
        u.account_id: u
        for u in session.execute(
            select(User).where(User.account_id.in_([request.debit_account_id, request.credit_account_id]))
        ).scalars()
    }
    return users.get(request.debit_account_id), users.get(request.credit_account_id)


def _find_for(session, code: str, phone: str):
    """The request with ``code`` and its parties, only if ``phone`` is one of them."""
    request = session.execute(
        select(TransferRequest).where(TransferRequest.code == code)
    ).scalar_one_or_none()
    if request is None:
        return None, None, None
    payer, payee = _parties(session, request)
    if phone not in {u.phone for u in (payer, payee) if u is not None}:
        return None, None, None
    return request, payer, payee


def answer(session, phone: str, text: str, *, language: str) -> tuple[Intent, str | None, str | None, str]:
    """(intent, code, request id for a reversal, the reply) for ``text`` from ``phone``."""
    intent, code = parse(text)
    if intent == Intent.HELP:
        return (
            intent,
            None,
            None,
            t(
                language,
                "Tuma: to check a receipt, send its 10-character transaction code. "
                "To ask for a reversal, send REVERSE and the code.",
                domain="sms",
            ),
        )
    if intent == Intent.REVERSE and _locked(session, phone):
        # A locked account (wrong PINs, or the operator) starts nothing, by USSD or by SMS:
        # whoever holds the phone may not be its owner. Said before any code is looked up.
        return (
            intent,
            code,
            None,
            t(
                language,
                "Your Tuma account is locked, so we cannot start a reversal. "
                "Ask an agent or customer care to unlock it, then try again.",
                domain="sms",
            ),
        )
    request, payer, payee = _find_for(session, code, phone)
    unknown = t(
        language,
        "{code} is not a Tuma transaction of yours. Do not hand over goods or cash against a "
        "message with this code.",
        domain="sms",
        code=code,
    )
    if request is None:
        return intent, code, None, unknown
    if intent == Intent.REVERSE:
        if payer is None or payer.phone != phone:
            return intent, code, None, unknown
        # Held from the recipient for them to agree (payments/reversals.py); the webhook
        # announces the hold to the workers once committed.
        from ..payments import reversals
        from ..payments.submit import mint_request_id

        outcome, found = reversals.start(session, payer, code, mint_request_id())
        if outcome == reversals.UNKNOWN:
            return intent, code, None, unknown
        english, fields = reversals.sms_reply(outcome, found, code)
        return intent, code, request.id, t(language, english, domain="sms", **fields)
    status = {
        "posted": t(language, "completed", domain="sms"),
        "queued": t(language, "in progress", domain="sms"),
        "rejected": t(language, "failed", domain="sms"),
    }.get(request.status, request.status)
    date, time_ = when(request.executed_at or request.created_at)
    reply = t(
        language,
        "{code} is genuine: {amount} from {payer} to {payee} on {date} at {time}. Status: {status}.",
        domain="sms",
        code=code,
        amount=format_amount(request.amount, current_app.config["CURRENCY"]),
        payer=_who(payer),
        payee=_who(payee),
        date=date,
        time=time_,
        status=status,
    )
    return intent, code, None, reply


def _locked(session, phone: str) -> bool:
    from ..ussd.pin_guard import is_locked  # the one rule for "locked" (PIN tries or operator)

    user = find_by_phone(session, phone)
    return user is not None and is_locked(user)


def _who(user: User | None) -> str:
    return f"{user.name.upper()} {user.phone}" if user is not None else "TUMA"


def receive(
    session, *, at_id: str, phone: str, to: str, text: str, link_id: str | None, date: str | None
) -> InboundMessage | None:
    """Record the message and promise the reply, in the caller's transaction. Returns None when
    this ``at_id`` was already received (a retried callback): nothing new is written then."""
    if session.execute(select(InboundMessage.id).where(InboundMessage.at_id == at_id)).first():
        return None
    user = find_by_phone(session, phone)
    language = user.language if user is not None else "en"
    intent, code, request_id, reply = answer(session, phone, text, language=language)
    message = InboundMessage(
        at_id=at_id,
        phone=phone,
        to=to,
        text=text,
        link_id=link_id,
        sent_at=date,
        intent=intent.value,
        code=code,
        request_id=request_id,
    )
    session.add(message)
    add_sms(session, phone=phone, body=reply)
    session.flush()
    return message
