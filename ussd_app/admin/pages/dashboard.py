"""The dashboard (``/admin/``): the last 24 hours of transfers, value and fees by hour, escrow
held, queues and SMS delivery."""

from datetime import timedelta

from flask import render_template
from sqlalchemy import func, select, text
from sqlalchemy.orm import aliased

from ...extensions import db
from ...ledger import AccountKind, Transfer, TransferFlags, house_account
from ...payments.models import RequestStatus, TransferRequest
from ...sms.outbox import OutboxMessage
from .. import bp, charts, login_required
from ..models import utcnow
from .common import money
from .queues import _queue_summary


def _hour_bucket(column):
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", column), text("'YYYY-MM-DD HH24:00'"))
    return func.strftime("%Y-%m-%d %H:00", column)


def open_holds_by_code(session) -> list[tuple[str, int, int]]:
    """Escrow held right now: (flow code, holds, amount) over pending transfers not resolved."""
    resolution = aliased(Transfer)
    return [
        (code, count, int(amount))
        for code, count, amount in session.execute(
            select(Transfer.code, func.count(), func.coalesce(func.sum(Transfer.amount), 0))
            .outerjoin(resolution, resolution.pending_id == Transfer.id)
            .where(Transfer.flags.op("&")(int(TransferFlags.PENDING)) != 0, resolution.id.is_(None))
            .group_by(Transfer.code)
            .order_by(Transfer.code)
        )
    ]


@bp.get("/")
@login_required
def dashboard():
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(hours=23)
    labels = [(since + timedelta(hours=i)).strftime("%Y-%m-%d %H:00") for i in range(24)]
    index = {label: i for i, label in enumerate(labels)}
    bucket = _hour_bucket(TransferRequest.created_at)
    rows = db.session.execute(
        select(
            bucket,
            TransferRequest.kind,
            func.count(),
            func.coalesce(func.sum(TransferRequest.amount), 0),
            func.coalesce(func.sum(TransferRequest.fee), 0),
        )
        .where(TransferRequest.created_at >= since, TransferRequest.status == RequestStatus.POSTED.value)
        .group_by(bucket, TransferRequest.kind)
    ).all()
    counts: dict[str, list[int]] = {}
    values: dict[str, list[int]] = {}
    fees = [0] * 24
    for hour, kind, count, amount, fee in rows:
        i = index.get(hour)
        if i is None:
            continue
        counts.setdefault(kind, [0] * 24)[i] += count
        values.setdefault(kind, [0] * 24)[i] += int(amount)
        fees[i] += int(fee)
    fee_account = house_account(db.session, AccountKind.FEES)
    sms = dict(
        db.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.created_at >= since)
            .group_by(OutboxMessage.status)
        ).all()
    )
    handed = sum(sms.get(s, 0) for s in ("sent", "delivered", "failed"))
    queues = _queue_summary()
    return render_template(
        "admin/dashboard.html",
        count_chart=charts.stacked_bars(labels, counts, title="Transfers per hour, by kind (24 h, UTC)"),
        value_chart=charts.stacked_bars(labels, values, title="Value per hour, by kind", fmt=money),
        fee_chart=charts.stacked_bars(
            labels, {"fees": fees} if any(fees) else {}, title="Fees earned per hour", fmt=money
        ),
        fees_24h=sum(fees),
        fees_balance=fee_account.credits_posted - fee_account.debits_posted,
        holds=open_holds_by_code(db.session),
        queues=queues,
        sms=sms,
        delivery_rate=(sms.get("delivered", 0) / handed) if handed else None,
        handed=handed,
    )
