"""Africa's Talking's delivery reports: ``POST /sms/delivery``.

A form body; every field is checked before anything is written (``callbacks.py``: the body
cap, the token, a 400 for a bad field). The SMS people text us (``POST /sms/inbound``) are a
channel of their own: ``ussd_app/sms_commands/``.
"""

import logging

from sqlalchemy import select

from .. import phones
from ..clock import utcnow
from ..extensions import db
from . import bp
from .callbacks import Invalid, field, plain, protect
from .outbox import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

# Africa's Talking's delivery statuses: final ones end the row's story.
DELIVERED = {"Success"}
UNDELIVERED = {"Failed", "Rejected", "Expired", "AbsentSubscriber"}
IN_FLIGHT = {"Sent", "Submitted", "Buffered"}
DELIVERY_STATUSES = DELIVERED | UNDELIVERED | IN_FLIGHT


def _e164(raw: str) -> str | None:
    try:
        return phones.normalize(raw)
    except phones.InvalidPhone:
        return None


def _mask(phone: str | None) -> str:
    """Enough of a number to tell two apart in a log, not the whole of it."""
    phone = (phone or "").replace("\n", " ")[:32]
    return repr(phone[:5] + "***" + phone[-3:] if len(phone) > 8 else "***")


protect(bp)


@bp.post("/sms/delivery")
def delivery_report():
    """Record a delivery report. Unknown ids are acknowledged (200) and logged."""
    message_id = field("id")
    status = field("status", max_length=20)
    if status not in DELIVERY_STATUSES:
        raise Invalid(f"unknown status: {status}")
    network_code = field("networkCode", required=False, max_length=10)
    failure_reason = field("failureReason", required=False, max_length=80)
    retry_count = field("retryCount", required=False, max_length=6)
    if retry_count is not None and not (retry_count.isascii() and retry_count.isdigit()):
        raise Invalid("retryCount must be a whole number")
    # Africa's Talking always names the number; a report without it cannot be checked.
    phone = field("phoneNumber", max_length=32)

    # A gateway's ids are its own: nothing makes them unique here (a gateway that hands one id
    # out twice made this a 500). The report is about the message of that id to its number.
    rows = (
        db.session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.gateway_message_id == message_id)
            .order_by(OutboxMessage.id)
            .limit(10)
        )
        .scalars()
        .all()
    )
    reported = _e164(phone)
    row = next((r for r in rows if r.phone == reported), rows[0] if rows else None)
    if row is None:
        log.warning("delivery report for unknown message id %r (%s, %s)", message_id, status, _mask(phone))
        db.session.rollback()
        return plain("unknown id, ignored")
    if reported != row.phone:
        # Not about this message: a report for another number must not mark it delivered or
        # failed. Acknowledged (Africa's Talking would only retry it) and logged, numbers masked.
        log.warning(
            "delivery report for %r ignored: it names %s, the message went to %s",
            message_id,
            _mask(phone),
            _mask(row.phone),
        )
        db.session.rollback()
        return plain("phone number does not match, ignored")
    if row.status in (OutboxStatus.DELIVERED.value, OutboxStatus.FAILED.value):
        # Reports can arrive out of order; a late "Buffered" does not undo "Success".
        db.session.rollback()
        return plain("OK")
    row.delivery_status = status
    row.network_code = network_code
    row.delivery_retry_count = int(retry_count) if retry_count is not None else None
    row.delivery_reported_at = utcnow()
    if status in DELIVERED:
        row.status = OutboxStatus.DELIVERED.value
    elif status in UNDELIVERED:
        # Not resent: Africa's Talking has already retried with the network (retryCount),
        # and a receipt that arrives days late misleads more than it helps.
        row.status = OutboxStatus.FAILED.value
        row.failure_reason = f"delivery {status}: {failure_reason or 'no reason given'}"[:120]
    db.session.commit()
    return plain("OK")
