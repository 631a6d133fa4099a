"""Tips and donations to creators and causes (issue 18 item 2).

A tip is an ordinary single transfer (kind ``tip``, its row in ``kinds.py``): customer -> the
cause's wallet, recorded by the USSD flow (``ussd/flows/tips.py``) and posted by the batched
ledger like any send, counted against the tipper's daily limit and priced like a send (free up
to the tariff's free band). What is its own:

- **Silence.** A tip up to ``TIP_SILENT_MAX_MAJOR`` sends no receipt to either party (an SMS
  costs more than the tip: ``silent``, read by ``sms/receipts.py``). The tipper reads the code
  on the END screen and in the mini statement; a refusal is still told by SMS.
- **The daily digest.** Each cause that received tips on a day gets one SMS the next morning
  (from ``TIP_DIGEST_HOUR``, ``TIMEZONE``): how many and how much (``write_digests``, run by the
  maintenance job). Once per cause per day, however often and however many jobs run it: the
  digest's row, keyed by (cause account, day), is inserted with its SMS in one transaction, so
  a second writer's insert fails and it rolls back its SMS with it.
- **The public total.** ``TOTAL <code>`` by SMS tells anyone the cause's name and what it has
  received this month (``month_total``; answered by ``sms_commands/inbound.py``). Transparency
  is what makes people give; a merchant's till is never answered (its takings are its own).
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, Integer, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db
from ..money import to_minor
from . import kinds
from .models import RequestKind, RequestStatus, TransferRequest

TIP = RequestKind.TIP.value

# The digest's sum of a day's tips, across causes: only tips' rows, by when they posted.
Index(
    "ix_transfer_requests_tips_executed",
    TransferRequest.executed_at,
    postgresql_where=text("kind = 'tip'"),
    sqlite_where=text("kind = 'tip'"),
)


class TipDigest(db.Model):
    """One row per cause and (local) day whose digest SMS was written: the key that makes it
    once. Written in the same transaction as its outbox row."""

    __tablename__ = "tip_digests"

    cause_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # in TIMEZONE
    tips: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


def silent(kind: str, amount: int) -> bool:
    """Whether a posted request of ``kind`` for ``amount`` (minor units) sends no receipt: its
    row in ``kinds.py`` names a setting, and the amount is at most that setting."""
    setting = kinds.spec(kind).silent_up_to
    return setting is not None and amount <= to_minor(current_app.config[setting])


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["TIMEZONE"])


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC).replace(tzinfo=None)


def local_day(moment: datetime) -> date:
    """The day (in ``TIMEZONE``) of a naive-UTC ``moment``."""
    return moment.replace(tzinfo=UTC).astimezone(_zone()).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of ``day`` in ``TIMEZONE``, as naive UTC."""
    start = datetime.combine(day, time(0), tzinfo=_zone())
    return _utc(start), _utc(start + timedelta(days=1))


def month_start(now: datetime | None = None) -> datetime:
    """The first moment of ``now``'s month in ``TIMEZONE``, as naive UTC."""
    day = local_day(now or utcnow())
    return day_bounds(day.replace(day=1))[0]


def _received(*conditions):
    """(how many, how much) of the posted tips that meet ``conditions``."""
    return select(func.count(), func.coalesce(func.sum(TransferRequest.amount), 0)).where(
        TransferRequest.kind == TIP,
        TransferRequest.status == RequestStatus.ACCEPTED.value,
        *conditions,
    )


def month_total(session, cause, now: datetime | None = None) -> tuple[int, int, datetime]:
    """(tips, amount in minor units, since) the cause has received this month (``TIMEZONE``):
    posted tips only (a refused or queued one is not received)."""
    since = month_start(now)
    count, amount = session.execute(
        _received(
            TransferRequest.credit_account_id == cause.account_id,
            TransferRequest.executed_at >= since,
        )
    ).one()
    return int(count), int(amount), since


def digest_due(now: datetime | None = None) -> date | None:
    """The day whose digests are due at ``now``: yesterday (``TIMEZONE``), once the digest hour
    has come (a morning SMS, not one at midnight; and by then no tip of yesterday is still being
    written). None before that hour."""
    local = (now or utcnow()).replace(tzinfo=UTC).astimezone(_zone())
    if local.hour < current_app.config["TIP_DIGEST_HOUR"]:
        return None
    return local.date() - timedelta(days=1)


def write_digests(session, now: datetime | None = None) -> int:
    """Write the digest SMS of the day due (``digest_due``) to each cause that received tips
    that day and has none yet, each with its ``TipDigest`` row, in the caller's transaction.
    How many were written. Two writers side by side: the second one's insert of a row the first
    committed fails (IntegrityError); the caller rolls back and runs it again, and finds nothing
    left to write."""
    from ..messages import tips as texts
    from ..sms.outbox import add_sms
    from ..users import holders

    day = digest_due(now)
    if day is None:
        return 0
    start, end = day_bounds(day)
    received = session.execute(
        _received(TransferRequest.executed_at >= start, TransferRequest.executed_at < end)
        .add_columns(TransferRequest.credit_account_id)
        .group_by(TransferRequest.credit_account_id)
    ).all()
    done = set(session.execute(select(TipDigest.cause_account_id).where(TipDigest.day == day)).scalars())
    due = {account: (int(n), int(total)) for n, total, account in received if account not in done}
    causes = holders(session, due)
    written = 0
    for account_id, (count, amount) in sorted(due.items()):
        cause = causes.get(account_id)
        if cause is None:
            continue
        session.add(TipDigest(cause_account_id=account_id, day=day, tips=count, amount=amount))
        session.flush()  # the key first: a second writer fails here, before its SMS
        body = texts.digest(cause, day, count, amount, balance=cause.account.available)
        add_sms(session, phone=cause.phone, body=body)
        written += 1
    return written
