"""Asking and deciding: the merchant asks (the API), the customer approves with the PIN,
declines, starts one on USSD or cancels; what My approvals and My allowances read. Nothing
here commits."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select

from ...clock import utcnow
from ...users import User, find_by_phone
from .records import (
    DESCRIPTION_LIMIT,
    FINAL,
    ID_LIMIT,
    LIVE,
    Allowance,
    AllowanceCharge,
    AllowanceError,
    ConflictingAllowance,
    Period,
    State,
    Why,
    fresh,
    move,
    period_end,
    record_hold,
    tell_customer,
    tell_merchant,
)
from .settlement import release_if_held, settle


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
    from ...limits import start_of_today

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
    ends_at: datetime | None = None,
) -> Allowance:
    """The merchant asks (the API): recorded ``awaiting_approval`` and the customer told by SMS
    to approve in My approvals. ``phone`` is E.164; ``ends_at`` (naive UTC, in the future) its
    own end, if it has one. The same id again, from the same merchant to the same number on the
    same terms, its end included (a retried request), returns the first one; anything else under
    it (another merchant's, another number's, other terms) is ``ConflictingAllowance``, never
    handed back."""
    from ...messages import allowances as texts

    existing = session.get(Allowance, allowance_id)
    if existing is not None:
        asked_as = (merchant.account_id, phone, limit, max_charge, period, description, reference, ends_at)
        if _asked_terms(existing) != asked_as:
            raise ConflictingAllowance(allowance_id)
        return existing
    _check_terms(limit, max_charge, period, description)
    if ends_at is not None and ends_at <= utcnow():
        raise AllowanceError("ends_at: in the future")
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
        ends_at=ends_at,
    )
    session.add(allowance)
    session.flush()
    customer = find_by_phone(session, phone)
    tell_customer(session, phone, texts.asked(customer, merchant, allowance))
    return allowance


def _asked_terms(allowance: Allowance) -> tuple:
    return (
        allowance.merchant_account_id,
        allowance.customer_phone,
        allowance.limit_amount,
        allowance.max_charge,
        allowance.period,
        allowance.description,
        allowance.reference,
        allowance.ends_at,
    )


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
                or_(Allowance.ends_at.is_(None), Allowance.ends_at > utcnow()),
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
    if len(allowance_id) > ID_LIMIT:
        return None
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.merchant_account_id != merchant_account_id:
        return None
    return allowance


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
    if not move(
        session,
        allowance.id,
        State.AWAITING_APPROVAL.value,
        Allowance.created_at > cutoff,
        or_(Allowance.ends_at.is_(None), Allowance.ends_at > now),  # not approved past its end
        state=State.APPROVING.value,
        customer_account_id=customer.account_id,
        decided_at=now,
        hold_request_id=f"{allowance.id}.h1",
        **values,
    ):
        return False
    allowance = fresh(session, allowance.id)
    record_hold(session, allowance, allowance.limit_amount, 1)
    return True


def _started_as(allowance: Allowance, customer: User, merchant: User, limit: int, period: str) -> bool:
    """Whether ``allowance`` is what ``start`` records for these terms (a customer's own: the
    description empty, no reference, the customer's account set at once)."""
    return (
        allowance.customer_phone,
        allowance.customer_account_id,
        allowance.merchant_account_id,
        allowance.limit_amount,
        allowance.max_charge,
        allowance.period,
        allowance.description,
        allowance.reference,
    ) == (customer.phone, customer.account_id, merchant.account_id, limit, limit, period, "", None)


def start(
    session, customer: User, merchant: User, *, limit: int, period: str, allowance_id: str
) -> Allowance:
    """The customer starts one on USSD (PIN checked by the caller): ``max_charge`` is the limit;
    the first period's hold is recorded at once. The same id again, from the same customer for
    the same merchant, limit and period (a retried hop), returns the first one; anything else
    under it (another customer's, other terms, one a merchant asked for) is
    ``ConflictingAllowance``, never handed back as this one."""
    existing = session.get(Allowance, allowance_id)
    if existing is not None:
        if not _started_as(existing, customer, merchant, limit, period):
            raise ConflictingAllowance(allowance_id)
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
    record_hold(session, allowance, limit, 1)
    return allowance


def decline(session, customer: User, allowance_id: str) -> bool:
    """The customer declined in My approvals; the merchant's system hears of it."""
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.customer_phone != customer.phone:
        return False
    if not move(
        session, allowance.id, State.AWAITING_APPROVAL.value, state=State.DECLINED.value, decided_at=utcnow()
    ):
        return False
    tell_merchant(session, fresh(session, allowance.id), "allowance.declined")
    return True


def cancel(session, customer: User, allowance_id: str) -> bool:
    """The customer cancels (PIN checked by the caller): an active tab is settled now and no
    next period follows; a hold still queued is voided once the worker has made it."""
    allowance = session.get(Allowance, allowance_id)
    if allowance is None or allowance.customer_phone != customer.phone:
        return False
    for _ in range(5):
        allowance = fresh(session, allowance_id)
        if allowance.state in FINAL:
            return False
        if allowance.state == State.ACTIVE.value and allowance.hold_request_id is not None:
            if settle(session, allowance_id, why=Why.CANCELLED) is not None:
                break
            continue  # a charge or a settlement moved it first: look again
        if move(session, allowance_id, allowance.state, state=State.CANCELLED.value, decided_at=utcnow()):
            release_if_held(session, fresh(session, allowance_id))
            break
    else:
        return False
    tell_merchant(session, fresh(session, allowance_id), "allowance.cancelled")
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
