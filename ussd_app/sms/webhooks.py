"""Africa's Talking's SMS callbacks: ``POST /sms/delivery`` and ``POST /sms/inbound``.

Both take form bodies. Every field is checked before anything is written; a malformed body
gets a 400 that says what is wrong, never a 500. Africa's Talking does not sign callbacks:
set ``SMS_WEBHOOK_TOKEN`` and register the URLs with ``?token=...`` to keep strangers out.
"""

import hmac
import logging
from datetime import UTC, datetime

from flask import current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import phones
from ..extensions import db
from . import bp, inbound
from .outbox import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024

# Africa's Talking's delivery statuses: final ones end the row's story.
DELIVERED = {"Success"}
UNDELIVERED = {"Failed", "Rejected", "Expired", "AbsentSubscriber"}
IN_FLIGHT = {"Sent", "Submitted", "Buffered"}
DELIVERY_STATUSES = DELIVERED | UNDELIVERED | IN_FLIGHT


class Invalid(ValueError):
    """A field is missing or malformed; the message is the 400's body."""


def _field(name: str, *, required: bool = True, max_length: int = 64) -> str | None:
    value = request.form.get(name)
    if value is None or not value.strip():
        if required:
            raise Invalid(f"missing field: {name}")
        return None
    value = value.strip()
    if len(value) > max_length:
        raise Invalid(f"field too long: {name}")
    if "\x00" in value:  # no text column (PostgreSQL's) takes a NUL: not a real callback
        raise Invalid(f"malformed field: {name}")
    return value


def _e164(raw: str) -> str | None:
    try:
        return phones.normalize(raw)
    except phones.InvalidPhone:
        return None


def _mask(phone: str | None) -> str:
    """Enough of a number to tell two apart in a log, not the whole of it."""
    phone = (phone or "").replace("\n", " ")[:32]
    return repr(phone[:5] + "***" + phone[-3:] if len(phone) > 8 else "***")


def _plain(text: str, status: int = 200):
    return text, status, {"Content-Type": "text/plain; charset=utf-8"}


@bp.before_request
def _guard():
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _plain("body too large", 413)
    token = current_app.config.get("SMS_WEBHOOK_TOKEN")
    if token and not hmac.compare_digest(request.args.get("token", ""), token):
        return _plain("forbidden", 403)
    return None


@bp.errorhandler(Invalid)
def _invalid(exc: Invalid):
    return _plain(str(exc), 400)


@bp.post("/sms/delivery")
def delivery_report():
    """Record a delivery report. Unknown ids are acknowledged (200) and logged."""
    message_id = _field("id")
    status = _field("status", max_length=20)
    if status not in DELIVERY_STATUSES:
        raise Invalid(f"unknown status: {status}")
    network_code = _field("networkCode", required=False, max_length=10)
    failure_reason = _field("failureReason", required=False, max_length=80)
    retry_count = _field("retryCount", required=False, max_length=6)
    if retry_count is not None and not (retry_count.isascii() and retry_count.isdigit()):
        raise Invalid("retryCount must be a whole number")
    # Africa's Talking always names the number; a report without it cannot be checked.
    phone = _field("phoneNumber", max_length=32)

    row = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.gateway_message_id == message_id)
    ).scalar_one_or_none()
    if row is None:
        log.warning("delivery report for unknown message id %r (%s, %s)", message_id, status, _mask(phone))
        db.session.rollback()
        return _plain("unknown id, ignored")
    if _e164(phone) != row.phone:
        # Not about this message: a report for another number must not mark it delivered or
        # failed. Acknowledged (Africa's Talking would only retry it) and logged, numbers masked.
        log.warning(
            "delivery report for %r ignored: it names %s, the message went to %s",
            message_id,
            _mask(phone),
            _mask(row.phone),
        )
        db.session.rollback()
        return _plain("phone number does not match, ignored")
    if row.status in (OutboxStatus.DELIVERED.value, OutboxStatus.FAILED.value):
        # Reports can arrive out of order; a late "Buffered" does not undo "Success".
        db.session.rollback()
        return _plain("OK")
    row.delivery_status = status
    row.network_code = network_code
    row.delivery_retry_count = int(retry_count) if retry_count is not None else None
    row.delivery_reported_at = datetime.now(UTC).replace(tzinfo=None)
    if status in DELIVERED:
        row.status = OutboxStatus.DELIVERED.value
    elif status in UNDELIVERED:
        # Not resent: Africa's Talking has already retried with the network (retryCount),
        # and a receipt that arrives days late misleads more than it helps.
        row.status = OutboxStatus.FAILED.value
        row.failure_reason = f"delivery {status}: {failure_reason or 'no reason given'}"[:120]
    db.session.commit()
    return _plain("OK")


@bp.post("/sms/inbound")
def inbound_sms():
    """Answer a text from a person: a receipt check, a reversal request, or help."""
    at_id = _field("id")
    raw_from = _field("from", max_length=32)
    to = _field("to", max_length=20)
    text = request.form.get("text", "").strip()
    if len(text) > 480:
        raise Invalid("field too long: text")
    if "\x00" in text:
        raise Invalid("malformed field: text")
    link_id = _field("linkId", required=False)
    date = _field("date", required=False, max_length=40)
    try:
        phone = phones.normalize(raw_from)
    except phones.InvalidPhone:
        raise Invalid("from is not a phone number") from None

    try:
        message = inbound.receive(
            db.session, at_id=at_id, phone=phone, to=to, text=text, link_id=link_id, date=date
        )
        db.session.commit()
    except IntegrityError:
        # The same id raced in twice: the other request recorded it and answers.
        db.session.rollback()
        message = None
    if message is None:
        return _plain("already received")
    return _plain("OK")  # the reply (and a reversal's hold) rang their workers at commit
