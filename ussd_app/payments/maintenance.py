"""Recovery: requests left queued (a killed worker, a lost job, a Redis that restarted empty)."""

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from ..clock import utcnow
from .models import RequestStatus, TransferRequest


def requeue_stale(session) -> int:
    """How many requests have waited longer than REQUEUE_AFTER_SECONDS (the caller re-announces)."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["REQUEUE_AFTER_SECONDS"])
    return int(
        session.execute(
            select(func.count()).where(
                TransferRequest.status == RequestStatus.QUEUED.value,
                TransferRequest.created_at <= cutoff,
            )
        ).scalar_one()
    )
