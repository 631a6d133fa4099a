"""The web side of a transfer: record the request under its minted id, then announce it.

The web process never posts to the ledger. It validates, records, commits, and only then
rings the workers' doorbell, so a worker never looks for a request that is not committed.
"""

import logging
import uuid

from flask import current_app

from ..queues import TRANSFERS_QUEUE, get_queue, get_redis
from .models import RequestStatus, TransferRequest, transaction_code

log = logging.getLogger(__name__)

DOORBELL_KEY = "tuma:transfers:doorbell"
DOORBELL_TTL_SECONDS = 60


class ConflictingRequest(ValueError):
    """The id was used before for a different order."""


def mint_request_id() -> str:
    return uuid.uuid4().hex


def record_request(
    session,
    *,
    request_id: str,
    kind: str,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    fee: int = 0,
    commission: int = 0,
    payee_fee: int = 0,
    reference: str | None = None,
    tariff_version_id: int | None = None,
    pending_request_id: str | None = None,
    hold_seconds: int | None = None,
) -> TransferRequest:
    """Add the request, or return the one already recorded under this id. Caller commits."""
    wanted = TransferRequest(
        id=request_id,
        code=transaction_code(request_id),
        kind=kind,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        fee=fee,
        commission=commission,
        payee_fee=payee_fee,
        reference=reference,
        tariff_version_id=tariff_version_id,
        pending_request_id=pending_request_id,
        hold_state="held" if hold_seconds is not None else None,
        hold_seconds=hold_seconds,
        status=RequestStatus.QUEUED.value,
        attempts=0,
    )
    existing = session.get(TransferRequest, request_id)
    if existing is not None:
        if not existing.same_order(wanted):
            raise ConflictingRequest(request_id)
        return existing
    session.add(wanted)
    session.flush()
    return wanted


def announce(request_id: str | None = None, *, force: bool = False) -> bool:
    """Make sure a worker job will look at the queued requests soon. True if one was enqueued.

    At most one announcement waits in the queue at a time (the doorbell key); the job deletes
    the key before it reads, so a request committed after that read rings again.
    """
    redis = get_redis()
    if not force and not redis.set(DOORBELL_KEY, request_id or "1", nx=True, ex=DOORBELL_TTL_SECONDS):
        return False
    get_queue(TRANSFERS_QUEUE).enqueue(
        "worker.jobs.execute_transfers",
        request_id,
        job_timeout=current_app.config.get("TRANSFER_JOB_TIMEOUT", 120),
        result_ttl=60,
        failure_ttl=24 * 3600,
    )
    return True
