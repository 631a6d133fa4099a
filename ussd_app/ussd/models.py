"""Africa's Talking's end-of-session notifications, kept for support and reconciliation.

The notification's ``input`` is everything the person typed, PINs included, so it is never
stored: only how many inputs there were.
"""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db


class UssdEvent(db.Model):
    __tablename__ = "ussd_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(100), index=True)
    phone: Mapped[str | None] = mapped_column(String(20), index=True, default=None)  # E.164
    service_code: Mapped[str | None] = mapped_column(String(40), default=None)
    network_code: Mapped[str | None] = mapped_column(String(20), default=None)
    status: Mapped[str | None] = mapped_column(String(40), default=None)  # Success, Incomplete, Failed
    cost: Mapped[str | None] = mapped_column(String(40), default=None)  # as sent, e.g. "KES 0.0000"
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    hops: Mapped[int | None] = mapped_column(Integer, default=None)  # inputs typed, not their text
    error_message: Mapped[str | None] = mapped_column(String(255), default=None)
    reported_at: Mapped[str | None] = mapped_column(String(40), default=None)  # AT's "date", as sent
    received_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
