"""Payment requests: a merchant asks a customer to pay (issue 5), or a customer asks one or
several people for money, e.g. to split a bill (issue 10). One mechanism for both.

A request is a row in ``payment_requests``; nothing moves until the payer approves it in My
approvals with their PIN. Paying records an ordinary transfer request (``send`` to a customer,
``buy_goods``/``pay_bill`` to a merchant: its own id, fee, limits and receipts) whose id is
derived from the payment request's (``<id>.p<attempt>``), and moves the request
``open -> paying`` by compare-and-set in the same transaction. Two sessions paying at once:
the database lets one UPDATE win, the other sees no row and records nothing.

States, each moved only by compare-and-set (an UPDATE ... WHERE state = <from>):

- ``open``: waiting for the payer; ``-> paying`` (approved), ``-> declined``, ``-> expired``
  (the maintenance job, once ``expires_at`` has passed), ``-> cancelled`` (the requester).
- ``paying``: its transfer is recorded; ``settle`` moves it ``-> paid`` once the worker posted
  it (and tells the requester), or back ``-> open`` with the attempt counted when the ledger or
  a limit refused it (the payer got the usual failure SMS and may try again).

Everything here adds to the caller's session; nothing commits.
"""

import enum
import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from .. import phones
from ..clock import utcnow
from ..extensions import db
from ..messages import payment_requests as texts
from ..users import Role, User, find_by_account, find_by_phone
from .models import RequestKind, RequestStatus, TransferRequest
from .submit import record_request

REASON_LIMIT = 20
MAX_PAYERS = 10


class Kind(enum.StrEnum):
    MERCHANT = "merchant"
    PERSONAL = "personal"


class State(enum.StrEnum):
    OPEN = "open"
    PAYING = "paying"
    PAID = "paid"
    DECLINED = "declined"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class PaymentRequest(db.Model):
    __tablename__ = "payment_requests"
    __table_args__ = (
        Index("ix_payment_requests_payer_state", "payer_phone", "state"),
        Index("ix_payment_requests_requester_created", "requester_account_id", "created_at"),
        Index("ix_payment_requests_state_expires", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "<group id>.<n>"
    group_id: Mapped[str] = mapped_column(String(32), index=True)  # minted per USSD session
    kind: Mapped[str] = mapped_column(String(12))
    requester_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    payer_phone: Mapped[str] = mapped_column(String(20))  # E.164; may not be on Tuma yet
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    reason: Mapped[str] = mapped_column(String(REASON_LIMIT))
    state: Mapped[str] = mapped_column(String(12), default=State.OPEN.value)
    # The transfer request of the current payment attempt (id "<id>.p<pay_attempts>").
    transfer_request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    pay_attempts: Mapped[int] = mapped_column(Integer, default=0)
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # The merchant's own reference, for a request made through the API (ussd_app/api).
    reference: Mapped[str | None] = mapped_column(String(64), default=None)
    # Whether the requester may be told the payer's registered name before the payer paid (My
    # requests, the declined SMS). False only for a request made through the API whose name
    # look-up of its owner was not granted (api/payment_requests.py): the number, no name.
    payer_named: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


def payer_name_shown(request: PaymentRequest) -> bool:
    """Whether the requester may see ``request``'s payer's registered name: its look-up was
    granted (every request made in the menus, whose look-ups were counted when recorded), or
    the payer paid it (and so told the requester, as every payment's receipt does)."""
    return request.payer_named or request.state == State.PAID


class RequestError(ValueError):
    pass


def split(total: int, count: int) -> list[int]:
    """``total`` minor units shared evenly by ``count``; the remainder on the first."""
    each = total // count
    return [total - each * (count - 1)] + [each] * (count - 1)


def transfer_id(request: PaymentRequest) -> str:
    return f"{request.id}.p{request.pay_attempts}"


# The shape of ``transfer_id``'s ids (keep the two together): what ``pays_any`` looks for.
_PAYING = re.compile(r".+\.p\d+")


def pays_any(transfer_request_ids) -> bool:
    """Whether any of these transfer requests pays a payment request (by the shape of its id,
    ``transfer_id``): only then has a batch given ``settle`` something to do. A batch's job
    asks this instead of running ``settle``'s query after every batch; the maintenance job
    settles whatever a batch left (its job died after its commit)."""
    return any(_PAYING.fullmatch(rid) for rid in transfer_request_ids)


def lifetime(kind: Kind | str) -> int:
    setting = "MERCHANT_REQUEST_SECONDS" if kind == Kind.MERCHANT else "PERSONAL_REQUEST_SECONDS"
    return current_app.config[setting]


def _requester(session, request: PaymentRequest) -> User | None:
    return find_by_account(session, request.requester_account_id)


def asked_today(session, requester_account_id: int, payer_phone: str, now: datetime | None = None) -> int:
    """How many requests ``requester`` made of ``payer_phone`` since midnight (``TIMEZONE``)."""
    from ..limits import start_of_today

    return session.execute(
        select(func.count()).where(
            PaymentRequest.requester_account_id == requester_account_id,
            PaymentRequest.payer_phone == payer_phone,
            PaymentRequest.created_at >= start_of_today(now),
        )
    ).scalar_one()


def may_ask(session, requester: User, payer_phone: str) -> bool:
    return (
        asked_today(session, requester.account_id, payer_phone)
        < current_app.config["REQUESTS_PER_PAYER_PER_DAY"]
    )


def create(
    session,
    requester: User,
    group_id: str,
    kind: Kind,
    asks: list[tuple[str, int]],
    reason: str,
    *,
    payer_named: bool = True,
):
    """Record one request per (payer phone, amount) under ``group_id`` and promise each payer
    their SMS. Idempotent: a group already recorded (a repeated USSD request) is returned as is.
    ``payer_named``: whether the requester was granted the payers' name look-ups (the API's
    requests; the menus count theirs before recording)."""
    existing = list(
        session.execute(select(PaymentRequest).where(PaymentRequest.group_id == group_id)).scalars()
    )
    if existing:
        return existing
    if not 1 <= len(asks) <= MAX_PAYERS:
        raise RequestError("between 1 and 10 payers")
    now = utcnow()
    expires = now + timedelta(seconds=lifetime(kind))
    made = []
    for n, (phone, amount) in enumerate(asks, 1):
        if amount <= 0 or phone == requester.phone:
            raise RequestError("a payer other than the requester, and an amount")
        if not phones.is_local_mobile(phone):  # never invite a number that cannot register
            raise RequestError(f"not a mobile number of {phones.country_name()}: {phone}")
        request = PaymentRequest(
            id=f"{group_id}.{n}",
            group_id=group_id,
            kind=kind.value,
            requester_account_id=requester.account_id,
            payer_phone=phone,
            amount=amount,
            reason=reason,
            state=State.OPEN.value,
            pay_attempts=0,
            reminders=0,
            payer_named=payer_named,
            created_at=now,
            expires_at=expires,
        )
        session.add(request)
        made.append(request)
        _tell_payer(session, requester, request)
    session.flush()
    return made


def _tell_payer(session, requester: User, request: PaymentRequest, *, reminder: bool = False) -> None:
    """Ask the payer (again, for a reminder); a number not on Tuma is invited to join."""
    from ..sms.outbox import add_sms

    payer = find_by_phone(session, request.payer_phone)
    days = -(-lifetime(request.kind) // 86_400)
    body = texts.ask(payer, requester, request, days=days, reminder=reminder)
    add_sms(session, phone=request.payer_phone, body=body)


def _tell_requester(session, request: PaymentRequest, news, **counts) -> None:
    """Tell the requester ``news`` (a ``messages.payment_requests`` function) about ``request``."""
    from ..sms.outbox import add_sms

    requester = _requester(session, request)
    if requester is None:
        return
    payer = find_by_phone(session, request.payer_phone)
    body = news(requester, payer, request, **counts)
    add_sms(session, phone=requester.phone, body=body, transfer_request_id=request.transfer_request_id)


def _event(session, request: PaymentRequest, event_type: str) -> None:
    """The merchant's system hears of the move (ussd_app/events), in the move's transaction."""
    from ..events import EventType, for_payment_request

    for_payment_request(session, request, EventType(event_type))


def _move(
    session, payment_request_id: str, from_state: State, to_state: State, *conditions, **values
) -> bool:
    """Compare-and-set: True for the one caller that moved the request."""
    result = session.execute(
        update(PaymentRequest)
        .where(PaymentRequest.id == payment_request_id, PaymentRequest.state == from_state.value, *conditions)
        .values(state=to_state.value, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


# -- the payer's side (My approvals) ---------------------------------------------------------


def waiting_for(session, user: User, now: datetime | None = None) -> list[PaymentRequest]:
    now = now or utcnow()
    return list(
        session.execute(
            select(PaymentRequest)
            .where(
                PaymentRequest.payer_phone == user.phone,
                PaymentRequest.state == State.OPEN.value,
                PaymentRequest.expires_at > now,
            )
            .order_by(PaymentRequest.created_at, PaymentRequest.id)
        ).scalars()
    )


def _payment(request: PaymentRequest, requester: User) -> tuple[RequestKind, str | None]:
    if request.kind == Kind.MERCHANT and requester.role == Role.MERCHANT.value:
        kind = RequestKind.BUY_GOODS if requester.till else RequestKind.PAY_BILL
    else:
        kind = RequestKind.SEND
    return kind, f"PR-{request.group_id[:8]}-{request.id.rsplit('.', 1)[1]}".upper()


def fee(session, request: PaymentRequest) -> int:
    """What paying ``request`` costs the payer, from the tariff in force."""
    return quote(session, request)["fee"]


def quote(session, request: PaymentRequest) -> dict:
    """Paying ``request`` priced by the tariff in force, all from one version: the payer's fee,
    the payee's (a merchant's capped fee) and the version's id. What My approvals shows, kept
    and handed back to ``pay`` after the PIN (JSON: it lives in the USSD session)."""
    from ..tariffs import in_force

    requester = _requester(session, request)
    kind = _payment(request, requester)[0] if requester is not None else RequestKind.SEND
    tariff = in_force()
    return {
        "fee": tariff.fee(kind.value, request.amount),
        "payee_fee": tariff.payee_fee(kind.value, request.amount),
        "tariff": tariff.id,
    }


def pay(
    session, payer: User, payment_request_id: str, now: datetime | None = None, *, quoted: dict | None = None
) -> TransferRequest | None:
    """The payer approved with their PIN: record the transfer and move ``open -> paying`` in
    this transaction. None when the request is no longer open for this payer (paid by another
    session, declined, expired, cancelled). The caller commits (which announces it).

    ``quoted``: the price the payer was shown before the PIN (``quote`` at the list hop);
    the transfer records it, as Send money and Pay merchant record their confirm screen's
    quote, even if another tariff version started since (the worker charges the request's
    fee). None (no screen showed a price: the API, a session from before quotes were kept):
    priced now, from the tariff in force."""
    now = now or utcnow()
    request = session.get(PaymentRequest, payment_request_id)
    if request is None or request.payer_phone != payer.phone:
        return None
    session.refresh(request)
    requester = _requester(session, request)
    if requester is None or requester.account_id == payer.account_id:
        return None
    attempt, tid = request.pay_attempts, transfer_id(request)
    if not _move(
        session,
        request.id,
        State.OPEN,
        State.PAYING,
        PaymentRequest.pay_attempts == attempt,
        PaymentRequest.expires_at > now,
        transfer_request_id=tid,
        decided_at=now,
    ):
        return None
    kind, reference = _payment(request, requester)
    price = quoted if quoted is not None else quote(session, request)
    return record_request(
        session,
        request_id=tid,
        kind=kind.value,
        debit_account_id=payer.account_id,
        credit_account_id=requester.account_id,
        amount=request.amount,
        fee=price["fee"],
        payee_fee=price["payee_fee"],  # a merchant's own capped fee
        reference=reference,
        tariff_version_id=price["tariff"],
    )


def decline(session, payer: User, payment_request_id: str, now: datetime | None = None) -> bool:
    request = session.get(PaymentRequest, payment_request_id)
    if request is None or request.payer_phone != payer.phone:
        return False
    if not _move(session, request.id, State.OPEN, State.DECLINED, decided_at=now or utcnow()):
        return False
    session.refresh(request)
    _tell_requester(session, request, texts.declined)
    _event(session, request, "payment_request.declined")
    return True


# -- the requester's side ---------------------------------------------------------------------


def open_groups(session, requester: User) -> list[list[PaymentRequest]]:
    """The requester's groups with at least one request still open or being paid, newest
    first; each group in payer order."""
    live = (State.OPEN.value, State.PAYING.value)
    groups = list(
        session.execute(
            select(PaymentRequest.group_id)
            .where(
                PaymentRequest.requester_account_id == requester.account_id, PaymentRequest.state.in_(live)
            )
            .group_by(PaymentRequest.group_id)
            .order_by(func.max(PaymentRequest.created_at).desc())
        ).scalars()
    )
    return [group(session, g) for g in groups]


def group(session, group_id: str) -> list[PaymentRequest]:
    rows = session.execute(select(PaymentRequest).where(PaymentRequest.group_id == group_id)).scalars()
    return sorted(rows, key=lambda r: int(r.id.rsplit(".", 1)[1]))


def owned(session, requester: User, payment_request_id: str) -> PaymentRequest | None:
    request = session.get(PaymentRequest, payment_request_id)
    return request if request is not None and request.requester_account_id == requester.account_id else None


def remind(session, requester: User, payment_request_id: str, now: datetime | None = None) -> bool:
    """One reminder SMS to the payer of an open request, at most one per payer per day."""
    from ..limits import start_of_today

    now = now or utcnow()
    request = owned(session, requester, payment_request_id)
    if request is None:
        return False
    result = session.execute(
        update(PaymentRequest)
        .where(
            PaymentRequest.id == request.id,
            PaymentRequest.state == State.OPEN.value,
            PaymentRequest.expires_at > now,
            or_(PaymentRequest.reminded_at.is_(None), PaymentRequest.reminded_at < start_of_today(now)),
        )
        .values(reminded_at=now, reminders=PaymentRequest.reminders + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    _tell_payer(session, requester, request, reminder=True)
    return True


def cancel(session, requester: User, payment_request_id: str, now: datetime | None = None) -> bool:
    request = owned(session, requester, payment_request_id)
    return request is not None and _move(
        session, request.id, State.OPEN, State.CANCELLED, decided_at=now or utcnow()
    )


# -- the worker's side ------------------------------------------------------------------------


def settle(session, limit: int = 500) -> int:
    """Requests being paid whose transfer the worker has finished: posted -> ``paid`` (the
    requester is told; a group everyone has paid gets one summary), refused -> ``open`` again
    with the attempt counted. Safe side by side: each move is a compare-and-set."""
    rows = session.execute(
        select(PaymentRequest, TransferRequest.status)
        .join(TransferRequest, TransferRequest.id == PaymentRequest.transfer_request_id)
        .where(
            PaymentRequest.state == State.PAYING.value,
            TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
        )
        .order_by(PaymentRequest.decided_at)
        .limit(limit)
    ).all()
    done = 0
    for request, status in rows:
        if status == RequestStatus.REJECTED.value:
            done += _move(
                session,
                request.id,
                State.PAYING,
                State.OPEN,
                PaymentRequest.pay_attempts == request.pay_attempts,
                pay_attempts=request.pay_attempts + 1,
                transfer_request_id=None,
            )
            continue
        # Lock the group's rows (PostgreSQL) so the last two payments settling side by side
        # cannot both miss, or both send, the summary.
        members = list(
            session.execute(
                select(PaymentRequest)
                .where(PaymentRequest.group_id == request.group_id)
                .order_by(PaymentRequest.id)
                .with_for_update()
            ).scalars()
        )
        if not _move(session, request.id, State.PAYING, State.PAID):
            continue
        done += 1
        session.refresh(request)
        _event(session, request, "payment_request.paid")
        for member in members:
            session.refresh(member)
        paid = [m for m in members if m.state == State.PAID]
        if len(members) == 1:
            _tell_requester(session, request, texts.paid)
        else:
            _tell_requester(session, request, texts.paid, paid=len(paid), count=len(members))
        if len(members) > 1 and len(paid) == len(members):
            from ..sms.outbox import add_sms

            requester = _requester(session, request)
            if requester is not None:
                add_sms(session, phone=requester.phone, body=texts.all_paid(requester, request, members))
    session.flush()
    return done


def expire(session, now: datetime | None = None, limit: int = 500) -> int:
    """Open requests past ``expires_at`` -> ``expired``, each once; the requester is told."""
    now = now or utcnow()
    due = list(
        session.execute(
            select(PaymentRequest)
            .where(PaymentRequest.state == State.OPEN.value, PaymentRequest.expires_at <= now)
            .order_by(PaymentRequest.expires_at)
            .limit(limit)
        ).scalars()
    )
    done = 0
    for request in due:
        if _move(session, request.id, State.OPEN, State.EXPIRED, decided_at=now):
            done += 1
            _tell_requester(session, request, texts.expired)
            _event(session, request, "payment_request.expired")
    session.flush()
    return done
