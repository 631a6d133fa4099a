"""The worker side of a transfer: execute queued requests in batches, one transaction each.

One batch = up to TRANSFER_BATCH_SIZE requests, their ledger transfers, their new statuses and
their outbox rows, committed together. On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets several
workers take disjoint batches; the ledger then locks accounts in one fixed order (wallets,
then house accounts, each by id; ``ledger.engine.Locked``), so batches that share a hot account
queue behind each other instead of deadlocking, and fee revenue, which every batch only
credits, is locked by the batch's last statement only.
"""

import dataclasses
import logging
from datetime import datetime

from sqlalchemy import inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from .. import limits
from ..clock import utcnow
from ..database import is_postgres, update_rows
from ..events import emit
from ..ledger import LateOverflow, TransferResult, create_transfers, lock_accounts
from ..queues import Bell, cancel_ring, ring_after_commit
from ..sms import limit_receipts, outbox, receipts
from . import kinds, refunds, standing_orders
from .legs import HouseAccounts, legs_for
from .models import HoldState, RequestKind, RequestStatus, TransferRequest

log = logging.getLogger(__name__)

RETRIES = 5


# A queued request as a batch reads it: the row's columns under the mapped names, and nothing
# of the ORM's (no identity map entry, no instrumented attributes, no state to flush). A batch
# of 500 only reads its requests and writes their outcome in one statement (``update_rows``),
# so the ORM's per-object bookkeeping was the largest Python cost left per transfer. Every
# consumer (limits, refunds, standing orders, receipts, events, legs) reads attributes only.
_ATTRIBUTES = inspect(TransferRequest).column_attrs  # every mapped column, under its attribute name
_TABLE = TransferRequest.__table__
QueuedRequest = dataclasses.make_dataclass(
    "QueuedRequest", [attribute.key for attribute in _ATTRIBUTES], slots=True, eq=False
)


def _take_queued(session, limit: int) -> list:
    """The oldest ``limit`` queued requests as ``QueuedRequest`` rows, locked (``FOR UPDATE
    SKIP LOCKED`` on PostgreSQL, so another worker takes the next ones)."""
    query = (
        select(*(attribute.columns[0] for attribute in _ATTRIBUTES))
        .where(_TABLE.c.status == RequestStatus.QUEUED.value)
        .order_by(_TABLE.c.created_at, _TABLE.c.id)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return [QueuedRequest(*row) for row in session.execute(query)]


def execute_requests(session, requests: list, *, late: bool = False) -> None:
    """Post ``requests`` through the ledger and write their outcome and SMS. No commit.

    ``requests``: ``TransferRequest`` objects (a flow executing its own request at once), or
    the ``QueuedRequest`` rows of a worker's batch; either is told its outcome (``_put``).

    The batch's accounts are locked and read once (``ledger.lock_accounts``); the holders
    are read once before those locks (``receipts.People``: names, languages, numbers), and
    their tiers and operators' locks again with what each payer sent today, in one statement
    under the locks (``People.read_spent``), for the limits, the ledger and the receipts alike.
    ``late`` (``execute_batch``, which runs the batch again without it on ``LateOverflow``):
    house accounts the batch only credits (e.g. fee revenue) take their postings in the last
    statement, locked from there to the commit only (``ledger.engine.Locked`` says why that is safe)."""
    house = HouseAccounts(session)
    legs = {request.id: legs_for(request, house) for request in requests}
    # The holders, before the locks: a user's row is no account's (the account locks are held
    # to the commit, and a second batch sharing an account waits for all of them).
    people = receipts.People(session, requests, spent=False)
    # Limits and velocity: checked under the locks the ledger holds, so that a batch racing
    # for the same payer reads this one's postings (ussd_app/limits.py).
    locked = lock_accounts(session, [s for chain in legs.values() for s in chain], late=late)
    checked_at = utcnow()
    # Today's spending, and the holders' tiers and operators' locks as committed now, after the
    # wait for the locks (an operator may have lowered a tier meanwhile): one statement.
    people.read_spent(session, checked_at, locked)
    # A run of a standing order set up a day ago or more is not held by the velocity rules: its
    # payer set payee and amount with the PIN, and 20 orders may fall due at one midnight.
    exempt = standing_orders.velocity_exempt(session, requests)
    refusals = limits.check_batch(
        session, requests, checked_at, velocity_exempt=exempt, people=people, locked=locked
    )
    # A standing order's run whose order the payer paused or cancelled after it was recorded.
    for request_id in standing_orders.stopped_runs(session, [r for r in requests if r.id not in refusals]):
        refusals[request_id] = limits.Refusal(result=standing_orders.STOPPED, limit=0, excess=0)
    # A payer without the money is refused for that, never for the payee's balance limit
    # (which would tell any payer how much the payee holds): the ledger says exceeds_credits.
    over_payees_limit = [
        r for r in requests if r.id in refusals and refusals[r.id].result == limits.Result.BALANCE
    ]
    for request_id in limits.cannot_cover(
        session, [r for r in over_payees_limit if refusals[r.id].fits is None], legs, locked
    ):
        del refusals[request_id]
    # Refunds: never more than their payment brought in, checked under the same locks.
    refusals.update(refunds.check_batch(session, [r for r in requests if r.id not in refusals]))
    # A hold that does not fit under its payee's balance limit is posted in part or voided,
    # never left unresolved: the rest goes back to the payer (limits.POSTS_WHAT_FITS).
    returned = {rid: refusals.pop(rid) for rid in list(refusals) if refusals[rid].fits is not None}
    held_amounts = {}
    for request in requests:
        if request.id in returned:
            held_amounts[request.id] = request.amount
            _put(request, "amount", returned[request.id].fits)
            legs[request.id] = legs_for(request, house)
    specs, spans = [], []
    for request in requests:
        start = len(specs)
        if request.id not in refusals:
            specs.extend(legs[request.id])
        spans.append((request, start, len(specs)))
    snapshots: dict[int, dict[int, int]] = {}
    results = create_transfers(session, specs, snapshots=snapshots, locked=locked) if specs else []
    now = utcnow()
    if limits.start_of_today(now) != limits.start_of_today(checked_at):
        # Local midnight passed while the batch ran: its requests are executed (and counted) on
        # the new day, so the receipts state what is left of that day, read before the statuses
        # change (the day's figure for the limits stays the conservative one they checked).
        people.restart_day(session, now)
    outcomes = []
    for request, start, end in spans:
        if request.id in refusals:  # refused by a limit or held for review: no transfers
            refusal = refusals[request.id]
            _set(request, refusal.status, refusal.result, now)
            outcomes.append((request, None, refusal, {}))
            continue
        chain = results[start:end]
        # A chain is written whole or not at all, and its legs' ids derive from the request's
        # (legs.py): a first leg that exists means this request was accepted before. The ledger
        # then answers exists, linked_event_failed, ... (any result but ok fails a chain, as in
        # TigerBeetle), and the request stays accepted, with no second set of receipts.
        if chain[0] == TransferResult.EXISTS or all(r == TransferResult.OK for r in chain):
            status, result = RequestStatus.ACCEPTED, TransferResult.OK
            if request.id in returned:
                _set(request, status.value, limits.Result.BALANCE_RETURNED, now)
                outcomes.append((request, chain, returned[request.id], snapshots.get(start, {})))
                continue
        else:
            if request.id in returned:  # refused by the ledger: its receipt names the whole hold
                _put(request, "amount", held_amounts[request.id])
            status = RequestStatus.REJECTED
            passive = (TransferResult.OK, TransferResult.LINKED_EVENT_FAILED)
            result = next((r for r in chain if r not in passive), chain[0])  # the leg that failed
        _set(request, status.value, result.value, now)
        outcomes.append((request, chain, result, snapshots.get(start, {})))
    update_rows(
        session,
        TransferRequest.__table__,
        "id",
        [
            {"id": r.id, "status": r.status, "result": r.result, "attempts": r.attempts, "executed_at": now}
            for r, _, _, _ in outcomes
        ],
    )
    _record_returns(session, [r for r, _, result, _ in outcomes if isinstance(result, limits.Refusal)])
    executed = []  # (request, events.POSTED | events.FAILED) for merchants' systems, once each
    # A standing order's refused run: its payer hears of it once, from the order's settle
    # (tried again later, or skipped), not also from a refusal receipt here.
    quiet = standing_orders.quiet_refusals(
        session, [r for r, _, _, _ in outcomes if r.status == RequestStatus.REJECTED.value]
    )
    with outbox.batched(session):  # the batch's receipts in one insert
        for request, chain, result, balances_after in outcomes:
            people.balances_after = balances_after
            if request.id in quiet:
                executed.append((request, emit.FAILED))
            elif chain is None:
                limit_receipts.write_refusal(session, request, result, people)
                if request.status == RequestStatus.REJECTED.value:  # not held for review
                    executed.append((request, emit.FAILED))
            elif isinstance(result, limits.Refusal):  # posted in part, or voided: see above
                limit_receipts.write_returned(session, request, result, held_amounts[request.id], people)
                executed.append((request, emit.POSTED))  # what reached the payee (none: no event)
            elif result == TransferResult.OK:
                if all(r == TransferResult.OK for r in chain):  # not a repeat: receipts once
                    receipts.write_posted(session, request, people)
                    executed.append((request, emit.POSTED))
            else:
                receipts.write_rejected(session, request, result, people)
                executed.append((request, emit.FAILED))
    # Events (payment received, payout posted, ...) in the same transaction: kinds.py says which.
    emit.for_requests(session, [(r, o) for r, o in executed if r.kind in kinds.EVENT_KINDS], people)
    session.flush()
    locked.apply_late(session)  # last: a late account's lock is held from here to the commit
    # Once committed: no worker needed for these (some were recorded in this transaction and
    # executed at once), and airtime holds now posted wait for the airtime job (queues.py).
    cancel_ring(session, Bell.TRANSFERS, [r.id for r in requests])
    if any(
        r.kind == RequestKind.AIRTIME.value and r.status == RequestStatus.ACCEPTED.value for r in requests
    ):
        ring_after_commit(session, Bell.AIRTIME)


def _record_returns(session, requests: list) -> None:
    """Holds posted in part keep the amount that reached the payee on their request (what its
    receipts, statements and code checks say); a hold voided because nothing fitted is
    marked voided, as the money went back."""
    if not requests:
        return
    update_rows(
        session, TransferRequest.__table__, "id", [{"id": r.id, "amount": r.amount} for r in requests]
    )
    voided = [r.pending_request_id for r in requests if r.amount == 0]
    if voided:
        session.execute(
            update(TransferRequest)
            .where(TransferRequest.id.in_(voided))
            .values(hold_state=HoldState.VOIDED.value)
            .execution_options(synchronize_session=False)
        )


def _set(request, status: str, result: str, now: datetime) -> None:
    """Written in one statement by the caller; the object is told without another flush."""
    for key, value in (
        ("status", status),
        ("result", result),
        ("attempts", request.attempts + 1),
        ("executed_at", now),
    ):
        _put(request, key, value)


def _put(request, key: str, value) -> None:
    """Set ``key`` on a ``QueuedRequest`` row, or on a ``TransferRequest`` as its committed
    value (the caller writes the row itself; the ORM must not flush it again)."""
    if isinstance(request, QueuedRequest):
        setattr(request, key, value)
    else:
        set_committed_value(request, key, value)


def execute_batch(session, limit: int) -> int:
    """Take up to ``limit`` queued requests and execute them in one committed transaction;
    how many were executed (``execute_queued`` says which)."""
    return len(execute_queued(session, limit))


def execute_queued(session, limit: int) -> list:
    """Take up to ``limit`` queued requests and execute them in one committed transaction.

    Returns the requests executed (``QueuedRequest`` rows, as they were written). Retries the
    whole batch when the database reports a conflict (a unique index won a race, a deadlock, a
    serialization failure): the retry re-reads everything, so the loser sees the winner's rows.
    """
    late = True
    for attempt in range(1, RETRIES + 1):
        try:
            requests = _take_queued(session, limit)
            if requests:
                execute_requests(session, requests, late=late)
            session.commit()
            return requests
        except LateOverflow:
            # A house account near the largest balance: run the batch again with it locked
            # from the start, so the ledger answers for it as for any account.
            session.rollback()
            late = False
            log.warning("batch retried without late accounts (attempt %d)", attempt)
        except (IntegrityError, DBAPIError) as exc:
            session.rollback()
            if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError) and not is_conflict(exc):
                raise
            log.warning("batch conflict, retrying (attempt %d): %s", attempt, type(exc.orig).__name__)
    raise RuntimeError("transfer batch kept conflicting; left queued for the next job")


def is_conflict(exc: DBAPIError) -> bool:
    """A failure that trying the whole transaction again can cure: a serialization failure,
    a deadlock, a lock not available, SQLite's busy database."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in {"40001", "40P01", "55P03"} or "database is locked" in str(exc.orig)
