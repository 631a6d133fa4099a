"""The read model: the counts, sums and depths that the back office (``admin/pages/``),
``/metrics`` (``ops/metrics.py``) and ``flask ledger check`` (``cli.py``) read from the
database and Redis, each question answered here once. Nothing here writes.

What only the ledger can answer (the trust balance, e-money in circulation, the holds still
open) comes from ``ledger/figures.py``, which the ledger's invariants read too: the ledger
imports nothing above it. A page's own lists (a search, one transfer's trail) stay with the
page.
"""

from datetime import UTC, datetime

from sqlalchemy import func, select, text

from .database import is_postgres
from .ledger import Account, AccountKind, Transfer, TransferFlags, house_account
from .ledger.figures import e_money, unresolved_holds
from .payments.models import RequestStatus, TransferRequest, TrustDeposit
from .queues import ALL_QUEUES, get_queue
from .sms.outbox import OutboxMessage
from .users import holders

__all__ = [
    "account_labels",
    "fee_account_by_hour",
    "open_holds_by_code",
    "posted_by_hour_and_kind",
    "queue_depths",
    "sms_by_status",
    "transfer_requests_by_state",
    "trust_deposits_total",
    "trust_figures",
]

# -- transfer requests ---------------------------------------------------------------------


def transfer_requests_by_state(session) -> list[tuple[str, str, str | None, int]]:
    """(kind, status, result, how many) over every transfer request."""
    return [
        tuple(row)
        for row in session.execute(
            select(
                TransferRequest.kind, TransferRequest.status, TransferRequest.result, func.count()
            ).group_by(TransferRequest.kind, TransferRequest.status, TransferRequest.result)
        )
    ]


def _hour_bucket(session, column):
    if is_postgres(session):
        return func.to_char(func.date_trunc("hour", column), text("'YYYY-MM-DD HH24:00'"))
    return func.strftime("%Y-%m-%d %H:00", column)


def posted_by_hour_and_kind(session, since: datetime) -> list[tuple[str, str, int, int, int]]:
    """(hour 'YYYY-MM-DD HH:00' UTC, kind, how many, amount, fees) of the transfer requests
    posted that were made since ``since``."""
    bucket = _hour_bucket(session, TransferRequest.created_at)
    return session.execute(
        select(
            bucket,
            TransferRequest.kind,
            func.count(),
            func.coalesce(func.sum(TransferRequest.amount), 0),
            func.coalesce(func.sum(TransferRequest.fee), 0),
        )
        .where(TransferRequest.created_at >= since, TransferRequest.status == RequestStatus.ACCEPTED.value)
        .group_by(bucket, TransferRequest.kind)
    ).all()


# -- the ledger ----------------------------------------------------------------------------


def open_holds_by_code(session) -> list[tuple[str, int, int]]:
    """Escrow held right now: (flow code, holds, amount) over pending transfers not resolved."""
    return [
        (code, count, int(amount))
        for code, count, amount in session.execute(
            unresolved_holds(Transfer.code, func.count(), func.coalesce(func.sum(Transfer.amount), 0))
            .group_by(Transfer.code)
            .order_by(Transfer.code)
        )
    ]


def held_for_review(session) -> tuple[int, int]:
    """Transfers a velocity rule holds for an operator's decision: (how many, their amount)."""
    count, amount = session.execute(
        select(func.count(), func.coalesce(func.sum(TransferRequest.amount), 0)).where(
            TransferRequest.status == RequestStatus.REVIEW.value
        )
    ).one()
    return int(count), int(amount)


HOUR_US = 3_600 * 1_000_000


def fee_account_by_hour(session, since: datetime) -> dict[int, int]:
    """{hour since the epoch (UTC): what the fee account gained in it} over the ledger's posted
    transfers since ``since`` (naive UTC): payers' fees and merchants' fees in, agents'
    commissions out, so the hours add up to what its balance moved. Read from the ledger, not
    the requests: a request's ``fee`` is the payer's alone (a merchant's fee is ``payee_fee``,
    charged on a protected purchase's post, and a withdrawal's commission leaves it)."""
    fees = house_account(session, AccountKind.FEES).id
    start = int(since.replace(tzinfo=UTC).timestamp() * 1_000_000)
    hour = Transfer.created_at // HOUR_US
    posted = Transfer.flags.op("&")(int(TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)) == 0
    gained: dict[int, int] = {}
    for column, sign in ((Transfer.credit_account_id, 1), (Transfer.debit_account_id, -1)):
        rows = session.execute(
            select(hour, func.coalesce(func.sum(Transfer.amount), 0))
            .where(column == fees, Transfer.created_at >= start, posted)
            .group_by(hour)
        )
        for h, amount in rows:
            gained[int(h)] = gained.get(int(h), 0) + sign * int(amount)
    return gained


def trust_deposits_total(session) -> int:
    """Σ the trust bank deposits on record (each issued the same e-float)."""
    return int(session.execute(select(func.coalesce(func.sum(TrustDeposit.amount), 0))).scalar_one())


def trust_figures(session) -> dict:
    """The trust balance, e-money in circulation, the deposits on record, and by account kind
    (trust account aside): (kind, accounts, balance, held by their pending debits)."""
    trust_balance, circulation = e_money(session)
    by_kind = session.execute(
        select(
            Account.kind,
            func.count(),
            func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0),
            func.coalesce(func.sum(Account.debits_pending), 0),
        )
        .where(Account.kind != AccountKind.TRUST.value)
        .group_by(Account.kind)
        .order_by(Account.kind)
    ).all()
    return {
        "trust": trust_balance,
        "circulation": circulation,
        "deposits": trust_deposits_total(session),
        "by_kind": [(k, n, int(b), int(h)) for k, n, b, h in by_kind],
    }


def account_labels(session, named_ids, others=()) -> dict[int, str]:
    """account id -> 'Name +2547...' for the holders of ``named_ids``, and '[kind]' for every
    other account among ``named_ids`` and ``others`` (house accounts, wallets not named)."""
    named = set(named_ids)
    ids = named | set(others)
    if not ids:
        return {}
    labels = {account_id: f"{u.name} {u.phone}" for account_id, u in holders(session, named).items()}
    for account in session.execute(select(Account).where(Account.id.in_(ids))).scalars():
        labels.setdefault(account.id, f"[{account.kind}]")
    return labels


# -- SMS and queues ------------------------------------------------------------------------


def sms_by_status(session, since: datetime | None = None) -> dict[str, int]:
    """{status: messages} in the outbox, or among those written since ``since``."""
    query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    if since is not None:
        query = query.where(OutboxMessage.created_at >= since)
    return dict(session.execute(query).all())


def queue_depths(detail: bool = False) -> list[dict]:
    """For each rq queue: jobs waiting and failed; with ``detail``, also running and scheduled.
    rq cleans a registry up before counting it, so ask only for what is shown."""
    depths = []
    for name in ALL_QUEUES:
        queue = get_queue(name)
        depth = {"name": name, "waiting": queue.count}
        if detail:
            depth["running"] = queue.started_job_registry.count
        depth["failed"] = queue.failed_job_registry.count
        if detail:
            depth["scheduled"] = queue.scheduled_job_registry.count
        depths.append(depth)
    return depths
