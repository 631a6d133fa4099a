"""Daily limits: how much a customer may send in a day, and how much of it is left.

Only reporting lives here for now (receipts say what is left of today's limit); refusing a
transfer over the limit is the limits issue's work and will build on these functions.

"Today" starts at midnight in ``TIMEZONE``. What counts against the limit is every posted
request the person paid out of their wallet, of a kind listed in ``COUNTED_KINDS``, amount
plus fee, in minor units.
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select

from .money import to_minor
from .payments.models import RequestStatus, TransferRequest

# Kinds that spend from the payer's daily limit. New kinds that take money out of a
# customer's wallet (buy goods, pay bill, withdrawal) join this set.
COUNTED_KINDS = frozenset({"send"})


def daily_limit() -> int:
    """The default daily send limit, minor units (``DAILY_LIMIT_MAJOR``)."""
    return to_minor(current_app.config["DAILY_LIMIT_MAJOR"])


def start_of_today(now: datetime | None = None) -> datetime:
    """Midnight of ``now``'s day in ``TIMEZONE``, as naive UTC (how the database stores times)."""
    tz = ZoneInfo(current_app.config["TIMEZONE"])
    now = now or datetime.now(UTC).replace(tzinfo=None)
    local = now.replace(tzinfo=UTC).astimezone(tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def spent_today(session, account_ids, now: datetime | None = None) -> dict[int, int]:
    """Posted amount + fee per payer account since midnight, minor units (0 when nothing)."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    since = start_of_today(now)
    until = since + timedelta(days=1)
    rows = session.execute(
        select(
            TransferRequest.debit_account_id,
            func.coalesce(func.sum(TransferRequest.amount + TransferRequest.fee), 0),
        )
        .where(
            TransferRequest.debit_account_id.in_(ids),
            TransferRequest.status == RequestStatus.POSTED.value,
            TransferRequest.kind.in_(COUNTED_KINDS),
            TransferRequest.executed_at >= since,
            TransferRequest.executed_at < until,
        )
        .group_by(TransferRequest.debit_account_id)
    )
    spent = dict.fromkeys(ids, 0)
    spent.update({account_id: int(total) for account_id, total in rows})
    return spent


def left_today(session, account_id: int, now: datetime | None = None) -> int:
    """What ``account_id`` may still send today, minor units, never below zero."""
    return max(0, daily_limit() - spent_today(session, [account_id], now)[account_id])
