"""The dashboard (``/admin/``): the last 24 hours of transfers, value and fees by hour, escrow
held, queues and SMS delivery."""

from datetime import UTC, timedelta

from flask import render_template

from ... import reports
from ...extensions import db
from ...ledger import AccountKind, house_account
from .. import bp, charts, login_required
from ..models import utcnow
from .common import money


@bp.get("/")
@login_required
def dashboard():
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    since = now - timedelta(hours=23)
    labels = [(since + timedelta(hours=i)).strftime("%Y-%m-%d %H:00") for i in range(24)]
    index = {label: i for i, label in enumerate(labels)}
    rows = reports.posted_by_hour_and_kind(db.session, since)
    counts: dict[str, list[int]] = {}
    values: dict[str, list[int]] = {}
    for hour, kind, count, amount, _fee in rows:
        i = index.get(hour)
        if i is None:
            continue
        counts.setdefault(kind, [0] * 24)[i] += count
        values.setdefault(kind, [0] * 24)[i] += int(amount)
    # What the fee account gained, from the ledger: the payer's fee of each request, the
    # merchant's fee (``payee_fee``, left out when this summed the requests' ``fee``) and the
    # agent's commission out of it; the card beside it shows that account's balance.
    first = int(since.replace(tzinfo=UTC).timestamp()) // 3600
    fees = [0] * 24
    for hour, gained in reports.fee_account_by_hour(db.session, since).items():
        if 0 <= hour - first < 24:
            fees[hour - first] += gained
    fee_account = house_account(db.session, AccountKind.FEES)
    sms = reports.sms_by_status(db.session, since)
    handed = sum(sms.get(s, 0) for s in ("sent", "delivered", "failed"))
    queues = reports.queue_depths(detail=True)
    return render_template(
        "admin/dashboard.html",
        count_chart=charts.stacked_bars(labels, counts, title="Transfers per hour, by kind (24 h, UTC)"),
        value_chart=charts.stacked_bars(labels, values, title="Value per hour, by kind", fmt=money),
        fee_chart=charts.stacked_bars(
            labels, {"fees": fees} if any(fees) else {}, title="Fees earned per hour", fmt=money
        ),
        fees_24h=sum(fees),
        fees_balance=fee_account.credits_posted - fee_account.debits_posted,
        holds=reports.open_holds_by_code(db.session),
        held_for_review=reports.held_for_review(db.session),
        queues=queues,
        sms=sms,
        delivery_rate=(sms.get("delivered", 0) / handed) if handed else None,
        handed=handed,
    )
