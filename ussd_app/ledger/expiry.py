"""Expiry: a hold past its timeout is voided, by the database clock, exactly once.

Once a hold's timeout has passed, only this job may resolve it (``create_transfers(...,
expiry=True)``); its owner's post or void, before or after this job, answers
PENDING_TRANSFER_EXPIRED, as in TigerBeetle.

The void transfer's id is derived from the hold's, and the unique index on ``pending_id``
decides any race (the owner posting at the same moment, or two expiry jobs): one resolution
wins, the other gets EXISTS, PENDING_TRANSFER_ALREADY_POSTED or PENDING_TRANSFER_EXPIRED and
changes nothing.
"""

from sqlalchemy import select
from sqlalchemy.orm import aliased

from ..database import db_clock_us
from .engine import TransferSpec, create_transfers
from .models import Transfer, TransferFlags

EXPIRY_CODE = "expiry"


def expiry_id(pending_id: str) -> str:
    return f"{pending_id}.x"


def expired_holds(session, now: int, limit: int) -> list[Transfer]:
    resolution = aliased(Transfer)
    return list(
        session.execute(
            select(Transfer)
            .outerjoin(resolution, resolution.pending_id == Transfer.id)
            .where(
                Transfer.flags.op("&")(int(TransferFlags.PENDING)) != 0,
                Transfer.expires_at.is_not(None),
                Transfer.expires_at <= now,
                resolution.id.is_(None),
            )
            .order_by(Transfer.expires_at)
            .limit(limit)
        ).scalars()
    )


def expire_holds(session, now: int | None = None, limit: int = 500) -> list[tuple[Transfer, object]]:
    """Void up to ``limit`` expired holds in the caller's transaction.

    Returns (hold, result) pairs; the caller commits. ``now`` (µs) lets tests move the clock.
    """
    now = db_clock_us(session) if now is None else now
    holds = expired_holds(session, now, limit)
    specs = [
        TransferSpec(
            id=expiry_id(h.id),
            debit_account_id=None,
            credit_account_id=None,
            amount=0,
            code=EXPIRY_CODE,
            pending_id=h.id,
            flags=TransferFlags.VOID_PENDING_TRANSFER,
            user_data=h.user_data,
        )
        for h in holds
    ]
    results = create_transfers(session, specs, now=now, expiry=True)
    return list(zip(holds, results, strict=True))
