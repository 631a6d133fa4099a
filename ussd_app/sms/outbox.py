"""The transactional outbox: SMS written in the same database transaction as the posting.

A row is the promise that a message will be sent; a separate job sends it, so no network
call ever happens inside a ledger transaction.
"""

import enum
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # waiting to be handed to the gateway
    SENT = "sent"  # the gateway accepted it
    DELIVERED = "delivered"  # the delivery report says it reached the phone
    FAILED = "failed"  # gave up; ``failure_reason`` says why


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index(
            "ix_outbox_messages_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("transfer_requests.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    gateway_message_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(120), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


def add_sms(session, *, phone: str, body: str, request_id: str | None = None) -> None:
    session.add(
        OutboxMessage(
            phone=phone, body=body, request_id=request_id, status=OutboxStatus.PENDING.value, attempts=0
        )
    )
