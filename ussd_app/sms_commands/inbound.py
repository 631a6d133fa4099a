"""SMS commands: what people text to our short code, and what we answer.

A customer who texts a transaction code learns whether it is genuine (the answer to fake-receipt
fraud), but only a party to the transfer learns its details: anyone else gets the same answer
as for a code that does not exist, so codes cannot be probed. ``REVERSE <code>`` from the
sender of a send asks for its reversal (``payments/reversals.py``), answered with the outcome.
``TOTAL <code>`` from anyone tells a cause's name and what it has received this month
(``payments/tips.py``): public by design; any code that is not a cause's gets one answer.
"""

import enum
import re
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from .. import country
from ..extensions import db
from ..messages import inbound as texts
from ..messages import tips as tip_texts
from ..messages import when
from ..messages.receipts import hold_seconds
from ..payments import holds, tips
from ..payments.models import HoldState, RequestKind, RequestStatus, TransferRequest, typed_code
from ..sms.outbox import add_sms
from ..users import User, find_by_phone, find_cause

# Transaction codes are base32 (A-Z, 2-7), 10 characters (payments.models.transaction_code),
# read as typed by payments.models.typed_code.
REVERSE = re.compile(r"^REVERSE\s+(\S+)$")
TOTAL = re.compile(r"^TOTAL(?:\s+(.*)|([0-9]+))?$")  # "TOTAL 55555", also typed "TOTAL55555"
CAUSE_CODE = re.compile(r"^[0-9]{5,7}$")  # a cause's code is a till number (users.create_user)


class Intent(enum.StrEnum):
    CHECK = "check"  # a transaction code: is this receipt genuine?
    REVERSE = "reverse"  # REVERSE <code>
    TOTAL = "total"  # TOTAL <a cause's code>: what it has received this month
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
    transfer_request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    received_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


def parse(text: str) -> tuple[Intent, str | None]:
    words = " ".join(text.split()).upper()
    # "TOTAL55555" has a transaction code's shape (ten of A-Z, 2-7): TOTAL and a cause's code
    # are read first, as a code that begins "TOTAL" and ends in digits is next to impossible.
    total = TOTAL.match(words)
    if total and total.group(2) and CAUSE_CODE.match(total.group(2)):
        return Intent.TOTAL, total.group(2)
    # A code as people copy it from an SMS: 0, 1 and 8 typed for O, I and B (typed_code).
    code = typed_code(words)
    if code is not None:
        return Intent.CHECK, code
    match = REVERSE.match(words)
    if match and typed_code(match.group(1)) is not None:
        return Intent.REVERSE, typed_code(match.group(1))
    match = TOTAL.match(words)
    if match:
        code = (match.group(1) or match.group(2) or "").replace(" ", "")
        return Intent.TOTAL, code if CAUSE_CODE.match(code) else None
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
        return intent, None, None, texts.help_reply(language)
    if intent == Intent.TOTAL:
        return intent, code, None, _total(session, code, language)
    lock = _lock(session, phone) if intent == Intent.REVERSE else None
    if lock is not None:
        # A locked account (wrong PINs, or the operator) starts nothing, by USSD or by SMS:
        # whoever holds the phone may not be its owner. Said before any code is looked up.
        # Only customer care lifts an operator's lock: an agent is not offered for it.
        return intent, code, None, texts.locked(language, lock)
    request, payer, payee = _find_for(session, code, phone)
    unknown = texts.not_yours(language, code)
    if request is None:
        return intent, code, None, unknown
    if intent == Intent.REVERSE:
        if payer is None or payer.phone != phone:
            # The genuine recipient: a proper answer, not the fake-receipt warning.
            return intent, code, None, texts.recipient_cannot_reverse(language, code)
        # Held from the recipient for them to agree (payments/reversals.py); its commit
        # announces the hold to the workers (queues.py).
        from ..messages import reversals as reversal_texts
        from ..payments import reversals
        from ..payments.submit import mint_request_id

        outcome, found = reversals.start(session, payer, code, mint_request_id())
        if outcome == reversals.UNKNOWN:
            return intent, code, None, unknown
        return intent, code, request.id, reversal_texts.reply(language, outcome, found, code)
    status = _status(session, request)
    # The one asking is a party: name the other one (one SMS segment with the longest names).
    asker_paid = payer is not None and payer.phone == phone
    reply = texts.genuine(
        language,
        request,
        payee if asker_paid else payer,
        status,
        asker_paid=asker_paid,
        named=named_to_asker(request, asker_paid=asker_paid),
        # A send to a number not on Tuma is held in suspense (no holder): name that number.
        number=request.reference if request.kind == RequestKind.SEND_UNREGISTERED.value else None,
    )
    return intent, code, None, reply


def named_to_asker(request: TransferRequest, *, asker_paid: bool) -> bool:
    """Whether the party checking ``request``'s code may be told the other's registered name.
    A payout's payer only once the ledger accepted it and its name look-up was granted
    (``payee_named``, api/payouts.py), as its events and the API's transactions say it: a
    queued or refused payout (an empty wallet pays any number nothing) named its recipient for
    nothing paid, free of the menus' cancel rule, and one recorded before 0020_payee_named
    counts as granted with no look-up taken. Every other kind names the other party (its payer
    saw the name in the menus before the PIN; its payee is told who paid)."""
    if not asker_paid:
        return True
    if request.kind == RequestKind.PAYOUT.value:
        return request.payee_named and request.status == RequestStatus.ACCEPTED.value
    return request.payee_named


def _total(session, code: str | None, language: str) -> str:
    """The answer to ``TOTAL <code>``: the cause's name and this month's tips, or, for anything
    that is not a cause's code (a merchant's till, unknown, garbage), the one same answer."""
    cause = find_cause(session, code) if code is not None else None
    if cause is None:
        return tip_texts.no_cause(language)
    count, amount, since = tips.month_total(session, cause)
    return tip_texts.total(language, cause, count, amount, since)


def _lock(session, phone: str) -> str | None:
    """ "pin" (wrong PINs), "operator" (the back office) or None: who locked ``phone``."""
    # The one rule for "locked" (PIN tries or operator).
    from ..users import is_operator_locked
    from ..ussd.pin_guard import is_locked

    user = find_by_phone(session, phone)
    if user is None or not is_locked(user):
        return None
    return "operator" if is_operator_locked(user) else "pin"


def _status(session, request: TransferRequest) -> tuple[str, dict]:
    """Where the money of ``request`` really stands, as a word of ``messages.inbound.STATUSES``
    (the English is its id) and its fields: a receipt is only "completed" when the money is
    final with its payee (not held, disputed, refunded or reversed)."""

    def say(english: str, **fields) -> tuple[str, dict]:
        return english, fields

    if request.status == RequestStatus.QUEUED.value:
        return say("in progress")
    if request.status == RequestStatus.REVIEW.value:
        return say("held for a security check")
    if request.status != RequestStatus.ACCEPTED.value:
        return say("failed")
    if request.hold_state is not None:  # an escrow hold (payments/holds.py)
        return _hold_status(session, request, say)
    if request.kind == RequestKind.SEND.value:
        # A reversal the sender asked for holds the recipient's funds, then posts them back.
        for reversal in session.execute(
            select(TransferRequest).where(
                TransferRequest.kind == RequestKind.REVERSAL.value,
                TransferRequest.reference == request.code,
                TransferRequest.status == RequestStatus.ACCEPTED.value,
            )
        ).scalars():
            if reversal.hold_state == HoldState.PENDING.value:
                return say("held for a reversal until {date}", date=_until(reversal))
            if reversal.hold_state == HoldState.POSTED.value:
                return say("reversed") if _resolved(session, reversal) else say("being reversed")
    return say("completed")


def _hold_status(session, hold: TransferRequest, say) -> tuple[str, dict]:
    state = hold.hold_state
    if state == HoldState.PENDING.value:
        return say("held until {date}, not final", date=_until(hold))
    if state == HoldState.DISPUTED.value:
        return say("disputed, held until Tuma decides")
    if state == HoldState.SENDING.value or not _resolved(session, hold):
        return say("in progress")
    if hold.kind == RequestKind.REVERSAL.value:  # the hold is the returning of a send
        return say("reversed") if state == HoldState.POSTED.value else say("reversal refused")
    if state == HoldState.POSTED.value:
        return say("completed")
    return say("refunded to the sender")


def _resolved(session, hold: TransferRequest) -> bool:
    """Whether the request that resolves ``hold`` (post or void) has been posted."""
    resolution = holds.resolution(session, hold)  # its latest attempt (holds.reopen)
    return resolution is not None and resolution.status == RequestStatus.ACCEPTED.value


def _until(hold: TransferRequest) -> str:
    """The date a hold falls due (the receipts' date format); an allowance's hold, the end of
    its period (its reference is the allowance's id)."""
    if hold.kind == RequestKind.ALLOWANCE.value:
        from ..payments.allowances import Allowance

        allowance = db.session.get(Allowance, hold.reference or "")
        if allowance is not None and allowance.period_ends_at is not None:
            return when(allowance.period_ends_at)[0]
    date, _ = when((hold.executed_at or hold.created_at) + timedelta(seconds=hold_seconds(hold)))
    return date


def receive(
    session, *, at_id: str, phone: str, to: str, text: str, link_id: str | None, date: str | None
) -> InboundMessage | None:
    """Record the message and promise the reply, in the caller's transaction. Returns None when
    this ``at_id`` was already received (a retried callback): nothing new is written then."""
    if session.execute(select(InboundMessage.id).where(InboundMessage.at_id == at_id)).first():
        return None
    user = find_by_phone(session, phone)
    language = user.language if user is not None else country.first_language()
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
        transfer_request_id=request_id,
    )
    session.add(message)
    add_sms(session, phone=phone, body=reply)
    session.flush()
    return message
