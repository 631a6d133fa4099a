"""The jobs the workers run. Each is safe to run twice and lets its errors reach rq.

Jobs are small: they find the app, then call the domain (``ussd_app.payments``, the ledger).
"""

import logging

from flask import current_app, has_app_context

from ussd_app.extensions import db
from ussd_app.ledger.expiry import expire_holds
from ussd_app.payments.execute import execute_batch
from ussd_app.payments.maintenance import requeue_stale
from ussd_app.payments.submit import DOORBELL_KEY, announce
from ussd_app.queues import get_redis

log = logging.getLogger(__name__)

_app = None


def _ensure_app():
    """Jobs run inside the worker's app context; a job run elsewhere (a test, a shell) makes one."""
    global _app
    if has_app_context():
        return None
    if _app is None:
        from ussd_app import create_app

        _app = create_app()
    ctx = _app.app_context()
    ctx.push()
    return ctx


def _in_app(func):
    def wrapper(*args, **kwargs):
        ctx = _ensure_app()
        try:
            return func(*args, **kwargs)
        finally:
            if ctx is not None:
                db.session.remove()
                ctx.pop()

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_in_app
def execute_transfers(request_id: str | None = None) -> int:
    """Execute one batch of queued transfer requests. ``request_id`` is the request whose
    announcement woke this job (for the logs); the batch takes the oldest queued ones."""
    get_redis().delete(DOORBELL_KEY)
    size = current_app.config["TRANSFER_BATCH_SIZE"]
    try:
        done = execute_batch(db.session, size)
    finally:
        db.session.remove()
    if done >= size:
        announce()  # more may be waiting: let this or another worker take the next batch
    log.info("executed %d transfer requests (woken by %s)", done, request_id)
    return done


@_in_app
def maintain() -> dict:
    """Periodic: void expired holds, re-announce requests left queued too long."""
    try:
        expired = expire_holds(db.session)
        db.session.commit()
        stale = requeue_stale(db.session)
    finally:
        db.session.remove()
    if stale:
        announce(force=True)
    return {"expired": len(expired), "stale_requests": stale}
