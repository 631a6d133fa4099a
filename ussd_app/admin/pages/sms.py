"""The SMS outbox (``/admin/sms``): messages by status or number, and a failed one sent again."""

import logging

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ... import phones, reports
from ...extensions import db
from ...payments.models import TransferRequest
from ...sms.outbox import OutboxMessage, OutboxStatus
from .. import bp, login_required
from .common import PAGE, _text, audit

log = logging.getLogger(__name__)


@bp.get("/sms")
@login_required
def sms():
    status = request.args.get("status", "")
    phone = _text(request.args.get("phone"), 30)
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(PAGE)
    if status in {s.value for s in OutboxStatus}:
        query = query.where(OutboxMessage.status == status)
    else:
        status = ""
    if phone:
        try:
            query = query.where(OutboxMessage.phone == phones.normalize(phone))
        except phones.InvalidPhone:
            flash("Not a phone number.", "error")
    counts = reports.sms_by_status(db.session)
    rows = list(db.session.execute(query).scalars())
    request_ids = {m.transfer_request_id for m in rows if m.transfer_request_id}
    codes = (
        {
            r.id: r.code
            for r in db.session.execute(
                select(TransferRequest).where(TransferRequest.id.in_(request_ids))
            ).scalars()
        }
        if request_ids
        else {}
    )
    return render_template(
        "admin/sms.html",
        rows=rows,
        status=status,
        phone=phone,
        counts=counts,
        statuses=list(OutboxStatus),
        codes=codes,
    )


@bp.post("/sms/<int:message_id>/retry")
@login_required
def retry_sms(message_id):
    from ...queues import Bell, ring_after_commit

    message = db.session.get(OutboxMessage, message_id)
    if message is None:
        abort(404)
    if message.status != OutboxStatus.FAILED.value:
        flash(f"Message {message.id} is {message.status}: only failed messages are retried.", "error")
        return redirect(url_for("admin.sms", status="failed"))
    was = message.failure_reason
    message.status = OutboxStatus.PENDING.value
    message.attempts = 0  # a fresh set of attempts
    message.next_attempt_at = None
    message.claim_token = None
    message.claimed_at = None
    audit("sms.retry", str(message.id), phone=message.phone, was=was)
    ring_after_commit(db.session, Bell.SMS)  # pending again: the sender hears it once committed
    db.session.commit()
    flash(f"Message {message.id} to {message.phone} will be sent again.", "ok")
    return redirect(url_for("admin.sms", status="failed"))
