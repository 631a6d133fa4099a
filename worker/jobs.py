"""The jobs the workers run. Each is safe to run twice and lets its errors reach rq.

Jobs are small: they find the app, then call the domain (``ussd_app.payments``, the ledger).
"""

import contextlib
import logging

from flask import current_app, has_app_context
from sqlalchemy.exc import DBAPIError, IntegrityError

from ussd_app.africas_talking import get_client
from ussd_app.api.idempotency import purge as purge_idempotency_keys
from ussd_app.events import delivery
from ussd_app.extensions import db
from ussd_app.ledger.expiry import expire_holds
from ussd_app.ops.jobs import observe_in_place, observe_job
from ussd_app.payments.execute import RETRIES, execute_queued
from ussd_app.payments.holds import post_to_registered, resolve_due
from ussd_app.payments.maintenance import requeue_stale
from ussd_app.payments.models import RequestKind, RequestStatus
from ussd_app.payments.submit import DOORBELL_KEY, announce
from ussd_app.queues import Bell, get_redis, take_waiting
from ussd_app.sms import sender

log = logging.getLogger(__name__)

ACCEPTED = RequestStatus.ACCEPTED.value

_app = None


def use_app(app) -> None:
    """The app jobs run in (``python -m worker`` sets it; otherwise one is made on first use)."""
    global _app
    _app = app


def _in_app(func):
    """Run the job in an app context of its own, with a database session that ends with it
    (no identity map or transaction carried from one job to the next). Called where an app
    context is already active (a test, a shell), the job runs in that one and leaves it be."""
    func = observe_job(func)  # metrics and request-id tracing (ussd_app/ops)

    def wrapper(*args, **kwargs):
        if has_app_context():
            return func(*args, **kwargs)
        if _app is None:
            from ussd_app import create_app

            use_app(create_app())
        with _app.app_context():
            try:
                return func(*args, **kwargs)
            finally:
                db.session.remove()

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
    executed = execute_queued(db.session, size)
    done = len(executed)
    after_batch(executed)
    # The batch's receipts and airtime holds rang their jobs when it committed (queues.py).
    if done >= size:
        # More may be waiting: queue the next batch now, whether or not the doorbell is rung,
        # so while there is a backlog every worker can take a batch of its own.
        announce(request_id, force=True)
    log.info("executed %d transfer requests (woken by %s)", done, request_id)
    if done and _receipts_inline:
        send_receipts_now()
    return done


# Whether the transfer job sends its batch's receipts itself (``send_receipts_now``): only in a
# worker that takes the SMS queue in turn with the transfers queue (``python -m worker`` sets
# it), never in one kept for transfers alone.
_receipts_inline = False


def send_receipts_inline(on: bool) -> None:
    global _receipts_inline
    _receipts_inline = on


def send_receipts_now() -> dict | None:
    """Send the batch's receipts in this job, in place of the SMS job its commit rang (or one
    already waiting), when that job is still queued: it is taken off the queue first
    (``queues.take_waiting``: of several workers one gets it), then this does what it would
    have, for up to SMS_CLAIM_BATCH rows (more due ring a job of their own). The worker takes
    its queues in turn, so after a transfer job the SMS job ran next anyway: this saves rq's
    handling of a job (two dozen Redis round trips, and the wait for a core between them),
    not a place in the line. None when no SMS job was waiting (another worker has it), or when
    the send failed (an SMS job is rung again; the failure is logged and counted as send_sms's)."""
    taken = take_waiting(Bell.SMS)
    if taken is None:
        return None
    try:  # observed (metrics, trace id) as the SMS job it replaces
        return observe_in_place("send_sms", taken, _send_due, current_app.config["SMS_CLAIM_BATCH"])
    except BaseException as exc:
        # The job taken off the queue is not done: ring for another (its rows claimed by now
        # wait for their claim timeout, as that job's would have). Counted as that job's
        # failure (observe_in_place); the batch committed, so its own job does not fail with
        # it (a failed execute_transfers says the money did not move). A signal to stop the
        # worker still stops it.
        with contextlib.suppress(Exception):
            db.session.rollback()  # may fail too, when the database is what failed
        with contextlib.suppress(Exception):
            sender.announce(force=True)
        if not isinstance(exc, Exception):
            raise
        log.exception("sms: the batch's receipts were not sent in its job; an SMS job is rung for them")
        return None


def after_batch(executed: list) -> None:
    """What follows a batch, for the requests it executed: only the steps that have something
    to do (each is a query and a commit; a batch of ordinary sends needs none). The
    maintenance job runs all of them, for whatever a batch's job left (it died after its
    commit)."""
    from ussd_app.payments import allowances, payment_requests, standing_orders

    ids = [r.id for r in executed]
    if payment_requests.pays_any(ids):
        settle_payment_requests()  # payment requests paid by this batch (or refused)
    if standing_orders.runs_any(ids):
        settle_standing_orders()  # standing orders' runs paid by this batch (or refused)
    if allowances.moved_by_any({r.kind for r in executed}):
        after_allowance_batch()  # allowances' holds and settlements this batch executed
    if any(r.kind == RequestKind.SEND_UNREGISTERED.value and r.status == ACCEPTED for r in executed):
        post_held_sends()  # a send held for a number that registered while it was queued


@_in_app
def send_sms() -> dict:
    """Hand up to SMS_BATCH_SIZE due outbox rows to Africa's Talking (``ussd_app.sms.sender``).

    Every HTTP call happens between two committed transactions, never inside one. Safe to run
    twice, or side by side: each row is claimed before it is sent."""
    return _send_due(current_app.config["SMS_BATCH_SIZE"])


def _send_due(size: int) -> dict:
    get_redis().delete(sender.DOORBELL_KEY)
    counts = sender.send_due(db.session, get_client(), size)
    if not counts["paused"] and counts["sent"] + counts["retry"] + counts["failed"] >= size:
        sender.announce()  # more may be due (after a pause, the periodic job rings instead)
    log.info("sms: %s", counts)
    return counts


@_in_app
def deliver_events() -> dict:
    """POST up to EVENT_JOB_LIMIT due webhook deliveries to merchants' systems
    (``ussd_app.events.delivery``): every call between two committed transactions, never
    inside one. Safe to run twice, or side by side: each delivery is claimed before it is sent."""
    get_redis().delete(delivery.DOORBELL_KEY)
    limit = current_app.config["EVENT_JOB_LIMIT"]
    counts = delivery.deliver_due(db.session, limit)
    if sum(counts.values()) >= limit:
        delivery.announce()  # more may be due
    log.info("webhooks: %s", counts)
    return counts


@_in_app
def maintain() -> dict:
    """Periodic: void expired holds, re-announce requests left queued too long, write causes'
    daily tip digests, wake the SMS
    sender and the webhook deliverer for retries that have come due (and rows whose sender
    died, and rings that were lost), and forget the API's Idempotency-Keys once they are past
    their keeping time."""
    expired = expire_holds(db.session)
    db.session.commit()
    # Escrow holds that fell due (void unregistered sends, post protected purchases), with
    # their receipts, in one transaction; safe side by side (payments/holds.py).
    resolved = resolve_due_holds()
    # Sends held in suspense for numbers that are customers by now (a batch's job died after
    # its commit, or the customer was made outside the registration menus).
    resolved += post_held_sends()
    requests_settled = settle_payment_requests(expire=True)  # payment requests: settle, lapse
    # Standing orders: settle runs the batches finished, then record the runs due now.
    orders_run = settle_standing_orders() + len(run_standing_orders())
    # Allowances: periods that ended settle (one posting each), paused ones try again, asks
    # lapse; and what a batch left behind (its job died after its commit) is caught up.
    allowances_moved = settle_allowances() + after_allowance_batch()
    resolved += expire_agent_withdrawals()
    resolved += sum(buy_airtime().values())
    digests = write_tip_digests()  # each cause's SMS of yesterday's tips, once a day
    stale = requeue_stale(db.session)
    sms_due = sender.count_due(db.session)
    events_due = delivery.count_due(db.session)
    # The merchant API's Idempotency-Keys past their keeping time (at least 24 hours).
    keys_purged = purge_idempotency_keys(db.session)
    db.session.commit()
    # What this job wrote rang at its commits (queues.py); these are the safety net: requests
    # whose announcement was lost, SMS retries come due (and rows whose sender died).
    if stale:
        announce(force=True)
    if sms_due:
        sender.announce()
    if events_due:  # webhook retries come due, and rings that were lost
        delivery.announce()
    return {
        "expired": len(expired),
        "holds_resolved": resolved,
        "stale_requests": stale,
        "sms_due": sms_due,
        "events_due": events_due,
        "payment_requests": requests_settled,
        "standing_orders": orders_run,
        "allowances": allowances_moved,
        "idempotency_keys_purged": keys_purged,
        "tip_digests": digests,
    }


def resolve_due_holds(now: int | None = None) -> int:
    """Resolve the escrow holds that have fallen due; committed. ``now``: µs, for tests."""
    return _committed_with_retries(lambda: len(resolve_due(db.session, now=now)), "hold expiry")


def post_held_sends() -> int:
    """Post the sends held in suspense for numbers that are customers' by now; committed
    (payments/holds.py: ``post_to_registered``)."""
    return _committed_with_retries(lambda: len(post_to_registered(db.session)), "held sends")


def _committed_with_retries(work, what: str) -> int:
    """Run ``work()`` (a count of what it did) and commit, retried like a batch when two jobs
    collide (compare-and-set inside, so the loser re-reads and finds nothing left to do)."""
    for attempt in range(1, RETRIES + 1):
        try:
            done = work()
            db.session.commit()
            return done
        except (IntegrityError, DBAPIError) as exc:
            db.session.rollback()
            if attempt == RETRIES:
                raise
            log.warning("%s conflict, retrying (attempt %d): %s", what, attempt, type(exc.orig).__name__)
    return 0


def write_tip_digests(now=None) -> int:
    """Each cause's digest SMS of the day before's tips, once the digest hour has come;
    committed (payments/tips.py: once per cause and day, by its row's key, even side by side).
    A Redis mark says the day is done, so the other runs of the day skip the query; a lost mark
    only costs one query more. ``now``: naive UTC, for tests."""
    from ussd_app.clock import utcnow
    from ussd_app.payments import tips

    now = now or utcnow()  # one reading: the day marked done is the day written, across midnight
    day = tips.digest_due(now)
    if day is None:
        return 0
    mark = f"tuma:tips:digested:{day.isoformat()}"
    if get_redis().exists(mark):
        return 0
    written = _committed_with_retries(lambda: tips.write_digests(db.session, now=now), "tip digest")
    get_redis().set(mark, "1", ex=2 * 86_400)
    return written


def settle_payment_requests(*, expire: bool = False, now=None) -> int:
    """Settle payment requests whose transfer the worker finished and, with ``expire``, lapse
    the ones past due; committed. ``now``: naive UTC, for tests."""
    from ussd_app.payments import payment_requests

    def work() -> int:
        done = payment_requests.settle(db.session)
        if expire:
            done += payment_requests.expire(db.session, now=now)
        return done

    return _committed_with_retries(work, "payment request")


def settle_standing_orders(now=None) -> int:
    """Settle standing orders' runs whose transfer the worker finished (paid, or refused: tried
    again later that day, or skipped, the payer told); committed. ``now``: naive UTC."""
    from ussd_app.payments import standing_orders

    return _committed_with_retries(lambda: standing_orders.settle(db.session, now=now), "standing order")


def run_standing_orders(now=None) -> list[str]:
    """Record the standing orders' runs due at ``now`` (naive UTC; now when None), committed;
    the ids recorded. ``standing_orders.run_due`` is the function ``flask --app wsgi
    standing-orders run-due`` calls too. Safe twice: the run ids derive from the order and the
    date (payments/standing_orders.py)."""
    from ussd_app.payments import standing_orders

    recorded: list[str] = []

    def work() -> int:
        recorded[:] = [r.id for r in standing_orders.run_due(db.session, now=now)]
        return len(recorded)

    _committed_with_retries(work, "standing order run")
    return recorded


def after_allowance_batch() -> int:
    """Allowances after a batch: holds accepted -> active, refused -> paused (the customer told),
    settlements posted -> the customer's one SMS and the next period's hold; committed."""
    from ussd_app.payments import allowances

    return _committed_with_retries(lambda: allowances.after_batch(db.session), "allowance batch")


def settle_allowances(now=None) -> int:
    """Settle the allowances whose period ended (or that expired); committed. The settlements'
    postings ring the transfers queue; ``after_allowance_batch`` follows their batch. ``now``:
    naive UTC, for tests."""
    from ussd_app.payments import allowances

    return _committed_with_retries(lambda: allowances.settle_due(db.session, now=now), "allowance settlement")


def expire_agent_withdrawals(now=None) -> int:
    """Expire withdrawals agents started that their customers left unapproved, telling each
    agent; committed (compare-and-set, payments/agent_withdrawals.py). ``now``: naive UTC."""
    from ussd_app.payments.agent_withdrawals import expire_due

    return _committed_with_retries(lambda: expire_due(db.session, now=now), "withdrawal expiry")


@_in_app
def buy_airtime() -> dict:
    """Ask Africa's Talking for the airtime held purchases wait for; post or void each
    (payments/airtime.py). Safe to run twice, or side by side."""
    from ussd_app.africas_talking import send_airtime
    from ussd_app.payments import airtime

    config = current_app.config
    # Posting or voiding a hold writes its receipts, which ring the sender at each commit.
    return airtime.buy_waiting(
        db.session, lambda phone, amount, key: send_airtime(config, phone, amount, key)
    )
