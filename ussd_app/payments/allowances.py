"""Allowances: a customer lets a merchant charge small sums, up to a limit a period, with the
PIN given once (issue 18; DESIGN.md "Small money").

```
approve (PIN, once)     customer --pending--> merchant       hold = what is left of the period
charge, charge, ...     tab lines, each checked against what is left and max_charge:
                        no ledger posting, no SMS, no PIN
settle                  ONE partial post of the hold = the tab's sum (the ledger releases the
                        rest; a tab of nothing voids the hold); ONE SMS to the customer and ONE
                        ``allowance.settled`` event to the merchant, never one per charge
next period             a new hold if the allowance goes on and the money is there, else
                        ``paused`` and the customer is told (tried again at the next period)
```

Vocabulary: a **charge** is one tab line (``AllowanceCharge``); the **tab** is the charges not
settled yet (``tab_amount``, ``tab_count``); a **settlement** is the one post (or void) of the
hold that turns a tab into money (``AllowanceSettlement``, keyed by that request's id).
``charged``/``charge_count`` count the whole period, so a merchant who settles mid-period
cannot charge more than the limit in that period: the next hold is what is left of it.

States (``State``), each moved only by compare-and-set (UPDATE ... WHERE state = <from>):

- ``awaiting_approval`` (the merchant asked through the API) -> ``approving`` (the customer
  approved with the PIN: the period's hold is recorded), ``declined``, ``expired``
  (``ALLOWANCE_ASK_SECONDS`` unanswered), ``cancelled``;
- ``approving`` (a hold is queued) -> ``active`` once the worker accepted it, ``paused`` if
  it was refused (no money, or over a limit);
- ``active`` (charges are taken) -> ``settling`` (a settlement's post is queued; the next hold
  follows once it is posted), ``cancelled``/``expired`` (settled for the last time);
- ``settling`` -> ``approving`` (the next hold recorded), or ``active`` without a hold when the
  period has nothing left (charges are then refused until the period ends);
- ``paused`` -> ``approving`` at the next period's start (tried again), ``cancelled``, ``expired``.

Racing charges: a charge locks the allowance's row (``FOR UPDATE``; SQLite's transactions
are ``BEGIN IMMEDIATE``), checks what is left, adds to the tab and inserts its tab line in the
same transaction: charges racing for the last shillings queue on that lock and never take
more than what is left. A settlement moves the row out of ``active`` in the same way, so a
charge is either in the settled tab or refused, never lost. A charge's id derives from the
caller's idempotency key: the same charge twice is one tab line.

Ids derive from the allowance's, so every step is safe twice: hold ``<id>.h<n>``, its
settlement ``<id>.h<n>.r`` (``holds.resolution_id``), whose transaction code is what the
customer's SMS quotes and what the receipt-check SMS verifies.

The worker executes the holds and settlements (``payments/execute.py``; the kinds table says
``sms/`` writes nothing for them) and then calls ``after_batch``; the maintenance job calls
``settle_due``. Nothing here commits.
"""

import calendar
import enum
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..database import among, insert_rows, is_postgres
from ..extensions import db
from ..ledger.models import ID_LENGTH
from ..users import User, find_by_account, find_by_phone
from . import holds
from .models import HoldState, RequestKind, RequestStatus, TransferRequest
from .submit import record_request

log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 60
REFERENCE_LIMIT = 64


class State(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # the merchant asked; the customer has not decided
    APPROVING = "approving"  # approved; the period's hold is queued
    ACTIVE = "active"  # the hold is accepted: charges are taken
    SETTLING = "settling"  # a settlement is queued; the next hold follows once it is posted
    PAUSED = "paused"  # a period's hold was refused (no money): tried again next period
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL = (State.DECLINED.value, State.CANCELLED.value, State.EXPIRED.value)
# What the customer's My allowances lists.
LIVE = (State.APPROVING.value, State.ACTIVE.value, State.SETTLING.value, State.PAUSED.value)


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Refusal(enum.StrEnum):
    """Why a charge was refused: stable words, also the API's error codes."""

    NOT_FOUND = "allowance_not_found"  # no such allowance for this merchant
    NOT_ACTIVE = "allowance_not_active"  # not approved yet, settling, paused, ended, period over
    EXCEEDS_MAX_CHARGE = "exceeds_max_charge"
    EXCEEDS_LEFT = "exceeds_allowance_left"
    # The charge's id was taken before for another allowance or amount (a reused key).
    ID_REUSED = "charge_id_reused"


class Why(enum.StrEnum):
    """Why a tab is settled."""

    MERCHANT = "merchant"  # the merchant asked (the API): the period goes on
    PERIOD_END = "period_end"  # the period ended: the next one starts
    CANCELLED = "cancelled"  # the customer cancelled: no next period
    EXPIRED = "expired"  # past the allowance's own end


class AllowanceError(ValueError):
    """An allowance could not be made as asked; the message says why."""


class Allowance(db.Model):
    __tablename__ = "allowances"
    __table_args__ = (
        Index("ix_allowances_customer_state", "customer_phone", "state"),
        Index("ix_allowances_merchant_created", "merchant_account_id", "created_at"),
        Index("ix_allowances_state_period_ends", "state", "period_ends_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "al_" + random, the API's id
    merchant_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))  # who is paid
    customer_phone: Mapped[str] = mapped_column(String(20))  # E.164
    customer_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    limit_amount: Mapped[int] = mapped_column(BigInteger)  # minor units a period
    max_charge: Mapped[int] = mapped_column(BigInteger)  # minor units a charge
    period: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(DESCRIPTION_LIMIT), default="")
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_LIMIT), default=None)  # the merchant's
    state: Mapped[str] = mapped_column(String(20))
    period_no: Mapped[int] = mapped_column(Integer, default=0)
    period_starts_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    period_ends_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)  # this period, settled or not
    charge_count: Mapped[int] = mapped_column(Integer, default=0)
    tab_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # charged, not settled yet
    tab_count: Mapped[int] = mapped_column(Integer, default=0)
    hold_no: Mapped[int] = mapped_column(Integer, default=0)  # holds made so far
    hold_request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)  # optional overall end


class AllowanceCharge(db.Model):
    """One tab line: durable before the merchant hears it was taken."""

    __tablename__ = "allowance_charges"
    __table_args__ = (Index("ix_allowance_charges_allowance_created", "allowance_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # from the caller's key
    allowance_id: Mapped[str] = mapped_column(ForeignKey("allowances.id"))
    period_no: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_LIMIT), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AllowanceSettlement(db.Model):
    """One settlement: the tab it closed, under the id of the request that posts (or voids)
    the hold. ``told_at`` is set once the customer has been told (or had nothing to hear)."""

    __tablename__ = "allowance_settlements"
    __table_args__ = (Index("ix_allowance_settlements_told", "told_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # the post's request id
    allowance_id: Mapped[str] = mapped_column(ForeignKey("allowances.id"), index=True)
    period_no: Mapped[int] = mapped_column(Integer)
    charges: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    why: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    told_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


@dataclass(frozen=True)
class ChargeOutcome:
    """What became of one charge: taken (``code`` None) or refused (``code``, a Refusal)."""

    charge_id: str
    amount: int
    code: str | None
    left: int  # what is left of the period after it
    charged: int  # the period's charges after it
    charge_count: int
    reference: str | None = None
    created_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def new_id() -> str:
    return "al_" + secrets.token_urlsafe(16)


def hold_id(allowance: Allowance, hold_no: int) -> str:
    return f"{allowance.id}.h{hold_no}"


def period_end(start: datetime, period: str) -> datetime:
    """When a period that starts at ``start`` ends (a month: the same day next month, or its
    last day)."""
    if period == Period.DAY:
        return start + timedelta(days=1)
    if period == Period.WEEK:
        return start + timedelta(days=7)
    if period == Period.MONTH:
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        day = min(start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day)
    raise AllowanceError(f"period: day, week or month, not {period!r}")


def left(allowance: Allowance) -> int:
    """What the merchant may still charge this period (minor units)."""
    return max(0, allowance.limit_amount - allowance.charged)


def _merchant(session, allowance: Allowance) -> User | None:
    return find_by_account(session, allowance.merchant_account_id)


def merchant_name(session, allowance: Allowance) -> str:
    """The merchant's registered name (for screens)."""
    merchant = _merchant(session, allowance)
    return merchant.name if merchant is not None else ""


def _move(session, allowance_id: str, from_states, *conditions, **values) -> bool:
    """Compare-and-set: True for the one caller that moved the allowance."""
    if isinstance(from_states, str):
        from_states = (from_states,)
    result = session.execute(
        update(Allowance)
        .where(Allowance.id == allowance_id, Allowance.state.in_(list(from_states)), *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _fresh(session, allowance_id: str) -> Allowance | None:
    allowance = session.get(Allowance, allowance_id)
    if allowance is not None:
        session.refresh(allowance)
    return allowance


def _event(session, allowance: Allowance, event_type: str, **extra) -> None:
    """The merchant's system hears of it (ussd_app/events), in this transaction."""
    from ..events.emit import event_id, party, write
    from ..events.models import Event

    customer = find_by_phone(session, allowance.customer_phone)
    data = {
        "allowance": allowance.id,
        "status": allowance.state,
        "reference": allowance.reference,
        "customer": party(customer, allowance.customer_phone),
        **extra,
    }
    # Once per allowance (a pause: once per hold refused); a repeat finds it written.
    source = f"{allowance.id}:{allowance.hold_no}" if event_type == "allowance.paused" else allowance.id
    if session.get(Event, event_id(event_type, source)) is None:
        write(session, [(event_type, allowance.merchant_account_id, source, data)])


def _sms(session, phone: str, body: str, transfer_request_id: str | None = None) -> None:
    from ..sms.outbox import add_sms

    add_sms(session, phone=phone, body=body, transfer_request_id=transfer_request_id)


# -- asking and deciding -------------------------------------------------------------------------


def _check_terms(limit: int, max_charge: int, period: str, description: str) -> None:
    if not isinstance(limit, int) or limit <= 0:
        raise AllowanceError("limit: a positive amount")
    if not isinstance(max_charge, int) or not 0 < max_charge <= limit:
        raise AllowanceError("max_charge: a positive amount, at most the limit")
    if period not in {p.value for p in Period}:
        raise AllowanceError("period: day, week or month")
    if len(description) > DESCRIPTION_LIMIT:
        raise AllowanceError(f"description: at most {DESCRIPTION_LIMIT} characters")


def asked_today(session, merchant_account_id: int, phone: str, now: datetime | None = None) -> int:
    """How many allowances this merchant asked of ``phone`` since midnight (``TIMEZONE``)."""
    from ..limits import start_of_today

    return session.execute(
        select(func.count()).where(
            Allowance.merchant_account_id == merchant_account_id,
            Allowance.customer_phone == phone,
            Allowance.created_at >= start_of_today(now),
        )
    ).scalar_one()


def ask(
    session,
    merchant: User,
    phone: str,
    *,
    limit: int,
    max_charge: int,
    period: str,
    description: str,
    reference: str | None,
    allowance_id: str,
) -> Allowance:
    """The merchant asks (the API): recorded ``awaiting_approval`` and the customer told by SMS
    to approve in My approvals. ``phone`` is E.164. The same id again returns the first one."""
    from ..messages import allowances as texts

    existing = session.get(Allowance, allowance_id)
    if existing is not None:
        return existing
    _check_terms(limit, max_charge, period, description)
    allowance = Allowance(
        id=allowance_id,
        merchant_account_id=merchant.account_id,
        customer_phone=phone,
        limit_amount=limit,
        max_charge=max_charge,
        period=period,
        description=description,
        reference=reference,
        state=State.AWAITING_APPROVAL.value,
        period_no=0,
        charged=0,
        charge_count=0,
        tab_amount=0,
        tab_count=0,
        hold_no=0,
        created_at=utcnow(),
    )
    session.add(allowance)
    session.flush()
    customer = find_by_phone(session, phone)
    _sms(session, phone, texts.asked(customer, merchant, allowance))
    return allowance


def awaiting(session, customer: User) -> list[Allowance]:
    """The allowances waiting for ``customer``'s decision (My approvals), oldest first."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["ALLOWANCE_ASK_SECONDS"])
    return list(
        session.execute(
            select(Allowance)
            .where(
                Allowance.customer_phone == customer.phone,
                Allowance.state == State.AWAITING_APPROVAL.value,
                Allowance.created_at > cutoff,
            )
            .order_by(Allowance.created_at, Allowance.id)
        ).scalars()
    )


def of_customer(session, customer: User) -> list[Allowance]:
    """``customer``'s allowances still going (approving, active, settling, paused), newest first."""
    return list(
        session.execute(
            select(Allowance)
            .where(Allowance.customer_phone == customer.phone, Allowance.state.in_(LIVE))
            .order_by(Allowance.created_at.desc(), Allowance.id.desc())
        ).scalars()
    )


def owned(session, merchant_account_id: int, allowance_id: str) -> Allowance | None:
    """The allowance if ``merchant_account_id`` is its merchant (None otherwise: no oracle)."""
    allowance = session.get(Allowance, allowance_id[:32])
    if allowance is None or allowance.merchant_account_id != merchant_account_id:
        return None
    return allowance


def _record_hold(session, allowance: Allowance, amount: int, hold_no: int) -> TransferRequest:
    request = record_request(
        session,
        request_id=hold_id(allowance, hold_no),
        kind=RequestKind.ALLOWANCE.value,
        debit_account_id=allowance.customer_account_id,
        credit_account_id=allowance.merchant_account_id,
        amount=amount,
        reference=allowance.id,
    )
    # No due time: the allowance's period end resolves it (holds.resolve_due never sees it).
    if request.hold_state is None and request.status == RequestStatus.QUEUED.value:
        request.hold_state = HoldState.PENDING.value
        session.flush()
    return request


def _first_period(now: datetime, period: str) -> dict:
    return {
        "period_no": 1,
        "period_starts_at": now,
        "period_ends_at": period_end(now, period),
        "charged": 0,
        "charge_count": 0,
        "tab_amount": 0,
        "tab_count": 0,
        "hold_no": 1,
    }


def approve(session, customer: User, allowance_id: str) -> bool:
    """The customer approved with the PIN (checked by the caller): the first period's limit is
    held (its commit announces the hold; the worker's ``after_batch`` makes it ``active``).
    False when it no longer waits for this customer."""
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.customer_phone != customer.phone:
        return False
    if allowance.merchant_account_id == customer.account_id:
        return False
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["ALLOWANCE_ASK_SECONDS"])
    values = _first_period(now, allowance.period)
    if not _move(
        session,
        allowance.id,
        State.AWAITING_APPROVAL.value,
        Allowance.created_at > cutoff,
        state=State.APPROVING.value,
        customer_account_id=customer.account_id,
        decided_at=now,
        hold_request_id=f"{allowance.id}.h1",
        **values,
    ):
        return False
    allowance = _fresh(session, allowance.id)
    _record_hold(session, allowance, allowance.limit_amount, 1)
    return True


def start(
    session, customer: User, merchant: User, *, limit: int, period: str, allowance_id: str
) -> Allowance:
    """The customer starts one on USSD (PIN checked by the caller): ``max_charge`` is the limit;
    the first period's hold is recorded at once. The same id again returns the first one."""
    existing = session.get(Allowance, allowance_id)
    if existing is not None:
        return existing
    _check_terms(limit, limit, period, "")
    if merchant.account_id == customer.account_id:
        raise AllowanceError("an allowance to someone else")
    now = utcnow()
    allowance = Allowance(
        id=allowance_id,
        merchant_account_id=merchant.account_id,
        customer_phone=customer.phone,
        customer_account_id=customer.account_id,
        limit_amount=limit,
        max_charge=limit,
        period=period,
        description="",
        reference=None,
        state=State.APPROVING.value,
        created_at=now,
        decided_at=now,
        hold_request_id=f"{allowance_id}.h1",
        **_first_period(now, period),
    )
    session.add(allowance)
    session.flush()
    _record_hold(session, allowance, limit, 1)
    return allowance


def decline(session, customer: User, allowance_id: str) -> bool:
    """The customer declined in My approvals; the merchant's system hears of it."""
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.customer_phone != customer.phone:
        return False
    if not _move(
        session, allowance.id, State.AWAITING_APPROVAL.value, state=State.DECLINED.value, decided_at=utcnow()
    ):
        return False
    _event(session, _fresh(session, allowance.id), "allowance.declined")
    return True


def cancel(session, customer: User, allowance_id: str) -> bool:
    """The customer cancels (PIN checked by the caller): an active tab is settled now and no
    next period follows; a hold still queued is voided once the worker has made it."""
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.customer_phone != customer.phone:
        return False
    for _ in range(5):
        allowance = _fresh(session, allowance_id)
        if allowance.state in FINAL:
            return False
        if allowance.state == State.ACTIVE.value and allowance.hold_request_id is not None:
            if settle(session, allowance_id, why=Why.CANCELLED) is not None:
                break
            continue  # a charge or a settlement moved it first: look again
        if _move(session, allowance_id, allowance.state, state=State.CANCELLED.value, decided_at=utcnow()):
            _release_if_held(session, _fresh(session, allowance_id))
            break
    else:
        return False
    _event(session, _fresh(session, allowance_id), "allowance.cancelled")
    return True


def recent_charges(session, allowance_id: str, *, offset: int = 0, limit: int = 5) -> list[AllowanceCharge]:
    """The latest charges first (for My allowances' pages)."""
    return list(
        session.execute(
            select(AllowanceCharge)
            .where(AllowanceCharge.allowance_id == allowance_id)
            .order_by(AllowanceCharge.created_at.desc(), AllowanceCharge.id.desc())
            .offset(offset)
            .limit(limit)
        ).scalars()
    )


# -- charging ------------------------------------------------------------------------------------


def _locked(session, allowance_id: str) -> Allowance | None:
    """The allowance's row, locked until the transaction ends (PostgreSQL: FOR UPDATE; SQLite's
    transactions hold the database from their first statement)."""
    query = select(Allowance).where(Allowance.id == allowance_id).execution_options(populate_existing=True)
    if is_postgres(session):
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def charge_many(
    session,
    allowance_id: str,
    merchant_account_id: int,
    charges: list[tuple[int, str | None, str]],
    now: datetime | None = None,
) -> list[ChargeOutcome]:
    """Take ``charges`` = [(amount, reference, charge id)] in order against the allowance, in
    the caller's transaction: each taken one is a tab line, durable at the commit; each refused
    one says why. A charge id already taken answers as it was taken (a retry)."""
    now = now or utcnow()
    allowance = _locked(session, allowance_id[:32])
    if allowance is None or allowance.merchant_account_id != merchant_account_id:
        return [
            ChargeOutcome(cid, amount, Refusal.NOT_FOUND.value, 0, 0, 0, ref) for amount, ref, cid in charges
        ]
    ids = [cid for _, _, cid in charges]
    earlier = {
        c.id: c
        for c in session.execute(
            select(AllowanceCharge).where(among(session, AllowanceCharge.id, ids))
        ).scalars()
    }
    charged, count = allowance.charged, allowance.charge_count
    # Active with no hold only when nothing is left of the period: the limit refuses those.
    open_ = (
        allowance.state == State.ACTIVE.value
        and allowance.period_ends_at is not None
        and now < allowance.period_ends_at
    )
    outcomes, lines, taken, seen = [], [], 0, set()
    for amount, reference, cid in charges:
        code = None
        if cid in earlier or cid in seen:
            first = earlier.get(cid)
            if first is not None and (first.allowance_id != allowance.id or first.amount != amount):
                code = Refusal.ID_REUSED.value
            else:  # taken before (a retry), or twice in this call: one tab line
                at = first.created_at if first is not None else now
                outcomes.append(
                    ChargeOutcome(
                        cid,
                        amount,
                        None,
                        max(0, allowance.limit_amount - charged),
                        charged,
                        count,
                        reference,
                        at,
                    )
                )
                continue
        elif not open_:
            code = Refusal.NOT_ACTIVE.value
        elif amount > allowance.max_charge:
            code = Refusal.EXCEEDS_MAX_CHARGE.value
        elif charged + amount > allowance.limit_amount:
            code = Refusal.EXCEEDS_LEFT.value
        if code is not None:
            outcomes.append(
                ChargeOutcome(
                    cid, amount, code, max(0, allowance.limit_amount - charged), charged, count, reference
                )
            )
            continue
        charged, count, taken = charged + amount, count + 1, taken + amount
        seen.add(cid)
        lines.append(
            {
                "id": cid,
                "allowance_id": allowance.id,
                "period_no": allowance.period_no,
                "amount": amount,
                "reference": reference,
                # Each its own microsecond, so the latest-first pages keep the order sent.
                "created_at": now + timedelta(microseconds=len(lines)),
            }
        )
        outcomes.append(
            ChargeOutcome(cid, amount, None, allowance.limit_amount - charged, charged, count, reference, now)
        )
    if lines:
        session.execute(
            update(Allowance)
            .where(Allowance.id == allowance.id)
            .values(
                charged=Allowance.charged + taken,
                charge_count=Allowance.charge_count + len(lines),
                tab_amount=Allowance.tab_amount + taken,
                tab_count=Allowance.tab_count + len(lines),
            )
            .execution_options(synchronize_session=False)
        )
        insert_rows(session, AllowanceCharge.__table__, lines)
    return outcomes


def charge(
    session,
    allowance_id: str,
    merchant_account_id: int,
    amount: int,
    reference: str | None,
    *,
    charge_id: str,
) -> ChargeOutcome:
    """One charge (``charge_many`` of one)."""
    return charge_many(session, allowance_id, merchant_account_id, [(amount, reference, charge_id)])[0]


# -- settling ------------------------------------------------------------------------------------


def _payee_fee(amount: int) -> int:
    """The merchant's fee on a settlement, from the tariff in force (a tariff stored before
    allowances existed prices it by the built-in rule: a hold must resolve, never be refused)."""
    from ..tariffs import Tariff, default_document, in_force

    kind = RequestKind.ALLOWANCE_POST.value
    try:
        return in_force().payee_fee(kind, amount)
    except ValueError:
        return Tariff(None, default_document()).payee_fee(kind, amount)


def _next_period(allowance: Allowance, now: datetime) -> dict:
    """The period values after the current one (skipping whole periods that passed unseen)."""
    start, number = allowance.period_ends_at, allowance.period_no
    end = period_end(start, allowance.period)
    number += 1
    while end <= now:
        start, end, number = end, period_end(end, allowance.period), number + 1
    return {
        "period_no": number,
        "period_starts_at": start,
        "period_ends_at": end,
        "charged": 0,
        "charge_count": 0,
    }


def settle(session, allowance_id: str, *, why: str, now: datetime | None = None) -> TransferRequest | None:
    """Close the tab: record the ONE request that posts the tab's sum from the hold (the rest
    released) or, with nothing charged, voids it, and the settlement it stands for. The
    worker executes it; ``after_batch`` then tells the customer once and makes the next hold.
    None when there is nothing to settle (not active, or no hold). Safe twice: the allowance
    leaves ``active`` by compare-and-set on the tab it read, so a charge racing it is either in
    this tab or refused."""
    why = Why(why)
    now = now or utcnow()
    for _ in range(5):
        allowance = _fresh(session, allowance_id)
        if allowance is None or allowance.state != State.ACTIVE.value or allowance.hold_request_id is None:
            return None
        hold = session.get(TransferRequest, allowance.hold_request_id)
        tab, count = allowance.tab_amount, allowance.tab_count
        if why == Why.MERCHANT and tab == 0:
            return None  # nothing charged since the last settlement: nothing to post
        values: dict = {"tab_amount": 0, "tab_count": 0}
        if why in (Why.MERCHANT, Why.PERIOD_END):
            values["state"] = State.SETTLING.value
        else:
            values["state"] = why.value  # cancelled or expired: no next period
            values["decided_at"] = now
        if why == Why.PERIOD_END:
            values.update(_next_period(allowance, now))
        if _move(
            session,
            allowance.id,
            State.ACTIVE.value,
            Allowance.hold_request_id == hold.id,
            Allowance.tab_amount == tab,
            Allowance.tab_count == count,
            **values,
        ):
            break
    else:
        return None
    if tab > 0:
        request = holds.resolve(
            session, hold, RequestKind.ALLOWANCE_POST, amount=tab, payee_fee=_payee_fee(tab)
        )
    else:
        request = holds.resolve(session, hold, RequestKind.ALLOWANCE_VOID)
    if request is None:  # the allowance was active, so its hold is accepted and pending
        raise RuntimeError(f"allowance {allowance.id}: its hold {hold.id} is not pending")
    session.add(
        AllowanceSettlement(
            id=request.id,
            allowance_id=allowance.id,
            period_no=allowance.period_no,
            charges=count,
            amount=tab,
            why=why.value,
            created_at=now,
            told_at=None,
        )
    )
    session.flush()
    return request


def _release_if_held(session, allowance: Allowance) -> TransferRequest | None:
    """An allowance that ended while its hold was queued: void the hold once it is accepted."""
    if allowance.hold_request_id is None:
        return None
    hold = session.get(TransferRequest, allowance.hold_request_id)
    if hold is None or hold.status != RequestStatus.ACCEPTED.value:
        return None
    return holds.resolve(session, hold, RequestKind.ALLOWANCE_VOID)


def _renew(session, allowance: Allowance, from_state: str, now: datetime) -> bool:
    """Hold what is left of the period (a new period if this one ended): ``approving``, or
    ``active`` with no hold when nothing is left."""
    values: dict = {}
    if allowance.period_ends_at is None or allowance.period_ends_at <= now:
        values.update(_next_period(allowance, now))
    charged = values.get("charged", allowance.charged)
    amount = allowance.limit_amount - charged
    if amount <= 0:
        return _move(
            session, allowance.id, from_state, Allowance.hold_no == allowance.hold_no,
            state=State.ACTIVE.value, hold_request_id=None, **values,
        )  # fmt: skip
    number = allowance.hold_no + 1
    if not _move(
        session,
        allowance.id,
        from_state,
        Allowance.hold_no == allowance.hold_no,
        state=State.APPROVING.value,
        hold_no=number,
        hold_request_id=hold_id(allowance, number),
        **values,
    ):
        return False
    _record_hold(session, allowance, amount, number)
    return True


# -- the worker's side ---------------------------------------------------------------------------


def after_batch(session, limit: int = 500) -> int:
    """After a batch executed: holds accepted -> ``active``; holds refused -> ``paused`` and
    the customer told; settlements posted -> the customer's one SMS, then the next hold. How
    many moved. Each move is a compare-and-set: safe twice, and side by side. (It reads only
    allowances in motion, so it costs little after a batch that held none.)"""
    now = utcnow()
    done = _holds_decided(session, limit) + _settlements_done(session, now, limit)
    session.flush()
    return done


def _holds_decided(session, limit: int) -> int:
    from ..messages import allowances as texts

    rows = session.execute(
        select(Allowance, TransferRequest.status)
        .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
        .where(
            Allowance.state == State.APPROVING.value,
            TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
        )
        .limit(limit)
    ).all()
    done = 0
    for allowance, status in rows:
        accepted = status == RequestStatus.ACCEPTED.value
        to_state = State.ACTIVE if accepted else State.PAUSED
        if not _move(
            session,
            allowance.id,
            State.APPROVING.value,
            Allowance.hold_request_id == allowance.hold_request_id,
            state=to_state.value,
        ):
            continue
        done += 1
        allowance = _fresh(session, allowance.id)
        if accepted:
            if allowance.hold_no == 1:
                _event(session, allowance, "allowance.approved", **_terms(allowance))
            continue
        customer = find_by_phone(session, allowance.customer_phone)
        hold = session.get(TransferRequest, allowance.hold_request_id)
        if customer is not None:
            _sms(
                session,
                customer.phone,
                texts.paused(customer, _merchant(session, allowance), allowance, hold.amount),
                hold.id,
            )
        # Why, in the ledger's or the limits' word (exceeds_credits, limit_daily_exceeded, ...).
        _event(session, allowance, "allowance.paused", failure=hold.result)
    return done


def _settlements_done(session, now: datetime, limit: int) -> int:
    from ..messages import allowances as texts

    rows = session.execute(
        select(AllowanceSettlement, TransferRequest)
        .join(TransferRequest, TransferRequest.id == AllowanceSettlement.id)
        .where(
            AllowanceSettlement.told_at.is_(None),
            TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
        )
        .order_by(AllowanceSettlement.created_at)
        .limit(limit)
    ).all()
    done = 0
    for settlement, request in rows:
        told = session.execute(
            update(AllowanceSettlement)
            .where(AllowanceSettlement.id == settlement.id, AllowanceSettlement.told_at.is_(None))
            .values(told_at=now)
            .execution_options(synchronize_session=False)
        )
        if told.rowcount != 1:
            continue
        done += 1
        allowance = _fresh(session, settlement.allowance_id)
        if request.status != RequestStatus.ACCEPTED.value:  # a hold's resolution cannot fail
            log.error("allowance %s: settlement %s refused (%s)", allowance.id, request.id, request.result)
        if allowance.state == State.SETTLING.value:
            _renew(session, allowance, State.SETTLING.value, now)
            allowance = _fresh(session, allowance.id)
        customer = find_by_phone(session, allowance.customer_phone)
        posted = request.kind == RequestKind.ALLOWANCE_POST.value and request.amount > 0
        if customer is not None and posted and request.status == RequestStatus.ACCEPTED.value:
            body = texts.settled(
                customer,
                _merchant(session, allowance),
                allowance,
                settlement,
                request,
                ended=allowance.state in FINAL,
                left=left(allowance),
            )
            _sms(session, customer.phone, body, request.id)
    return done


def _ended_with_a_hold(session, limit: int) -> int:
    """Allowances cancelled while their hold was still queued: the hold, made since, released
    (read from the pending allowance holds, one per allowance still going)."""
    rows = session.execute(
        select(Allowance)
        .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
        .where(
            TransferRequest.kind == RequestKind.ALLOWANCE.value,
            TransferRequest.hold_state == HoldState.PENDING.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
            Allowance.state.in_((State.CANCELLED.value, State.EXPIRED.value)),
        )
        .limit(limit)
    ).scalars()
    return sum(1 for allowance in list(rows) if _release_if_held(session, allowance) is not None)


def _terms(allowance: Allowance) -> dict:
    return {
        "limit": allowance.limit_amount,
        "max_charge": allowance.max_charge,
        "period": allowance.period,
        "currency": current_app.config["CURRENCY"],
    }


def settle_due(session, now: datetime | None = None, limit: int = 500) -> int:
    """The maintenance job: periods that ended are settled (or, with nothing charged and the
    whole limit still held, simply rolled on); paused allowances try again at their next
    period; allowances past their end expire; asks left unanswered expire; a hold made after
    its allowance was cancelled is released. How many moved."""
    now = now or utcnow()
    done = _ended_with_a_hold(session, limit)
    due = list(
        session.execute(
            select(Allowance)
            .where(
                Allowance.state.in_((State.ACTIVE.value, State.PAUSED.value)),
                Allowance.period_ends_at <= now,
            )
            .order_by(Allowance.period_ends_at)
            .limit(limit)
        ).scalars()
    )
    for allowance in due:
        done += _period_over(session, allowance, now)
    cutoff = now - timedelta(seconds=current_app.config["ALLOWANCE_ASK_SECONDS"])
    unanswered = session.execute(
        select(Allowance.id)
        .where(Allowance.state == State.AWAITING_APPROVAL.value, Allowance.created_at <= cutoff)
        .limit(limit)
    ).scalars()
    for allowance_id in list(unanswered):
        if _move(
            session, allowance_id, State.AWAITING_APPROVAL.value, state=State.EXPIRED.value, decided_at=now
        ):
            done += 1
            _event(session, _fresh(session, allowance_id), "allowance.expired")
    session.flush()
    return done


def _period_over(session, allowance: Allowance, now: datetime) -> int:
    over = allowance.ends_at is not None and allowance.ends_at <= now
    if allowance.state == State.PAUSED.value:
        if over:
            moved = _move(
                session, allowance.id, State.PAUSED.value, state=State.EXPIRED.value, decided_at=now
            )
            if moved:
                _event(session, _fresh(session, allowance.id), "allowance.expired")
            return int(moved)
        return int(_renew(session, allowance, State.PAUSED.value, now))
    if allowance.hold_request_id is None:  # nothing was left last period: a new hold now
        if over:
            return int(
                _move(session, allowance.id, State.ACTIVE.value, state=State.EXPIRED.value, decided_at=now)
            )
        return int(_renew(session, allowance, State.ACTIVE.value, now))
    if over:
        request = settle(session, allowance.id, why=Why.EXPIRED, now=now)
        if request is not None:
            _event(session, _fresh(session, allowance.id), "allowance.expired")
        return int(request is not None)
    hold = session.get(TransferRequest, allowance.hold_request_id)
    if allowance.tab_count == 0 and hold is not None and hold.amount == allowance.limit_amount:
        # Nothing charged and the whole limit held: the hold carries on into the next period.
        return int(
            _move(
                session,
                allowance.id,
                State.ACTIVE.value,
                Allowance.tab_count == 0,
                Allowance.hold_request_id == hold.id,
                **_next_period(allowance, now),
            )
        )
    return int(settle(session, allowance.id, why=Why.PERIOD_END, now=now) is not None)


def last_settlement(session, allowance_id: str) -> AllowanceSettlement | None:
    """An allowance's latest settlement (None before the first)."""
    return session.execute(
        select(AllowanceSettlement)
        .where(AllowanceSettlement.allowance_id == allowance_id)
        .order_by(AllowanceSettlement.created_at.desc(), AllowanceSettlement.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def settlements(session, allowance_id: str) -> list[AllowanceSettlement]:
    """An allowance's settlements, oldest first."""
    return list(
        session.execute(
            select(AllowanceSettlement)
            .where(AllowanceSettlement.allowance_id == allowance_id)
            .order_by(AllowanceSettlement.created_at)
        ).scalars()
    )


__all__ = [
    "Allowance",
    "AllowanceCharge",
    "AllowanceError",
    "AllowanceSettlement",
    "ChargeOutcome",
    "Period",
    "Refusal",
    "State",
    "Why",
    "after_batch",
    "approve",
    "ask",
    "awaiting",
    "cancel",
    "charge",
    "charge_many",
    "decline",
    "left",
    "merchant_name",
    "new_id",
    "of_customer",
    "recent_charges",
    "settle",
    "settle_due",
    "start",
]
