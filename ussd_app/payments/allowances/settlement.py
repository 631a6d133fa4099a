"""Settling: ONE post (or void) of the period's hold per tab, the customer told once when it
is posted, then the next hold (or a pause); the worker's side (``after_batch`` after each
batch, ``settle_due`` in the maintenance job). Nothing here commits."""

import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from ...clock import utcnow
from ...users import find_by_phone
from .. import holds
from ..models import HoldState, RequestKind, RequestStatus, TransferRequest
from .records import (
    FINAL,
    Allowance,
    AllowanceSettlement,
    State,
    Why,
    fresh,
    hold_id,
    left,
    merchant_of,
    move,
    period_end,
    record_hold,
    tell_customer,
    tell_merchant,
)

log = logging.getLogger(__name__)


def _payee_fee(amount: int) -> int:
    """The merchant's fee on a settlement, from the tariff in force (a tariff stored before
    allowances existed prices it by the built-in rule: a hold must resolve, never be refused)."""
    from ...tariffs import Tariff, default_document, in_force

    kind = RequestKind.ALLOWANCE_POST.value
    try:
        return in_force().payee_fee(kind, amount)
    except ValueError:
        return Tariff(None, default_document()).payee_fee(kind, amount)


def _next_period(allowance: Allowance, now: datetime) -> dict:
    """The period values after the current one (skipping whole periods that passed unseen)."""
    start, number = allowance.period_ends_at, allowance.period_no
    # The first period began when it was approved (or started): months keep that day.
    began = allowance.decided_at or allowance.period_starts_at or start
    end = period_end(start, allowance.period, began.day)
    number += 1
    while end <= now:
        start, end, number = end, period_end(end, allowance.period, began.day), number + 1
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
        allowance = fresh(session, allowance_id)
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
        if move(
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


def release_if_held(session, allowance: Allowance) -> TransferRequest | None:
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
        return move(
            session, allowance.id, from_state, Allowance.hold_no == allowance.hold_no,
            state=State.ACTIVE.value, hold_request_id=None, **values,
        )  # fmt: skip
    number = allowance.hold_no + 1
    if not move(
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
    record_hold(session, allowance, amount, number)
    return True


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
    from ...messages import allowances as texts

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
        if not move(
            session,
            allowance.id,
            State.APPROVING.value,
            Allowance.hold_request_id == allowance.hold_request_id,
            state=to_state.value,
        ):
            continue
        done += 1
        allowance = fresh(session, allowance.id)
        if accepted:
            # The first hold accepted, whichever it is (the first may have been refused: paused,
            # then held next period): the merchant starts charging on this event. Written once
            # per allowance (tell_merchant finds it written on later holds).
            tell_merchant(session, allowance, "allowance.approved", **_terms(allowance))
            continue
        customer = find_by_phone(session, allowance.customer_phone)
        hold = session.get(TransferRequest, allowance.hold_request_id)
        if customer is not None:
            tell_customer(
                session,
                customer.phone,
                texts.paused(customer, merchant_of(session, allowance), allowance, hold.amount),
                hold.id,
            )
        # Why, in the ledger's or the limits' word (exceeds_credits, limit_daily_exceeded, ...).
        tell_merchant(session, allowance, "allowance.paused", failure=hold.result)
    return done


def _settlements_done(session, now: datetime, limit: int) -> int:
    from ...messages import allowances as texts

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
        allowance = fresh(session, settlement.allowance_id)
        if request.status != RequestStatus.ACCEPTED.value:  # a hold's resolution cannot fail
            log.error("allowance %s: settlement %s refused (%s)", allowance.id, request.id, request.result)
        if allowance.state == State.SETTLING.value:
            _renew(session, allowance, State.SETTLING.value, now)
            allowance = fresh(session, allowance.id)
        customer = find_by_phone(session, allowance.customer_phone)
        posted = request.kind == RequestKind.ALLOWANCE_POST.value and request.amount > 0
        if customer is not None and posted and request.status == RequestStatus.ACCEPTED.value:
            body = texts.settled(
                customer,
                merchant_of(session, allowance),
                allowance,
                settlement,
                request,
                ended=allowance.state in FINAL,
                left=left(allowance),
            )
            tell_customer(session, customer.phone, body, request.id)
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
    return sum(1 for allowance in list(rows) if release_if_held(session, allowance) is not None)


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
        if move(
            session, allowance_id, State.AWAITING_APPROVAL.value, state=State.EXPIRED.value, decided_at=now
        ):
            done += 1
            tell_merchant(session, fresh(session, allowance_id), "allowance.expired")
    session.flush()
    return done


def _period_over(session, allowance: Allowance, now: datetime) -> int:
    over = allowance.ends_at is not None and allowance.ends_at <= now
    if allowance.state == State.PAUSED.value:
        if over:
            moved = move(session, allowance.id, State.PAUSED.value, state=State.EXPIRED.value, decided_at=now)
            if moved:
                tell_merchant(session, fresh(session, allowance.id), "allowance.expired")
            return int(moved)
        return int(_renew(session, allowance, State.PAUSED.value, now))
    if allowance.hold_request_id is None:  # nothing was left last period: a new hold now
        if over:
            return int(
                move(session, allowance.id, State.ACTIVE.value, state=State.EXPIRED.value, decided_at=now)
            )
        return int(_renew(session, allowance, State.ACTIVE.value, now))
    if over:
        request = settle(session, allowance.id, why=Why.EXPIRED, now=now)
        if request is not None:
            tell_merchant(session, fresh(session, allowance.id), "allowance.expired")
        return int(request is not None)
    hold = session.get(TransferRequest, allowance.hold_request_id)
    if allowance.tab_count == 0 and hold is not None and hold.amount == allowance.limit_amount:
        # Nothing charged and the whole limit held: the hold carries on into the next period.
        return int(
            move(
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
