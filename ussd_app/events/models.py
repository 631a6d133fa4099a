"""The events tables: what happened (``events``), where each merchant wants to hear of it
(``webhook_endpoints``), and each event's delivery to an endpoint (``webhook_deliveries``).

An event row is written in the same database transaction as the posting or the state move it
reports, under an id derived from its type and what it is about (``event_id``), unique per
(type, source): a job that runs twice writes it once. A delivery row is the promise that the
event will be POSTed to the merchant's endpoint; ``delivery.py`` keeps it.
"""

import enum
from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class EventType(enum.StrEnum):
    PAYMENT_RECEIVED = "payment.received"  # a till or pay-bill payment, a protected purchase posted
    PAYMENT_REQUEST_PAID = "payment_request.paid"
    PAYMENT_REQUEST_DECLINED = "payment_request.declined"
    PAYMENT_REQUEST_EXPIRED = "payment_request.expired"
    PAYOUT_POSTED = "payout.posted"
    PAYOUT_FAILED = "payout.failed"
    REFUND_POSTED = "refund.posted"
    REFUND_FAILED = "refund.failed"
    # Allowances (payments/allowances/): settled is written with the settlement's posting.
    ALLOWANCE_APPROVED = "allowance.approved"  # a period's limit is held for the first time: charge away
    ALLOWANCE_DECLINED = "allowance.declined"
    ALLOWANCE_EXPIRED = "allowance.expired"  # not answered in time, or past its end
    ALLOWANCE_PAUSED = "allowance.paused"  # a period's limit could not be held
    ALLOWANCE_CANCELLED = "allowance.cancelled"  # by the customer
    ALLOWANCE_SETTLED = "allowance.settled"
    # Tuma's operator voided the hold of a settlement refused while you were locked: the hold
    # back to the customer, the charges owed forgiven (payments/allowances/decisions.py).
    ALLOWANCE_VOIDED = "allowance.voided"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at ``next_attempt_at`` (None: now)
    SENDING = "sending"  # claimed by a job that is POSTing it right now
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # no 2xx before ``give_up_at``, or the URL is refused; an operator may resend


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Event(db.Model):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("type", "source_id", name="uq_events_type_source"),
        Index("ix_events_account_created", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "evt_" + 24 characters
    type: Mapped[str] = mapped_column(String(40))
    # The merchant's (or agent's) wallet: whose endpoint hears of it.
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # What it is about: a transfer request's id, or a payment request's.
    source_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The exact JSON body every delivery of it sends (and signs): {id, type, created, data}.
    payload: Mapped[str] = mapped_column(Text)


class WebhookEndpoint(db.Model):
    """One per merchant: where its events go, which types, and the secret they are signed with.
    The secret is kept as it is (the server signs with it); it is shown once per PUT that sets
    it, never logged and never shown in the back office."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Comma-separated event types; "*" for every type.
    events: Mapped[str] = mapped_column(String(400))
    secret: Mapped[str] = mapped_column(String(80))
    # Asked before a pay-bill payment to this merchant is accepted (validation.py); None: not asked.
    validation_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def wants(self, event_type: str) -> bool:
        types = set(self.events.split(","))
        return "*" in types or event_type in types


class Delivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        Index(
            "ix_webhook_deliveries_pending",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_sending",
            "claimed_at",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # After this, a failed attempt is the last: the delivery is failed (three days by default).
    give_up_at: Mapped[datetime] = mapped_column(DateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    # The last attempt's answer: its HTTP status (None: no answer) and, if it failed, why.
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
