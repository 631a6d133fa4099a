"""Standing orders: a customer pays a person, a till or a pay bill on a schedule, with the PIN
given once at set-up (issue 18 item 3; M-Pesa's Ratiba).

An order (``standing_orders``) says who pays whom (a ``send`` to a customer, ``buy_goods`` to a
till, ``pay_bill`` with its account reference), how much, how often (daily, weekly, monthly),
from which first date, until an end date or for a number of runs. Each run
(``standing_order_runs``, one row per order and date) pays through an ORDINARY transfer request
of that kind, with the same fee, limits and receipts as if the payer had typed it, recorded
under an id derived from the order, the run's date and the attempt::

    <order id>.<YYYYMMDD>.a<attempt>          e.g. so5d0c...e1.20261202.a1

So running the scheduler twice for one instant (or two schedulers side by side) pays once: the
order moves on to its next date by compare-and-set (the loser moves nothing and records
nothing), the run's row is keyed by (order, date), and a transfer request recorded again under
its id is the one already recorded (``record_request``).

Days are the days people read, in ``TIMEZONE``; instants are naive UTC (``clock.utcnow``). A
run is due from midnight of its date. Monthly on the 29th, 30th or 31st pays on the last day of
shorter months. An occurrence the scheduler missed (it was down) is paid late, once.

States, each moved only by compare-and-set (an UPDATE ... WHERE state = <from>):

- order: ``active`` -> ``paused`` -> ``active`` (the payer); ``active``/``paused`` ->
  ``cancelled`` (the payer, with the PIN); ``active`` -> ``finished`` when its last run is made
  (both sides are told it has ended once that run is settled, paid or skipped).
  Dates that pass while it is paused make no run (and do not count towards a number of runs).
- run: ``paying`` (an attempt is recorded) -> ``paid`` | ``retry`` (refused: one more try at
  ``retry_at``, later the same day, never past its end) -> ``paying`` (attempt 2) -> ``paid`` |
  ``skipped`` (the payer is told; the order's next run goes on as scheduled). A retry the
  scheduler reaches only after that day (it was down) is skipped, never paid beside the next
  day's run.

A run still queued when its payer pauses or cancels the order is refused by the worker
(``stopped_runs``: ``order_stopped``) and skipped without a word.

A refused run posts nothing (the ledger writes a chain whole or not at all: no fee), and the
worker writes no refusal receipt for it (``quiet_refusals``): the payer gets ONE SMS per
failure, from ``settle`` here, saying when it is tried again, or that the run is skipped.
The payee is told when an order to them starts and when it ends (cancelled, finished).

Everything here adds to the caller's session; nothing commits.
"""

import calendar
import enum
import logging
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, Integer, String, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..database import among
from ..extensions import db
from ..messages import standing_orders as texts
from ..users import User, find_by_account, is_operator_locked
from .models import RequestKind, RequestStatus, TransferRequest
from .submit import record_request

log = logging.getLogger(__name__)

KINDS = frozenset({RequestKind.SEND.value, RequestKind.BUY_GOODS.value, RequestKind.PAY_BILL.value})
MAX_RUNS = 999
# How far ahead a first or last date may be set, in days.
MAX_DAYS_AHEAD = 2 * 366
# A run's transfer request id: ``<order id>.<YYYYMMDD>.a<attempt>``.
_ORDER_ID = re.compile(r"so[0-9a-f]{22}")
_RUN_REQUEST = re.compile(r"so[0-9a-f]{22}\.\d{8}\.a\d")


class Frequency(enum.StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class State(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class RunState(enum.StrEnum):
    PAYING = "paying"
    RETRY = "retry"
    PAID = "paid"
    SKIPPED = "skipped"


class StandingOrder(db.Model):
    __tablename__ = "standing_orders"
    __table_args__ = (
        Index("ix_standing_orders_due", "state", "next_date"),
        Index("ix_standing_orders_payer", "payer_account_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)  # "so" + 22 hex, minted at confirm
    payer_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    payee_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # send, buy_goods or pay_bill
    reference: Mapped[str | None] = mapped_column(String(64), default=None)  # a pay bill's account
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units, each run
    frequency: Mapped[str] = mapped_column(String(8))
    first_date: Mapped[date] = mapped_column(Date)
    # The date of the next run (None once the order has ended).
    next_date: Mapped[date | None] = mapped_column(Date, default=None)
    ends_on: Mapped[date | None] = mapped_column(Date, default=None)  # the last date a run may have
    runs_limit: Mapped[int | None] = mapped_column(Integer, default=None)  # or how many runs
    runs_made: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(12), default=State.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class StandingOrderRun(db.Model):
    __tablename__ = "standing_order_runs"
    __table_args__ = (Index("ix_standing_order_runs_state", "state", "retry_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "<order id>.<YYYYMMDD>"
    order_id: Mapped[str] = mapped_column(ForeignKey("standing_orders.id"), index=True)
    run_date: Mapped[date] = mapped_column(Date)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(12), default=RunState.PAYING.value)
    # The current attempt's transfer request ("<id>.a<attempt>"; None for a run never tried).
    transfer_request_id: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    tried_at: Mapped[datetime] = mapped_column(DateTime)  # the scheduler's instant for the attempt
    retry_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    result: Mapped[str | None] = mapped_column(String(40), default=None)  # why it was refused
    settled_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class OrderError(ValueError):
    pass


def mint_order_id() -> str:
    return "so" + uuid.uuid4().hex[:22]


def run_request_id(run_id: str, attempt: int) -> str:
    return f"{run_id}.a{attempt}"


# -- days -------------------------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def local_date(moment: datetime | None = None) -> date:
    """The day people read at ``moment`` (naive UTC; now when None)."""
    return (moment or utcnow()).replace(tzinfo=UTC).astimezone(_zone()).date()


def midnight(day: date) -> datetime:
    """The start of ``day`` in ``TIMEZONE``, as naive UTC."""
    return datetime.combine(day, time(0), tzinfo=_zone()).astimezone(UTC).replace(tzinfo=None)


def _month_day(first: date, year: int, month: int) -> date:
    """The day of ``first`` in that month; the last day of a shorter month."""
    return date(year, month, min(first.day, calendar.monthrange(year, month)[1]))


def on_or_after(frequency: str, first: date, day: date) -> date:
    """The first date of the schedule (``frequency`` from ``first``) on or after ``day``."""
    if day <= first:
        return first
    if frequency == Frequency.DAILY:
        return day
    if frequency == Frequency.WEEKLY:
        return first + timedelta(days=-(-(day - first).days // 7) * 7)
    year, month = day.year, day.month
    candidate = _month_day(first, year, month)
    if candidate < day:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        candidate = _month_day(first, year, month)
    return candidate


def following(frequency: str, first: date, day: date) -> date:
    """The schedule's first date after ``day``."""
    return on_or_after(frequency, first, day + timedelta(days=1))


# -- the payer's side (the menus) ------------------------------------------------------------


def fee(kind: str, amount: int) -> int:
    """What each run costs the payer, from the tariff in force."""
    from ..tariffs import in_force

    return in_force().fee(kind, amount)


def create(
    session,
    payer: User,
    *,
    order_id: str,
    kind: str,
    payee_account_id: int,
    amount: int,
    frequency: str,
    first_date: date,
    ends_on: date | None = None,
    runs_limit: int | None = None,
    reference: str | None = None,
    now: datetime | None = None,
) -> StandingOrder:
    """Record the order the payer confirmed with their PIN, and tell both sides. Idempotent: an
    order already recorded under ``order_id`` (a repeated USSD request) is returned as is."""
    existing = session.get(StandingOrder, order_id)
    if existing is not None:
        if existing.payer_account_id != payer.account_id:
            raise OrderError("order id taken")
        return existing
    today = local_date(now)
    if not _ORDER_ID.fullmatch(order_id):  # the shape quiet_refusals knows a run by
        raise OrderError("an order id from mint_order_id")
    if kind not in KINDS or amount <= 0 or payee_account_id == payer.account_id:
        raise OrderError("a payment of a kind standing orders make, to someone else")
    if frequency not in set(Frequency):
        raise OrderError(f"how often: one of {', '.join(Frequency)}")
    if not today <= first_date <= today + timedelta(days=MAX_DAYS_AHEAD):
        raise OrderError("the first date is in the past or too far ahead")
    if (ends_on is None) == (runs_limit is None):
        raise OrderError("an end date or a number of runs")
    if ends_on is not None and not first_date <= ends_on <= today + timedelta(days=MAX_DAYS_AHEAD):
        raise OrderError("the end date is before the first date or too far ahead")
    if runs_limit is not None and not 1 <= runs_limit <= MAX_RUNS:
        raise OrderError(f"between 1 and {MAX_RUNS} runs")
    # The payer's row, locked: two sessions confirming at once count one after the other.
    session.execute(select(User.id).where(User.id == payer.id).with_for_update())
    if not room_for_another(session, payer, now):
        raise OrderError("as many orders running, or set up today, as a payer may have")
    order = StandingOrder(
        id=order_id,
        payer_account_id=payer.account_id,
        payee_account_id=payee_account_id,
        kind=kind,
        reference=reference if kind == RequestKind.PAY_BILL.value else None,
        amount=amount,
        frequency=frequency,
        first_date=first_date,
        next_date=first_date,
        ends_on=ends_on,
        runs_limit=runs_limit,
        runs_made=0,
        state=State.ACTIVE.value,
        created_at=now or utcnow(),
    )
    session.add(order)
    session.flush()
    payee = find_by_account(session, payee_account_id)
    if payee is not None:
        _sms(session, payee, texts.payee_started(payee, payer, order))
        _sms(session, payer, texts.payer_started(payer, payee, order, fee(kind, amount)))
    return order


def total(
    frequency: str, first: date, amount: int, *, ends_on: date | None = None, runs_limit: int | None = None
) -> int:
    """What an order will pay in all (minor units, fees apart): ``amount`` times its runs, the
    number given or the dates of the schedule from ``first`` to ``ends_on``. What the SIM-swap
    gate weighs at set-up: a payment under the threshold repeated for months is a large sum."""
    if runs_limit is not None:
        return amount * runs_limit
    runs, day = 0, first
    while ends_on is not None and day <= ends_on and runs < MAX_RUNS:
        runs, day = runs + 1, following(frequency, first, day)
    return amount * max(runs, 1)


def room_for_another(session, payer: User, now: datetime | None = None) -> bool:
    return no_room(session, payer, now) is None


def no_room(session, payer: User, now: datetime | None = None) -> str | None:
    """Why ``payer`` may not set up one more order: "running" (``STANDING_ORDERS_PER_PAYER``
    running), "today" (that many set up today, cancelled or not: each set-up and each cancel
    SMSes the payee, so setting up and cancelling in a loop would spam a stranger for free);
    None when they may."""
    most = current_app.config["STANDING_ORDERS_PER_PAYER"]
    if len(mine(session, payer)) >= most:
        return "running"
    today = session.execute(
        select(func.count()).where(
            StandingOrder.payer_account_id == payer.account_id,
            StandingOrder.created_at >= midnight(local_date(now)),
        )
    ).scalar_one()
    return "today" if today >= most else None


def mine(session, payer: User) -> list[StandingOrder]:
    """The payer's orders still running (active or paused), oldest first."""
    live = (State.ACTIVE.value, State.PAUSED.value)
    return list(
        session.execute(
            select(StandingOrder)
            .where(StandingOrder.payer_account_id == payer.account_id, StandingOrder.state.in_(live))
            .order_by(StandingOrder.created_at, StandingOrder.id)
        ).scalars()
    )


def owned(session, payer: User, order_id: str) -> StandingOrder | None:
    order = session.get(StandingOrder, order_id, populate_existing=True)
    return order if order is not None and order.payer_account_id == payer.account_id else None


def _move(session, order_id: str, from_states, to_state: State, *conditions, **values) -> bool:
    """Compare-and-set: True for the one caller that moved the order."""
    result = session.execute(
        update(StandingOrder)
        .where(StandingOrder.id == order_id, StandingOrder.state.in_(from_states), *conditions)
        .values(state=to_state.value, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def pause(session, payer: User, order_id: str) -> bool:
    order = owned(session, payer, order_id)
    return order is not None and _move(session, order.id, (State.ACTIVE.value,), State.PAUSED)


def resume(session, payer: User, order_id: str, now: datetime | None = None) -> bool:
    """Paused -> active. Its next run is the schedule's first date from today on (dates that
    passed while it was paused are not paid); past its end date it finishes instead."""
    order = owned(session, payer, order_id)
    if order is None or order.state != State.PAUSED or order.next_date is None:
        return False
    next_date = on_or_after(order.frequency, order.first_date, max(order.next_date, local_date(now)))
    if order.ends_on is not None and next_date > order.ends_on:
        return _end(session, order, (State.PAUSED.value,), cancelled=False, now=now)
    return _move(
        session,
        order.id,
        (State.PAUSED.value,),
        State.ACTIVE,
        StandingOrder.next_date == order.next_date,
        next_date=next_date,
    )


def cancel(session, payer: User, order_id: str, now: datetime | None = None) -> bool:
    """The payer cancelled it (with the PIN): no more runs; the payee is told."""
    order = owned(session, payer, order_id)
    live = (State.ACTIVE.value, State.PAUSED.value)
    return order is not None and _end(session, order, live, cancelled=True, now=now)


def _end(session, order: StandingOrder, from_states, *, cancelled: bool, now=None) -> bool:
    to = State.CANCELLED if cancelled else State.FINISHED
    if not _move(session, order.id, from_states, to, next_date=None, ended_at=now or utcnow()):
        return False
    session.refresh(order)
    # A finished order's last date: its last run's, else (it ended while paused) its end date.
    _tell_ended(session, order, cancelled=cancelled, last=_last_run_date(session, order) or order.ends_on)
    return True


def _last_run_date(session, order: StandingOrder) -> date | None:
    return session.execute(
        select(StandingOrderRun.run_date)
        .where(StandingOrderRun.order_id == order.id)
        .order_by(StandingOrderRun.run_date.desc())
        .limit(1)
    ).scalar_one_or_none()


def _tell_ended(
    session, order: StandingOrder, *, cancelled: bool, last: date | None, payer: bool = True
) -> None:
    """The payee hears the order to them has ended (cancelled, or finished after its last run,
    ``last``); for a finished one the payer too, unless ``payer`` is False."""
    payer_user = find_by_account(session, order.payer_account_id)
    payee = find_by_account(session, order.payee_account_id)
    if payer_user is None or payee is None:
        return
    if cancelled or last is None:
        _sms(session, payee, texts.payee_ended(payee, payer_user, order, cancelled=True))
        return
    _sms(session, payee, texts.payee_ended(payee, payer_user, order, cancelled=False, last_date=last))
    if payer:
        _sms(session, payer_user, texts.payer_finished(payer_user, payee, order, last))


def _sms(session, user: User, body: str, transfer_request_id: str | None = None) -> None:
    from ..sms.outbox import add_sms

    add_sms(session, phone=user.phone, body=body, transfer_request_id=transfer_request_id)


# -- the scheduler ----------------------------------------------------------------------------


def run_due(session, now: datetime | None = None, limit: int = 500) -> list[TransferRequest]:
    """Record the transfer of every run due at ``now`` (naive UTC): each active order's runs
    dated today or before (one per date), and the second attempts whose ``retry_at`` has come.
    Safe twice and side by side (see the module's docstring). An order whose kind the tariff
    in force does not price waits, unmoved (``_price``), and stops no other. The caller
    commits; the commit rings the workers. Returns the transfer requests recorded (or found
    recorded)."""
    now = now or utcnow()
    today = local_date(now)
    recorded: list[TransferRequest] = []
    due = list(
        session.execute(
            select(StandingOrder)
            .where(
                StandingOrder.state == State.ACTIVE.value,
                StandingOrder.next_date <= today,
                StandingOrder.kind.in_(_priced_kinds()),  # the waiting never fill a batch
            )
            .order_by(StandingOrder.next_date, StandingOrder.id)
            .limit(limit)
        ).scalars()
    )
    for order in due:
        while order.state == State.ACTIVE and order.next_date is not None and order.next_date <= today:
            if len(recorded) >= limit or not _make_run(session, order, now, recorded):
                break
    retries = list(
        session.execute(
            select(StandingOrderRun)
            .where(StandingOrderRun.state == RunState.RETRY.value, StandingOrderRun.retry_at <= now)
            .order_by(StandingOrderRun.retry_at, StandingOrderRun.id)
            .limit(limit)
        ).scalars()
    )
    for run in retries:
        _retry(session, run, now, recorded)
    session.flush()
    return recorded


def _make_run(session, order: StandingOrder, now: datetime, recorded: list) -> bool:
    """Move ``order`` past its next date and record that date's run. False when another
    scheduler moved it first (nothing recorded here)."""
    day = order.next_date
    price = _price(order)
    if price is None:
        return False  # waits, unmoved, until the operator prices its kind
    after = following(order.frequency, order.first_date, day)
    made = order.runs_made + 1
    last = (order.runs_limit is not None and made >= order.runs_limit) or (
        order.ends_on is not None and after > order.ends_on
    )
    moved = _move(
        session,
        order.id,
        (State.ACTIVE.value,),
        State.FINISHED if last else State.ACTIVE,
        StandingOrder.next_date == day,
        next_date=None if last else after,
        runs_made=made,
        **({"ended_at": now} if last else {}),
    )
    if not moved:
        return False
    session.refresh(order)
    run = StandingOrderRun(
        id=f"{order.id}.{day:%Y%m%d}", order_id=order.id, run_date=day, attempt=1, tried_at=now
    )
    payer = find_by_account(session, order.payer_account_id)
    if payer is None or is_operator_locked(payer):
        # An account Tuma has locked pays nothing (customer care is talking to its holder):
        # the run is skipped, with no transfer and no SMS. A PIN locked by wrong tries does not
        # stop the orders the payer set up with their PIN.
        run.state, run.result, run.settled_at = RunState.SKIPPED.value, "payer_locked", now
        session.add(run)
        session.flush()
        _ended_with(session, run)
    else:
        run.state, run.transfer_request_id = RunState.PAYING.value, run_request_id(run.id, 1)
        session.add(run)
        session.flush()
        recorded.append(_record(session, order, run, price))
    return True


def _ended_with(session, run: StandingOrderRun, *, payer_told: bool = False) -> None:
    """``run`` is settled (paid or skipped): when it was its finished order's last, both sides
    hear that the order has ended (the payer not again when the skip's SMS said it was the last)."""
    order = session.get(StandingOrder, run.order_id, populate_existing=True)
    if order.state != State.FINISHED or _last_run_date(session, order) != run.run_date:
        return
    _tell_ended(session, order, cancelled=False, last=run.run_date, payer=not payer_told)


def _priced_kinds() -> list[str]:
    """The kinds of ``KINDS`` the tariff in force prices (an entry for the kind)."""
    from ..tariffs import in_force

    tariff = in_force()
    priced = []
    for kind in sorted(KINDS):
        try:
            tariff.fee(kind, 0)
        except ValueError:
            continue
        priced.append(kind)
    return priced


def _price(order: StandingOrder) -> tuple[int, int, int | None] | None:
    """(fee, payee's fee, tariff version) of a run of ``order`` under the tariff in force; None
    when that tariff has no entry for its kind (an operator's document without it): the run
    waits, logged, and the scheduler's other orders and the maintenance job go on."""
    from ..tariffs import in_force

    tariff = in_force()
    try:
        return tariff.fee(order.kind, order.amount), tariff.payee_fee(order.kind, order.amount), tariff.id
    except ValueError:
        log.warning("standing order %s waits: the tariff in force has no price for %s", order.id, order.kind)
        return None


def _record(session, order: StandingOrder, run: StandingOrderRun, price) -> TransferRequest:
    """The run's attempt as an ordinary request of the order's kind, at ``price`` (``_price``:
    the tariff in force, a merchant's own fee as well), under the attempt's derived id."""
    fee, payee_fee, tariff_version_id = price
    return record_request(
        session,
        request_id=run.transfer_request_id,
        kind=order.kind,
        debit_account_id=order.payer_account_id,
        credit_account_id=order.payee_account_id,
        amount=order.amount,
        fee=fee,
        payee_fee=payee_fee,
        reference=order.reference,
        tariff_version_id=tariff_version_id,
    )


def _retry(session, run: StandingOrderRun, now: datetime, recorded: list) -> None:
    """The second and last attempt of a refused run, unless the payer paused or cancelled the
    order meanwhile (then the run is skipped: they stopped it themselves), or the day of the
    refused attempt is over (skipped, and the payer told)."""
    order = session.get(StandingOrder, run.order_id)
    payer = find_by_account(session, order.payer_account_id)
    going = order.state in (State.ACTIVE.value, State.FINISHED.value)
    if not going or payer is None or is_operator_locked(payer):
        if _move_run(session, run, RunState.RETRY, RunState.SKIPPED, settled_at=now):
            _ended_with(session, run)
        return
    if local_date(now) > local_date(run.tried_at):
        # The retry was promised for the day of the refused attempt; a scheduler that was down
        # until the next day skips it (and says so), rather than pay it beside that day's run.
        if _move_run(session, run, RunState.RETRY, RunState.SKIPPED, settled_at=now):
            _tell_skipped(session, order, run, payer)
        return
    price = _price(order)
    if price is None:
        return  # stays to retry once the kind is priced (skipped if that day is over by then)
    tid = run_request_id(run.id, run.attempt + 1)
    if _move_run(
        session,
        run,
        RunState.RETRY,
        RunState.PAYING,
        StandingOrderRun.attempt == run.attempt,
        attempt=run.attempt + 1,
        transfer_request_id=tid,
        tried_at=now,
        retry_at=None,
    ):
        session.refresh(run)
        recorded.append(_record(session, order, run, price))


def _move_run(
    session, run: StandingOrderRun, from_state: RunState, to_state: RunState, *conditions, **values
):
    result = session.execute(
        update(StandingOrderRun)
        .where(StandingOrderRun.id == run.id, StandingOrderRun.state == from_state.value, *conditions)
        .values(state=to_state.value, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def retry_at(tried_at: datetime) -> datetime | None:
    """When a run refused on its attempt at ``tried_at`` is tried once more: after
    ``STANDING_ORDER_RETRY_SECONDS``, but never past the end of that day (a minute before
    midnight at the latest); None when no time is left that day."""
    end = midnight(local_date(tried_at) + timedelta(days=1)) - timedelta(minutes=1)
    at = min(tried_at + timedelta(seconds=current_app.config["STANDING_ORDER_RETRY_SECONDS"]), end)
    return at if at > tried_at else None


# -- the worker's side ------------------------------------------------------------------------


# A run's result when the payer paused or cancelled its order after it was recorded.
STOPPED = "order_stopped"


def _runs_among(session, requests, *conditions) -> set[str]:
    """The ids of ``requests`` that are standing-order runs (meeting ``conditions`` on the run
    and its order). No query unless an id has a run's shape."""
    ids = [r.id for r in requests if _RUN_REQUEST.fullmatch(r.id)]
    if not ids:
        return set()
    return set(
        session.execute(
            select(StandingOrderRun.transfer_request_id)
            .join(StandingOrder, StandingOrder.id == StandingOrderRun.order_id)
            .where(among(session, StandingOrderRun.transfer_request_id, ids), *conditions)
        ).scalars()
    )


def runs_any(transfer_request_ids) -> bool:
    """Whether any of these transfer requests is a standing order's run (by its id's shape):
    only then has a batch given ``settle`` something to do (the maintenance job settles
    whatever a batch left)."""
    return any(_RUN_REQUEST.fullmatch(rid) for rid in transfer_request_ids)


def stopped_runs(session, requests) -> set[str]:
    """The ids of ``requests`` (about to be executed) that are runs of an order its payer has
    paused or cancelled since the run was recorded (a backlog at midnight; the cancel screen
    says no more payments will be made): the worker refuses them (``STOPPED``), and ``settle``
    skips them without a word."""
    stopped = (State.PAUSED.value, State.CANCELLED.value)
    return _runs_among(session, requests, StandingOrder.state.in_(stopped))


# A run of an order set up at least this long ago is not held by the velocity rules.
VELOCITY_EXEMPT_AFTER = timedelta(days=1)


def velocity_exempt(session, requests, now: datetime | None = None) -> set[str]:
    """The ids of ``requests`` that are runs of an order set up a day ago or more: the velocity
    rules do not hold them for review (``limits.check_batch``; the limits still apply). Its
    payer set the payee and amount with the PIN, and up to STANDING_ORDERS_PER_PAYER orders may
    fall due at one midnight. Orders set up within the day are held like any payment: whoever
    has the phone and PIN cannot pass the rule by paying through same-day orders. No query
    unless an id has a run's shape."""
    since = (now or utcnow()) - VELOCITY_EXEMPT_AFTER
    return _runs_among(session, requests, StandingOrder.created_at <= since)


def quiet_refusals(session, requests) -> set[str]:
    """The ids of ``requests`` (refused ones) that are standing-order runs: their payer hears
    of the refusal from ``settle`` (one SMS saying what happens next), so the worker writes no
    refusal receipt of its own. No query unless an id has a run's shape."""
    return _runs_among(session, requests)


def settle(session, now: datetime | None = None, limit: int = 500) -> int:
    """Runs whose transfer the worker has finished: posted -> ``paid`` (the payer and payee had
    their ordinary receipts); refused -> ``retry`` later that day with an SMS to the payer, or,
    on the second attempt (or with no time left that day), ``skipped`` with an SMS. A refusal
    an operator made after a review was told by its own SMS: skipped, nothing more. Safe side by
    side: each move is a compare-and-set."""
    now = now or utcnow()
    rows = session.execute(
        select(StandingOrderRun, TransferRequest)
        .join(TransferRequest, TransferRequest.id == StandingOrderRun.transfer_request_id)
        .where(
            StandingOrderRun.state == RunState.PAYING.value,
            TransferRequest.status.in_((RequestStatus.ACCEPTED.value, RequestStatus.REJECTED.value)),
        )
        .order_by(StandingOrderRun.tried_at, StandingOrderRun.id)
        .limit(limit)
    ).all()
    done = 0
    for run, request in rows:
        same = (StandingOrderRun.transfer_request_id == request.id,)
        if request.status == RequestStatus.ACCEPTED.value:
            if _move_run(session, run, RunState.PAYING, RunState.PAID, *same, settled_at=now):
                done += 1
                _ended_with(session, run)
            continue
        # One more try on the day of the first, never once that day is over (a backlog).
        again = retry_at(run.tried_at) if run.attempt == 1 else None
        if again is not None and local_date(now) > local_date(run.tried_at):
            again = None
        from ..limits import Result

        if request.result in (Result.REVIEW_REFUSED, STOPPED):  # told already, or the payer's doing
            if _move_run(session, run, RunState.PAYING, RunState.SKIPPED, *same, settled_at=now):
                done += 1
                _ended_with(session, run)
            continue
        if again is not None:
            moved = _move_run(
                session, run, RunState.PAYING, RunState.RETRY, *same, retry_at=again, result=request.result
            )
        else:
            moved = _move_run(
                session, run, RunState.PAYING, RunState.SKIPPED, *same, result=request.result, settled_at=now
            )
        if not moved:
            continue
        done += 1
        order = session.get(StandingOrder, run.order_id, populate_existing=True)
        _tell_skipped(session, order, run, find_by_account(session, order.payer_account_id), again)
    session.flush()
    return done


def _tell_skipped(session, order: StandingOrder, run: StandingOrderRun, payer, again=None) -> None:
    """The payer hears that ``run`` (its current attempt refused) is tried again at ``again``,
    or, when None, skipped: then, if it was its order's last, both sides hear it has ended."""
    request = session.get(TransferRequest, run.transfer_request_id)
    if payer is not None:
        payee = find_by_account(session, order.payee_account_id)
        body = texts.not_paid(payer, payee, order, run, request, retry_at=again)
        _sms(session, payer, body, request.id)
    if again is None:  # skipped: the payer's SMS said whether it was the last
        _ended_with(session, run, payer_told=True)
