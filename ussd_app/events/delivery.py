"""Delivering events: claim, POST, record, a small batch at a time (the shape of
``sms/sender/``).

1. **Claim** (one committed transaction): up to ``EVENT_CLAIM_BATCH`` due deliveries
   (``pending`` and due, or ``sending`` for longer than the claim timeout: their job died),
   oldest first; each set ``sending`` with one more attempt, a claim time and a fresh token. On
   PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets jobs work side by side on rows of their own;
   SQLite serialises the claim (``BEGIN IMMEDIATE``).
2. **POST** with no database transaction open, the batch's calls side by side (a thread each):
   the event's stored JSON body, signed now (``signing.py``), through ``urls.post`` (checked and
   pinned address, no redirects, timeouts). Each delivery has ``EVENT_DELIVERY_DEADLINE_SECONDS``
   (10 s) by the wall clock, name resolution to the last byte of the answer, so one merchant's
   slow (or trickling) server delays the other deliveries of its batch by at most that.
3. **Record** (one committed transaction) each answer against its claim only: ``delivered`` on
   any 2xx; otherwise ``pending`` again at ``now + backoff`` (exponential, with jitter, capped),
   or ``failed`` once an attempt fails at or after ``give_up_at`` (three days after the event by
   default). A claim lost meanwhile is logged and left to whoever holds it.

At least once: a job killed between 2 and 3 leaves its rows ``sending``; after the claim
timeout they are POSTed again. So a receiver may see an event twice and must ignore an ``id``
it has seen (docs/api.md says so); a delivery recorded as delivered is never POSTed again
unless an operator resends it.
"""

import contextvars
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from ..database import is_postgres
from ..queues import EVENTS_DOORBELL, Bell, ring, ring_after_commit
from . import signing, urls
from .models import Delivery, DeliveryStatus, Event, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)

DOORBELL_KEY = EVENTS_DOORBELL  # the job deletes it before it reads (worker/jobs.py)


@dataclass(frozen=True)
class Claim:
    """A claimed delivery, copied out of the session so the POST touches no database."""

    id: int
    token: str
    attempt: int
    event_id: str
    event_type: str
    url: str
    secret: str = field(repr=False)  # never in a log line, even by accident
    body: str = field(repr=False)
    give_up_at: datetime


@dataclass(frozen=True)
class Result:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """How long after failed attempt ``attempt`` (1, 2, ...) the next one is made: the base
    doubled per attempt, capped, then "equal jitter" (a uniform draw from half to all of it), so
    a merchant whose endpoint comes back is not hit by every delivery at the same instant."""
    config = current_app.config
    ceiling = min(
        config["EVENT_RETRY_MAX_SECONDS"], config["EVENT_RETRY_BASE_SECONDS"] * 2 ** max(0, attempt - 1)
    )
    return timedelta(seconds=ceiling * (0.5 + 0.5 * (rng or random).random()))  # nosec B311  # timing jitter, not a secret


def claim_timeout() -> timedelta:
    config = current_app.config
    floor = config["EVENT_DELIVERY_DEADLINE_SECONDS"] + 5
    return timedelta(seconds=max(config["EVENT_CLAIM_TIMEOUT_SECONDS"], floor))


def _due(now: datetime):
    return or_(
        and_(
            Delivery.status == DeliveryStatus.PENDING.value,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        ),
        and_(Delivery.status == DeliveryStatus.SENDING.value, Delivery.claimed_at <= now - claim_timeout()),
    )


def count_due(session, now: datetime | None = None) -> int:
    return int(session.execute(select(func.count()).where(_due(now or utcnow()))).scalar_one())


def claim_batch(session, size: int, now: datetime | None = None) -> list[Claim]:
    """Claim up to ``size`` of the oldest due deliveries and commit."""
    now = now or utcnow()
    query = select(Delivery).where(_due(now)).order_by(Delivery.id).limit(size)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True, of=Delivery)
    rows = list(session.execute(query).scalars())
    if not rows:
        session.commit()
        return []
    events = {
        e.id: e
        for e in session.execute(select(Event).where(Event.id.in_({r.event_id for r in rows}))).scalars()
    }
    endpoints = {
        e.id: e
        for e in session.execute(
            select(WebhookEndpoint).where(WebhookEndpoint.id.in_({r.endpoint_id for r in rows}))
        ).scalars()
    }
    taken = []
    for row in rows:
        if row.status == DeliveryStatus.SENDING.value:
            log.warning(
                "webhook delivery %d: job stopped before recording attempt %d; again", row.id, row.attempts
            )
        row.status = DeliveryStatus.SENDING.value
        row.attempts += 1
        row.claimed_at = now
        row.claim_token = uuid.uuid4().hex
        event, endpoint = events[row.event_id], endpoints[row.endpoint_id]
        taken.append(
            Claim(
                row.id,
                row.claim_token,
                row.attempts,
                event.id,
                event.type,
                endpoint.url,
                endpoint.secret,
                event.payload,
                row.give_up_at,
            )
        )
    session.commit()
    return taken


def post(taken: Claim) -> Result:
    """POST one claimed delivery. Never raises for what the network or the receiver does."""
    config = current_app.config
    production = config.get("TUMA_ENV") == "production"
    body = taken.body.encode()
    deadline = time.monotonic() + float(config["EVENT_DELIVERY_DEADLINE_SECONDS"])
    try:
        target = urls.check(taken.url, production=production, deadline=deadline)
        answer = urls.post(
            target,
            body,
            {
                signing.HEADER: signing.signature(taken.secret, body),
                signing.EVENT_ID_HEADER: taken.event_id,
                signing.EVENT_TYPE_HEADER: taken.event_type,
            },
            connect_timeout=config["EVENT_CONNECT_TIMEOUT_SECONDS"],
            read_timeout=config["EVENT_READ_TIMEOUT_SECONDS"],
            deadline=deadline,
        )
    except urls.UnsafeURL as exc:
        return Result(False, error=f"URL refused: {exc}"[:200])
    except urls.CallFailed as exc:
        return Result(False, error=f"no answer: {exc}"[:200])
    if 200 <= answer.status < 300:
        return Result(True, answer.status)
    return Result(False, answer.status, f"HTTP {answer.status}")


def _record(session, taken: Claim, result: Result, now: datetime) -> str | None:
    """Write the answer against the claim, in the caller's transaction: the new status, or None
    when the claim was lost (another job claimed the row again after the timeout)."""
    values: dict = {
        "claim_token": None,  # nosec B105: a claim released, not a password
        "claimed_at": None,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "last_attempt_at": now,
    }
    if result.delivered:
        values.update(status=DeliveryStatus.DELIVERED.value, delivered_at=now, next_attempt_at=None)
    elif now >= taken.give_up_at:
        values.update(status=DeliveryStatus.FAILED.value, next_attempt_at=None)
    else:
        next_at = min(now + backoff(taken.attempt), taken.give_up_at)
        values.update(status=DeliveryStatus.PENDING.value, next_attempt_at=next_at)
    done = session.execute(
        update(Delivery)
        .where(
            Delivery.id == taken.id,
            Delivery.claim_token == taken.token,
            Delivery.status == DeliveryStatus.SENDING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        log.warning(
            "webhook delivery %d: claim for attempt %d lost before its answer was recorded",
            taken.id,
            taken.attempt,
        )
        return None
    return values["status"]


def deliver_due(session, limit: int, now: datetime | None = None) -> dict[str, int]:
    """POST up to ``limit`` due deliveries, ``EVENT_CLAIM_BATCH`` at a time. Counts by outcome."""
    counts = {"delivered": 0, "retry": 0, "failed": 0}
    size = max(1, min(current_app.config["EVENT_CLAIM_BATCH"], limit))
    done = 0
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="webhook-post") as pool:
        while done < limit:
            claims = claim_batch(session, min(size, limit - done), now)
            if not claims:
                break
            done += len(claims)
            app = current_app._get_current_object()

            def run(taken, app=app):
                with app.app_context():
                    return post(taken)

            futures = [pool.submit(contextvars.copy_context().run, run, taken) for taken in claims]
            results, bug = [], None
            for future in futures:
                try:
                    results.append(future.result())
                except Exception as exc:  # a bug of ours: record the others' answers, then let it out
                    results.append(None)
                    bug = bug or exc
            moment = now or utcnow()
            for taken, result in zip(claims, results, strict=True):
                if result is None:
                    continue  # stays ``sending``; claimed again after the claim timeout
                status = _record(session, taken, result, moment)
                if status is not None:
                    counts[{"pending": "retry"}.get(status, status)] += 1
                if not result.delivered:
                    log.info("webhook %s attempt %d: %s", taken.event_id, taken.attempt, result.error)
            session.commit()
            if bug is not None:
                raise bug
    return counts


def resend(session, delivery: Delivery, now: datetime | None = None) -> None:
    """An operator sends a delivered or failed event again: due now, with a fresh retry window.
    The same event id: a receiver that has it already may ignore it. No commit; the commit
    rings the job."""
    now = now or utcnow()
    delivery.status = DeliveryStatus.PENDING.value
    delivery.next_attempt_at = None
    delivery.claim_token = None
    delivery.claimed_at = None
    delivery.give_up_at = now + timedelta(seconds=current_app.config["EVENT_RETRY_FOR_SECONDS"])
    ring_after_commit(session, Bell.EVENTS)


def announce(*, force: bool = False) -> bool:
    """Make sure a delivery job looks at the deliveries soon (committed work only)."""
    return ring(Bell.EVENTS, force=force)
