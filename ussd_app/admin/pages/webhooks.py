"""Webhook deliveries (``/admin/webhooks``): every event sent to a merchant's system, its
attempts and last answer, by status or event id; a delivered or failed one sent again.
The endpoint's signing secret is never shown."""

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from ...events import delivery
from ...events.models import Delivery, DeliveryStatus, Event, WebhookEndpoint
from ...extensions import db
from ...users import User
from .. import bp, login_required
from .common import PAGE, _text, audit

RESENDABLE = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value)


@bp.get("/webhooks")
@login_required
def webhooks():
    status = request.args.get("status", "")
    event_id = _text(request.args.get("event"), 40)
    query = (
        select(Delivery, Event, WebhookEndpoint, User)
        .join(Event, Event.id == Delivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == Delivery.endpoint_id)
        .outerjoin(User, User.account_id == WebhookEndpoint.account_id)
        .order_by(Delivery.id.desc())
        .limit(PAGE)
    )
    if status in {s.value for s in DeliveryStatus}:
        query = query.where(Delivery.status == status)
    else:
        status = ""
    if event_id:
        query = query.where(Delivery.event_id == event_id)
    counts = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
    rows = db.session.execute(query).all()
    return render_template(
        "admin/webhooks.html",
        rows=rows,
        status=status,
        event_id=event_id,
        counts=counts,
        statuses=list(DeliveryStatus),
        resendable=RESENDABLE,
    )


@bp.post("/webhooks/<int:delivery_id>/resend")
@login_required
def resend_webhook(delivery_id):
    row = db.session.get(Delivery, delivery_id)
    if row is None:
        abort(404)
    if row.status not in RESENDABLE:
        flash(f"Delivery {row.id} is {row.status}: it is on its way already.", "error")
        return redirect(url_for("admin.webhooks"))
    was = row.status
    delivery.resend(db.session, row)  # due now; the commit rings the delivery job
    audit("webhook.resend", str(row.id), event=row.event_id, was=was)
    db.session.commit()
    flash(f"Event {row.event_id} will be sent again.", "ok")
    return redirect(url_for("admin.webhooks", event=row.event_id))
