"""Transfers (``/admin/transfers``) and one transfer's trail (``/admin/transfers/<code>``): its
ledger transfers, rejections, SMS, trust deposit and operator actions."""

from datetime import UTC, date, datetime, timedelta

from flask import abort, redirect, render_template, request, url_for
from sqlalchemy import or_, select

from ... import phones, reports
from ...extensions import db
from ...ledger import RejectedTransfer, Transfer, TransferFlags
from ...payments.models import TransferRequest, TrustDeposit
from ...sms.outbox import OutboxMessage
from ...users import find_by_phone
from .. import bp, login_required
from ..models import AuditEntry
from .common import PAGE, _text


@bp.get("/transfers")
@login_required
def transfers():
    q = _text(request.args.get("q"), 64)
    day = _text(request.args.get("date"), 10)
    query = select(TransferRequest).order_by(TransferRequest.created_at.desc()).limit(PAGE)
    error = None
    if q:
        conditions = [TransferRequest.code == q.upper(), TransferRequest.id == q]
        try:
            person = find_by_phone(db.session, phones.normalize(q))
        except phones.InvalidPhone:
            person = None
        if person is not None:
            conditions += [
                TransferRequest.debit_account_id == person.account_id,
                TransferRequest.credit_account_id == person.account_id,
            ]
        query = query.where(or_(*conditions))
    if day:
        try:
            start = datetime.combine(date.fromisoformat(day), datetime.min.time())
            query = query.where(TransferRequest.created_at >= start)
            if start.date() < date.max:  # the calendar's last day has no next (OverflowError, a 500)
                query = query.where(TransferRequest.created_at < start + timedelta(days=1))
        except ValueError:
            error = "A date is YYYY-MM-DD."
    rows = list(db.session.execute(query).scalars())
    if len(rows) == 1 and q and rows[0].code == q.upper():
        return redirect(url_for("admin.transfer", code=rows[0].code))
    return render_template(
        "admin/transfers.html",
        q=q,
        day=day,
        rows=rows,
        error=error,
        holders=reports.account_labels(
            db.session, {r.debit_account_id for r in rows} | {r.credit_account_id for r in rows}
        ),
    )


def transfer_trail(session, request_row: TransferRequest) -> dict:
    """Everything that happened to one transfer request: its ledger transfers (holds, posts,
    voids), rejections, SMS and operator actions, in time order where they have one."""
    legs = list(
        session.execute(
            select(Transfer).where(Transfer.user_data == request_row.id).order_by(Transfer.created_at)
        ).scalars()
    )
    hold_ids = [t.id for t in legs if t.is_pending]
    if hold_ids:
        known = {t.id for t in legs}
        legs += [
            t
            for t in session.execute(
                select(Transfer).where(Transfer.pending_id.in_(hold_ids)).order_by(Transfer.created_at)
            ).scalars()
            if t.id not in known
        ]
    rejected = list(
        session.execute(
            select(RejectedTransfer).where(RejectedTransfer.user_data == request_row.id)
        ).scalars()
    )
    sms = list(
        session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.transfer_request_id == request_row.id)
            .order_by(OutboxMessage.id)
        ).scalars()
    )
    deposit = session.execute(
        select(TrustDeposit).where(TrustDeposit.transfer_request_id == request_row.id)
    ).scalar_one_or_none()
    audits = list(
        session.execute(
            select(AuditEntry)
            .where(
                or_(
                    AuditEntry.target == request_row.code,
                    AuditEntry.target.like(f"%:{request_row.code}"),  # decisions: "<source>:<code>"
                )
            )
            .order_by(AuditEntry.id)
        ).scalars()
    )
    return {"legs": legs, "rejected": rejected, "sms": sms, "deposit": deposit, "audits": audits}


def leg_kind(t: Transfer) -> str:
    if t.flags & TransferFlags.PENDING:
        return "hold"
    if t.flags & TransferFlags.POST_PENDING_TRANSFER:
        return "post"
    if t.flags & TransferFlags.VOID_PENDING_TRANSFER:
        return "void"
    return "posted"


def micros(us: int | None) -> str:
    if not us:
        return ""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@bp.get("/transfers/<code>")
@login_required
def transfer(code):
    if not code.isprintable():  # PostgreSQL refuses a NUL (a crafted link): no transfer's code
        abort(404)
    row = db.session.execute(
        select(TransferRequest).where(TransferRequest.code == code.upper()[:10])
    ).scalar_one_or_none()
    if row is None:
        abort(404)
    trail = transfer_trail(db.session, row)
    legs = {t.debit_account_id for t in trail["legs"]} | {t.credit_account_id for t in trail["legs"]}
    # The request's two parties by name; the other accounts its legs touch by kind.
    holders = reports.account_labels(db.session, {row.debit_account_id, row.credit_account_id}, legs)
    return render_template(
        "admin/transfer.html", r=row, trail=trail, holders=holders, leg_kind=leg_kind, micros=micros
    )
