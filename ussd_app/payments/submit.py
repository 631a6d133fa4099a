"""The web side of a transfer: record the request under its minted id; its commit announces it.

The web process never posts to the ledger. It validates, records and commits; the commit
rings the workers' doorbell (``queues.ring_after_commit``), so a worker never looks for a
request that is not committed.
"""

import functools
import logging
import uuid

from sqlalchemy import BigInteger, String, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import utcnow
from ..ledger import Account
from ..queues import TRANSFERS_DOORBELL, Bell, ring, ring_after_commit
from .kinds import DEBITS_PAYER_KINDS
from .models import HoldState, RequestStatus, TransferRequest, transaction_code

log = logging.getLogger(__name__)

DOORBELL_KEY = TRANSFERS_DOORBELL  # the job deletes it before it reads (worker/jobs.py)


class ConflictingRequest(ValueError):
    """The id was used before for a different order."""


def mint_request_id() -> str:
    return uuid.uuid4().hex


def _columns(
    *,
    request_id: str,
    kind: str,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    fee: int = 0,
    commission: int = 0,
    payee_fee: int = 0,
    reference: str | None = None,
    tariff_version_id: int | None = None,
    pending_request_id: str | None = None,
    hold_seconds: int | None = None,
    payee_named: bool = True,
) -> dict:
    """An order's columns as a new request's row has them (queued, not tried): the keywords
    ``record_request`` and ``record_request_row`` take."""
    return dict(
        id=request_id,
        code=transaction_code(request_id),
        kind=kind,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        fee=fee,
        commission=commission,
        payee_fee=payee_fee,
        reference=reference,
        tariff_version_id=tariff_version_id,
        pending_request_id=pending_request_id,
        hold_state=HoldState.PENDING.value if hold_seconds is not None else None,
        hold_seconds=hold_seconds,
        payee_named=payee_named,
        status=RequestStatus.QUEUED.value,
        attempts=0,
    )


def record_request(session, **order) -> TransferRequest:
    """Add the request (``order``: ``_columns``'s keywords), or return the one already recorded
    under this id. Caller commits; the commit announces a new request to the workers (unless it
    is executed in the same transaction: ``execute_requests`` takes the note back)."""
    wanted = TransferRequest(**_columns(**order))
    request_id = wanted.id
    existing = session.get(TransferRequest, request_id)
    if existing is not None:
        if not existing.same_order(wanted):
            raise ConflictingRequest(request_id)
        return existing
    session.add(wanted)
    session.flush()
    ring_after_commit(session, Bell.TRANSFERS, request_id)
    return wanted


_row_listeners: list = []


@functools.cache
def _insert(dialect: str):
    """The insert of ``record_request_row``, one per dialect: a row whose id is taken already is
    not written (ON CONFLICT on the id alone: a clash of codes still fails), and the id comes
    back only when this statement wrote it (SQLite >= 3.35 and PostgreSQL alike)."""
    table = TransferRequest.__table__
    made = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return made.on_conflict_do_nothing(index_elements=[table.c.id]).returning(table.c.id)


def on_row_insert(listener) -> None:
    """Call ``listener(session, request_id, kind, code)`` for each request ``record_request_row``
    writes, in its transaction: what the ORM's insert events are told of the others
    (``ops/tracing``: the log line and the trace id)."""
    if listener not in _row_listeners:
        _row_listeners.append(listener)


def record_request_row(session, **order) -> bool:
    """``record_request`` in one statement on the session's transaction, no object made (a USSD
    PIN hop's: the ORM's look-up, object and flush were a third of the hop beyond argon2): True
    when this call recorded the request, False when it was recorded before with the same order
    (a replayed hop: nothing new, nothing rung); ConflictingRequest when with another. The
    same columns as ``record_request`` writes (``_columns``). Its commit announces it; its
    listeners (``on_row_insert``) hear of it as the ORM's insert events hear of the others."""
    values = _values(order)
    connection = session.connection()
    written = connection.execute(_insert(connection.dialect.name), values).first() is not None
    return _recorded(session, values, written)


def _values(order: dict) -> dict:
    return _columns(**order) | dict(result=None, created_at=utcnow(), executed_at=None)


def _recorded(session, values: dict, written: bool) -> bool:
    """What ``record_request_row`` answers once its insert ran: ``written``, this statement
    wrote the row (its listeners told, its doorbell noted); else the row under the id is the
    same order (False) or another (ConflictingRequest)."""
    request_id = values["id"]
    if not written:
        existing = session.get(TransferRequest, request_id)
        if existing is None or not existing.same_order(TransferRequest(**values)):
            raise ConflictingRequest(request_id)
        return False
    for listener in _row_listeners:
        listener(session, request_id, values["kind"], values["code"])
    ring_after_commit(session, Bell.TRANSFERS, request_id)
    return True


@functools.cache
def spendable_statement():
    """What an account may spend now, by its id (``payer``): its available balance
    (``Account.available``) less what its requests recorded and not yet taken by a worker
    (queued) will debit, amount and fee, the request ``id`` itself left out (a replay of it
    finds it recorded). Only kinds that take from their debit account (``DEBITS_PAYER_KINDS``):
    a queued post of a hold is in debits_pending already, and a void's debit account is the
    hold's payee, who loses nothing (counted, they told a buyer who confirmed delivery, or a
    sender whose reversal was refused, "Not enough money" for what they have). Without the
    queued requests, two sends typed one after the other, each covered by the balance but not
    both, were both told "Sending" and the worker refused the second by SMS.
    One statement, so the balance and the queue are read in one snapshot: a worker's post
    (the balance down, the request no longer queued) is seen whole or not at all."""
    t, r = Account.__table__, TransferRequest.__table__
    queued = (
        select(cast(func.coalesce(func.sum(r.c.amount + r.c.fee), 0), BigInteger))
        .where(
            r.c.debit_account_id == bindparam("payer"),
            r.c.executed_at.is_(None),  # the payer's index (debit_account_id, executed_at)
            r.c.status == RequestStatus.QUEUED.value,
            r.c.kind.in_(sorted(DEBITS_PAYER_KINDS)),
            r.c.id != bindparam("id", type_=r.c.id.type),
        )
        .scalar_subquery()
    )
    spendable = (t.c.credits_posted - t.c.debits_posted - t.c.debits_pending - queued).label("spendable")
    return select(spendable).where(t.c.id == bindparam("payer"))


def spendable(session, payer_account_id: int, request_id: str = "") -> int:
    """``spendable_statement`` for ``payer_account_id`` on the session's transaction, the request
    ``request_id`` (a replay of it) left out."""
    params = {"payer": payer_account_id, "id": request_id}
    return session.connection().execute(spendable_statement(), params).scalar_one()


@functools.cache
def _covered_insert():
    """PostgreSQL: ``_insert``'s row written only when the payer's spendable balance covers
    ``needed``, and that balance, in one statement (a CTE: one snapshot, taken when the
    statement starts). Answers one row: (spendable, the id when this statement wrote it)."""
    table = TransferRequest.__table__
    balance = spendable_statement().cte("spendable")
    # Every value cast to its column's type: an INSERT ... SELECT does not type its parameters
    # by the columns they go to (a NULL would be text). A string to VARCHAR, not VARCHAR(n),
    # which would cut a longer value short without a word: the column's own assignment
    # refuses it, as the plain insert's does.
    kinds = [String() if isinstance(c.type, String) else c.type for c in table.c]
    values = [cast(bindparam(c.name, type_=c.type), kind) for c, kind in zip(table.c, kinds, strict=True)]
    row = select(*values).where(balance.c.spendable >= bindparam("needed"))
    written = (
        postgresql.insert(table)
        .from_select([c.name for c in table.c], row)
        .on_conflict_do_nothing(index_elements=[table.c.id])
        .returning(table.c.id)
        .cte("written")
    )
    return select(balance.c.spendable, select(written.c.id).scalar_subquery())


def record_covered_row(session, payer_account_id: int, needed: int, **order) -> tuple[bool | None, int]:
    """``record_request_row``, only when ``payer_account_id`` may spend ``needed`` now: (None,
    spendable) when it may not (nothing written), else (``record_request_row``'s answer,
    spendable). On PostgreSQL the balance is read and the row written by one statement (one
    round trip, not two), in one snapshot taken when it starts: run after the caller's row
    lock (READ COMMITTED: a new statement, a new snapshot), it never reads a balance from
    before another hop's commit. On SQLite, the balance's read and then the insert (in
    process; the transaction began IMMEDIATE, so nothing writes between them)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        left = spendable(session, payer_account_id, order["request_id"])
        if left < needed:
            return None, left
        return record_request_row(session, **order), left
    values = _values(order)
    left, written = connection.execute(
        _covered_insert(), {**values, "payer": payer_account_id, "needed": needed}
    ).one()
    if written is None and left < needed:
        return None, left
    return _recorded(session, values, written is not None), left


def announce(request_id: str | None = None, *, force: bool = False) -> bool:
    """Make sure a worker job will look at the queued requests soon. True if one was enqueued.

    For committed work only, and not for the web side: a commit that recorded a request rings
    by itself. At most one announcement waits in the queue at a time (the doorbell key); the
    job deletes the key before it reads, so a request committed after that read rings again.
    """
    return ring(Bell.TRANSFERS, request_id, force=force)
