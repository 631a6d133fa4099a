"""Settling: ONE post (or void) of the period's hold per tab, the customer told once when it
is posted, then the next hold (or a pause); the worker's side (``after_batch`` after each
batch, ``settle_due`` in the maintenance job). Nothing here commits."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import aliased

from ...clock import utcnow
from ...database import is_postgres
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

ANY_STATE = tuple(state.value for state in State)


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
    request = resolve_tab(session, hold, tab)
    if request is None:  # the allowance was active, so its hold is accepted and pending
        raise RuntimeError(f"allowance {allowance.id}: its hold {hold.id} is not pending")
    record_settlement(session, request, allowance.id, allowance.period_no, count, tab, why.value, now)
    return request


def resolve_tab(session, hold: TransferRequest, tab: int) -> TransferRequest | None:
    """The one resolution of an allowance's hold for a tab: a partial post of ``tab`` (the
    merchant paying the tariff's fee on it, the rest released), or a void when nothing is owed.
    None when the hold is not pending (claimed by another resolution)."""
    if tab > 0:
        return holds.resolve(session, hold, RequestKind.ALLOWANCE_POST, amount=tab, payee_fee=_payee_fee(tab))
    return holds.resolve(session, hold, RequestKind.ALLOWANCE_VOID)


def record_settlement(
    session,
    request: TransferRequest,
    allowance_id: str,
    period_no: int,
    charges: int,
    amount: int,
    why: str,
    now: datetime,
    told_at: datetime | None = None,
) -> AllowanceSettlement:
    """The settlement row of one resolution (its id is the resolution's): what the customer's
    SMS and the merchant's event will say, written in the resolution's transaction."""
    settlement = AllowanceSettlement(
        id=request.id,
        allowance_id=allowance_id,
        period_no=period_no,
        charges=charges,
        amount=amount,
        why=why,
        created_at=now,
        told_at=told_at,
    )
    session.add(settlement)
    session.flush()
    return settlement


def release_if_held(session, allowance: Allowance) -> TransferRequest | None:
    """An allowance that ended while its hold was queued: void the hold once it is accepted.
    Never a hold with charges owed on it (a refused settlement's tab, restored): that is posted,
    tried again by ``settle_due`` (``_settle_again``)."""
    if allowance.hold_request_id is None or allowance.tab_amount > 0:
        return None
    hold = session.get(TransferRequest, allowance.hold_request_id)
    if hold is None or hold.status != RequestStatus.ACCEPTED.value:
        return None
    return holds.resolve(session, hold, RequestKind.ALLOWANCE_VOID)


def _renew(session, allowance: Allowance, from_state: str, now: datetime) -> bool:
    """Hold what is left of the period (a new period if this one ended): ``approving``, or
    ``active`` with no hold when nothing is left; ``expired`` (no hold) past its own end."""
    if allowance.ends_at is not None and allowance.ends_at <= now:
        return _expire(session, allowance, from_state, now)
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


# The kinds ``after_batch`` follows: the period's hold, and the settlement that posts or voids it.
AFTER_BATCH_KINDS = frozenset(
    {RequestKind.ALLOWANCE.value, RequestKind.ALLOWANCE_POST.value, RequestKind.ALLOWANCE_VOID.value}
)


def moved_by_any(kinds) -> bool:
    """Whether a batch that executed requests of these kinds gave ``after_batch`` something to
    do (the maintenance job runs it anyway, for what a batch's job left)."""
    return not AFTER_BATCH_KINDS.isdisjoint(kinds)


def after_batch(session, limit: int = 500) -> int:
    """After a batch executed: holds accepted -> ``active``; holds refused -> ``paused`` and
    the customer told; settlements posted -> the customer's one SMS, then the next hold. How
    many moved. Each move is a compare-and-set: safe twice, and side by side. (It reads only
    allowances in motion, so it costs little after a batch that held none.)"""
    now = utcnow()
    done = _holds_decided(session, limit) + _settlements_done(session, now, limit)
    session.flush()
    return done


def _unclaimed(session, query, table):
    """``query`` for one of several workers: on PostgreSQL the rows another worker's transaction
    holds are skipped (``FOR UPDATE SKIP LOCKED`` on ``table``'s rows), so two workers after two
    batches take disjoint rows instead of reading the same 500 and queueing on each UPDATE.
    SQLite has one writer at a time: nothing to skip."""
    if is_postgres(session):
        return query.with_for_update(skip_locked=True, of=table)
    return query


def _holds_decided(session, limit: int) -> int:
    from ...messages import allowances as texts

    rows = session.execute(
        _unclaimed(
            session,
            select(Allowance, TransferRequest.status)
            .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
            .where(
                Allowance.state == State.APPROVING.value,
                TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
            )
            .limit(limit),
            Allowance,
        )
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
        # Why, in the ledger's or the limits' word (exceeds_credits, limit_daily_exceeded, ...).
        tell_merchant(session, allowance, "allowance.paused", failure=hold.result)
        refused = _holds_refused_in_a_row(session, allowance)
        if refused >= current_app.config["ALLOWANCE_PAUSED_PERIODS"]:
            _expire(session, allowance, State.PAUSED.value, utcnow(), paused_periods=refused)
        elif refused == 1 and customer is not None:
            # Told once per pause: the holds tried at the next periods are silent (an SMS every
            # period, forever, for an allowance the customer may have forgotten, costs more
            # than it tells); the pause ends, with one SMS, after ALLOWANCE_PAUSED_PERIODS.
            tell_customer(
                session,
                customer.phone,
                texts.paused(customer, merchant_of(session, allowance), allowance, hold.amount),
                hold.id,
            )
    return done


def _holds_refused_in_a_row(session, allowance: Allowance) -> int:
    """How many of the allowance's latest holds were refused in a row (1: it has just paused)."""
    most = current_app.config["ALLOWANCE_PAUSED_PERIODS"]  # no need to look further back
    ids = [hold_id(allowance, n) for n in range(allowance.hold_no, max(0, allowance.hold_no - most), -1)]
    query = select(TransferRequest.id, TransferRequest.status).where(TransferRequest.id.in_(ids))
    statuses = {request_id: status for request_id, status in session.execute(query).all()}
    refused = 0
    for request_id in ids:
        if statuses.get(request_id) != RequestStatus.REJECTED.value:
            break
        refused += 1
    return refused


def _expire(
    session, allowance: Allowance, from_state: str, now: datetime, *, paused_periods: int = 0
) -> bool:
    """End an allowance with no hold (or a hold refused) at its end, or after too many periods
    paused: ``expired``, the merchant's ``allowance.expired`` and the customer's ONE SMS."""
    from ...messages import allowances as texts

    if not move(session, allowance.id, from_state, state=State.EXPIRED.value, decided_at=now):
        return False
    allowance = fresh(session, allowance.id)
    tell_merchant(session, allowance, "allowance.expired")
    customer = find_by_phone(session, allowance.customer_phone)
    if customer is not None:
        body = texts.ended(
            customer, merchant_of(session, allowance), allowance, paused_periods=paused_periods
        )
        tell_customer(session, customer.phone, body)
    return True


def _settlements_done(session, now: datetime, limit: int) -> int:
    from ...messages import allowances as texts

    rows = session.execute(
        _unclaimed(
            session,
            select(AllowanceSettlement, TransferRequest)
            .join(TransferRequest, TransferRequest.id == AllowanceSettlement.id)
            .where(
                AllowanceSettlement.told_at.is_(None),
                TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
            )
            .order_by(AllowanceSettlement.created_at)
            .limit(limit),
            AllowanceSettlement,
        )
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
        if request.status != RequestStatus.ACCEPTED.value:
            _refused(session, allowance, settlement, request, now)
            continue
        if allowance.state == State.SETTLING.value:
            if allowance.ends_at is not None and allowance.ends_at <= now:
                # Its own end came while this settlement was queued: it ends here (the SMS
                # below says so), with no next hold.
                move(session, allowance.id, State.SETTLING.value, state=State.EXPIRED.value, decided_at=now)
                tell_merchant(session, fresh(session, allowance.id), "allowance.expired")
            else:
                _renew(session, allowance, State.SETTLING.value, now)
            allowance = fresh(session, allowance.id)
        customer = find_by_phone(session, allowance.customer_phone)
        if customer is None:
            continue
        posted = request.kind == RequestKind.ALLOWANCE_POST.value and request.amount > 0
        if posted:
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
        elif allowance.state == State.EXPIRED.value:  # at its end with nothing charged: its one SMS
            body = texts.ended(customer, merchant_of(session, allowance), allowance)
            tell_customer(session, customer.phone, body, request.id)
    return done


def _refused(
    session, allowance: Allowance, settlement: AllowanceSettlement, request: TransferRequest, now: datetime
) -> None:
    """A settlement the ledger (or a limit: the merchant locked by Tuma) refused: nothing moved,
    so the hold is ``pending`` again and its charges are owed again (the tab restored on the
    allowance, which stays where it was: ``settling`` takes no charges and makes no next hold,
    a cancelled or expired one stays ended). ``settle_due`` tries it again after
    ``retry_wait`` (ALLOWANCE_SETTLE_RETRY_SECONDS, doubling with each refusal up to
    ALLOWANCE_SETTLE_RETRY_MAX_SECONDS) as ``<hold>.r2``, ``.r3``, ...: the time is stored with the
    restored tab (``settle_again_at``), so the retries are picked in SQL by when each is due; no
    receipt, as nothing was paid. Refused because Tuma is reviewing the merchant
    (``payee_locked``): the customer is told ONCE that the money stays held (at the first such
    refusal of this hold's settlement; the retries are silent). An operator may void the hold
    instead (``decisions.void_refused``)."""
    from ...limits import Result
    from ...messages import allowances as texts

    holds.reopen(session, request)
    if request.result == Result.PAYEE_LOCKED and _first_locked_refusal(session, request):
        customer = find_by_phone(session, allowance.customer_phone)
        if customer is not None:
            body = texts.under_review(customer, merchant_of(session, allowance), settlement.amount)
            tell_customer(session, customer.phone, body, request.id)
    attempt = holds.attempt_of(request.pending_request_id, request.id)
    move(
        session,
        allowance.id,
        ANY_STATE,  # whatever it became meanwhile (a cancel racing this): the charges are owed
        Allowance.hold_request_id == request.pending_request_id,
        tab_amount=Allowance.tab_amount + settlement.amount,
        tab_count=Allowance.tab_count + settlement.charges,
        settle_again_at=now + retry_wait(attempt),
    )
    alert = attempt >= current_app.config["ALLOWANCE_SETTLE_ALERT_AFTER"]
    (log.error if alert else log.warning)(
        "allowance %s: settlement %s refused (%s), attempt %d; tried again later%s",
        allowance.id,
        request.id,
        request.result,
        attempt,
        " (listed by `flask review list`)" if alert else "",
    )


def _first_locked_refusal(session, request: TransferRequest) -> bool:
    """``request`` is the only attempt of its hold's settlement refused as ``payee_locked``."""
    from ...limits import Result

    found = session.execute(
        select(TransferRequest.id).where(
            TransferRequest.pending_request_id == request.pending_request_id,
            TransferRequest.status == RequestStatus.REJECTED.value,
            TransferRequest.result == Result.PAYEE_LOCKED,
        )
    ).scalars()
    return list(found) == [request.id]


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
            Allowance.tab_amount == 0,
        )
        .limit(limit)
    ).scalars()
    return sum(1 for allowance in list(rows) if release_if_held(session, allowance) is not None)


_REFUSED_WAITING = (
    TransferRequest.kind == RequestKind.ALLOWANCE.value,
    TransferRequest.hold_state == HoldState.PENDING.value,
    TransferRequest.status == RequestStatus.ACCEPTED.value,
    Allowance.state.in_((State.SETTLING.value, State.CANCELLED.value, State.EXPIRED.value)),
    # A settling one with nothing owed: its void was refused (an ended one's void is made again
    # by _ended_with_a_hold).
    or_(Allowance.tab_amount > 0, Allowance.state == State.SETTLING.value),
)


def _due_again(session, now: datetime, limit: int):
    """The refused settlements whose wait is over, the longest due first, at most ``limit``:
    chosen in SQL by ``settle_again_at`` (indexed; only the waiting rows have one), so however
    many still wait (a merchant locked with thousands of readers), one that is due is never
    crowded out; each one tried and refused again goes to the back (its next wait is longer)."""
    return _unclaimed(
        session,
        select(Allowance)
        .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
        .where(Allowance.settle_again_at <= now, *_REFUSED_WAITING)
        .order_by(Allowance.settle_again_at, Allowance.id)
        .limit(limit),
        Allowance,
    )


def retry_wait(attempts: int) -> timedelta:
    """How long a settlement refused ``attempts`` times waits before the next attempt:
    ALLOWANCE_SETTLE_RETRY_SECONDS after the first refusal, doubling with each further one, at
    most ALLOWANCE_SETTLE_RETRY_MAX_SECONDS."""
    first = current_app.config["ALLOWANCE_SETTLE_RETRY_SECONDS"]
    most = max(first, current_app.config["ALLOWANCE_SETTLE_RETRY_MAX_SECONDS"])
    return timedelta(seconds=min(most, first * 2 ** min(max(attempts, 1) - 1, 32)))


def _settle_again(session, now: datetime, limit: int) -> int:
    """Refused settlements whose wait is over (``_due_again``: the longest due first): the tab
    posted again from the same hold, as the next attempt (``<hold>.r2``, ...). One retrier per
    tab: the tab leaves the allowance by compare-and-set, then the hold is claimed (if someone
    else claimed it first, the tab goes back). What the last attempt said (why, period) is
    carried over. The wait after the n-th refused attempt is ``retry_wait(n)``: doubling from
    ALLOWANCE_SETTLE_RETRY_SECONDS, stored by ``_refused`` as ``settle_again_at``."""
    done = 0
    for allowance in list(session.execute(_due_again(session, now, limit)).scalars()):
        last = last_settlement(session, allowance.id)
        if last is None or not last.id.startswith(f"{allowance.hold_request_id}.r"):
            # Not a refused settlement's tab (nothing else leaves a tab on a pending hold): not
            # due again, so it takes no place in the next run's batch.
            move(session, allowance.id, allowance.state, settle_again_at=None)
            continue
        tab, count = allowance.tab_amount, allowance.tab_count
        if not move(
            session,
            allowance.id,
            allowance.state,
            Allowance.hold_request_id == allowance.hold_request_id,
            Allowance.tab_amount == tab,
            Allowance.tab_count == count,
            tab_amount=0,
            tab_count=0,
            settle_again_at=None,  # set again if this attempt is refused too
        ):
            continue
        hold = session.get(TransferRequest, allowance.hold_request_id)
        request = resolve_tab(session, hold, tab)
        if request is None:  # claimed meanwhile: the tab is owed still (its claimer's to settle)
            move(
                session, allowance.id, ANY_STATE, tab_amount=Allowance.tab_amount + tab,
                tab_count=Allowance.tab_count + count,
            )  # fmt: skip
            continue
        record_settlement(session, request, allowance.id, last.period_no, count, tab, last.why, now)
        done += 1
    return done


@dataclass(frozen=True)
class RefusedPage:
    """One page of the refused settlements operators must see (``refused_settlements``):
    ``rows`` (allowance, its last refused attempt), soonest due again first, the first at
    ``start`` (0-based) of ``total`` waiting; the lists say "showing a-b of total"."""

    rows: list[tuple[Allowance, TransferRequest]]
    total: int
    start: int
    size: int

    @property
    def more(self) -> int:
        """How many wait beyond this page."""
        return max(0, self.total - self.start - len(self.rows))

    @property
    def summary(self) -> str:
        """Which of how many: "showing 1-500 of 1,234, soonest due again first"."""
        if not self.rows:
            return f"none from {self.start + 1:,} on, of {self.total:,}"
        first, last = self.start + 1, self.start + len(self.rows)
        return f"showing {first:,}-{last:,} of {self.total:,}, soonest due again first"

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _refused_at_least(at_least: int):
    """SQL: the allowance's hold has a refused attempt numbered ``at_least`` or more. Attempts
    are numbered in order (``.r``, ``.r2``, ...), so that is: the attempt ``at_least`` exists (a
    primary-key lookup, no attempt read in Python, so the count and the page agree)."""
    attempt = aliased(TransferRequest)
    suffix = holds.resolution_id("", max(at_least, 1))  # ".r", ".r2", ...
    return exists().where(attempt.id == Allowance.hold_request_id + suffix)


def refused_settlements(
    session, at_least: int | None = None, *, start: int = 0, size: int | None = None
) -> RefusedPage:
    """For operators: allowances whose settlement was refused ``at_least`` times
    (ALLOWANCE_SETTLE_ALERT_AFTER) and is not posted yet, with the last refused attempt; one
    page of ``size`` (REVIEW_PAGE_SIZE) from ``start``, soonest due again first (``settle_again_at``,
    then id), and how many wait in all, so a list never drops one silently. Every refused
    settlement waiting has a ``settle_again_at`` (``_refused`` sets it; only a retry claiming the
    hold or a void clears it), so both are read from ``ix_allowances_settle_again_at``."""
    at_least = at_least or current_app.config["ALLOWANCE_SETTLE_ALERT_AFTER"]
    size = max(1, size or current_app.config["REVIEW_PAGE_SIZE"])
    start = max(0, start)
    where = (Allowance.settle_again_at.is_not(None), *_REFUSED_WAITING, _refused_at_least(at_least))
    total = session.execute(
        select(func.count())
        .select_from(Allowance)
        .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
        .where(*where)
    ).scalar_one()
    # The holds come with the page (the lists read their amounts and codes), and every row's
    # last attempt in one more query, not two queries a row.
    page = session.execute(
        select(Allowance, TransferRequest)
        .join(TransferRequest, TransferRequest.id == Allowance.hold_request_id)
        .where(*where)
        .order_by(Allowance.settle_again_at, Allowance.id)
        .offset(start)
        .limit(size)
    ).all()
    last = holds.resolutions(session, [hold.id for _, hold in page])
    rows = [(allowance, last[hold.id]) for allowance, hold in page if hold.id in last]
    return RefusedPage(rows, total, start, size)


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
    done = _ended_with_a_hold(session, limit) + _settle_again(session, now, limit)
    due = list(
        session.execute(
            select(Allowance)
            .where(
                Allowance.state.in_((State.ACTIVE.value, State.PAUSED.value)),
                or_(Allowance.period_ends_at <= now, Allowance.ends_at <= now),
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
        .where(
            Allowance.state == State.AWAITING_APPROVAL.value,
            or_(Allowance.created_at <= cutoff, Allowance.ends_at <= now),
        )
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
        return int(_renew(session, allowance, State.PAUSED.value, now))  # past its end: expired
    if allowance.hold_request_id is None:  # nothing was left last period: a new hold now
        return int(_renew(session, allowance, State.ACTIVE.value, now))  # past its end: expired
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
