"""The transactional outbox: SMS written in the same database transaction as the posting.

A row is the promise that a message will be sent; a separate job sends it (``sender/``), so
no network call ever happens inside a ledger transaction.

Life of a row::

    pending --claim--> sending --gateway accepted--> sent --delivery report--> delivered
       ^                  |  \\--permanent refusal, or out of attempts--> failed
       |                  |                                  sent --report: failed--> failed
       +--transient-------+   (next_attempt_at = now + backoff)

A claim is committed before the HTTP call and names the attempt (``attempts``, ``claim_token``);
the answer is recorded only against that claim. A live sender renews its claims
(``claimed_at``) while it holds them; a row left in ``sending`` (its sender died) is claimed
again once ``SMS_CLAIM_TIMEOUT_SECONDS`` pass without a renewal. A row recorded as sent is never
claimed again.
"""

import contextlib
import enum
import logging
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import insert_rows
from ..extensions import db
from ..queues import Bell, ring_after_commit

log = logging.getLogger(__name__)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # waiting to be handed to the gateway (at ``next_attempt_at``, if set)
    SENDING = "sending"  # claimed by a sender, which is talking to the gateway right now
    SENT = "sent"  # the gateway accepted it
    DELIVERED = "delivered"  # the delivery report says it reached the phone
    FAILED = "failed"  # gave up; ``failure_reason`` says why


# A row not yet sent or failed, in the words of the partial index below: a query that writes
# them out (not as bound parameters) can use that index in every plan, PostgreSQL's generic
# plans of prepared statements and SQLite's included.
UNFINISHED_WHERE = "status IN ('pending', 'sending')"


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index(
            "ix_outbox_messages_pending",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_outbox_messages_sending",
            "claimed_at",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        # Each number's unfinished rows in id order, and only those (migration 0018): what a claim reads
        # (sender.claims._unfinished_rows) without walking the number's sent history.
        Index(
            "ix_outbox_messages_unfinished",
            "phone",
            "id",
            postgresql_where=text(UNFINISHED_WHERE),
            sqlite_where=text(UNFINISHED_WHERE),
        ),
        # NULL until the gateway accepts the message: those rows need no entry (0016).
        Index(
            "ix_outbox_messages_gateway_message_id",
            "gateway_message_id",
            postgresql_where=text("gateway_message_id IS NOT NULL"),
            sqlite_where=text("gateway_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The transfer request this message is about (a receipt), if any.
    transfer_request_id: Mapped[str | None] = mapped_column(ForeignKey("transfer_requests.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.PENDING.value)
    # Hand-overs to the gateway so far (each claim adds one).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    gateway_message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(120), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())

    # Sending (0003). Times are naive UTC.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    claim_token: Mapped[str | None] = mapped_column(String(32), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    # Africa's Talking's word on the hand-over: per-recipient statusCode and status, and the
    # cost exactly as it says it ("KES 0.8000": its currency and precision, not our money).
    gateway_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    gateway_status: Mapped[str | None] = mapped_column(String(40), default=None)
    cost: Mapped[str | None] = mapped_column(String(24), default=None)
    # The latest delivery report.
    delivery_status: Mapped[str | None] = mapped_column(String(20), default=None)
    network_code: Mapped[str | None] = mapped_column(String(10), default=None)
    delivery_retry_count: Mapped[int | None] = mapped_column(Integer, default=None)
    delivery_reported_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


def add_sms(session, *, phone: str, body: str, transfer_request_id: str | None = None) -> None:
    """Promise ``body`` to ``phone``, in the caller's transaction. The caller commits; the commit
    rings the sender (``queues.ring_after_commit``), and the periodic job finds the row anyway
    if the ring is lost. Inside ``batched(session)`` the row is written when the batch ends, with the
    batch's others."""
    row = dict(
        phone=phone,
        body=body,
        transfer_request_id=transfer_request_id,
        status=OutboxStatus.PENDING.value,
        attempts=0,
    )
    batch = session.info.get(_BATCH)
    if batch is not None:
        batch.append(row)  # the batch rings once for all of its rows
        return
    # People wait at a counter for some SMS (a withdrawal's approval request, a mini
    # statement, an e-float issue): they must not wait for the periodic job.
    ring_after_commit(session, Bell.SMS)
    session.add(OutboxMessage(**row))


_BATCH = "tuma_outbox_batch"


@contextlib.contextmanager
def batched(session):
    """Collect the ``add_sms`` rows of a block and write them, in the order they were added
    (a person's receipts are sent in id order), in one statement when the block ends without
    an error: a transfer batch's receipts cost one insert, not an ORM flush of each row. Still
    the caller's transaction; no commit."""
    if session.info.get(_BATCH) is not None:
        raise RuntimeError("outbox.batched does not nest")
    rows: list[dict] = []
    session.info[_BATCH] = rows
    try:
        yield
    finally:
        session.info.pop(_BATCH, None)
    insert_rows(session, OutboxMessage.__table__, rows)
    if rows:
        ring_after_commit(session, Bell.SMS)
    for listener in _bulk_listeners:
        listener(session, [row["transfer_request_id"] for row in rows])


# The ORM's events do not see ``batched``'s one insert: whoever watches the outbox (the log
# lines of ``ops/tracing.py``) asks to hear of it here, so the outbox imports none of them.
_bulk_listeners: list = []


def on_bulk_insert(listener) -> None:
    """Call ``listener(session, transfer_ids)`` after each ``batched`` insert, in its
    transaction (one transfer id per row, None for rows without one)."""
    if listener not in _bulk_listeners:
        _bulk_listeners.append(listener)


# Likewise for the sender's claims, which write their rows without the ORM (sender.claim_lanes).
_claim_listeners: list = []


def on_bulk_claim(listener) -> None:
    """Call ``listener(session, claimed)`` after each claim's write, in its transaction, with
    ``claimed`` a list of (sms id, attempt, transfer id or None), one per row claimed."""
    if listener not in _claim_listeners:
        _claim_listeners.append(listener)


def claimed(session, rows: list[tuple[int, int, str | None]]) -> None:
    """Tell the claim listeners of rows just claimed (``on_bulk_claim``)."""
    for listener in _claim_listeners:
        listener(session, rows)
