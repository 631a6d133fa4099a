"""Sending the outbox through Africa's Talking: claim, hand over, record, a small batch at a time.

The protocol, and why:

1. **Claim** (one committed transaction): take up to ``SMS_CLAIM_BATCH`` of the oldest due rows
   (``pending`` and due, or ``sending`` for longer than the claim timeout); for each, set
   ``sending``, add one to ``attempts``, stamp ``claimed_at`` and a fresh ``claim_token``. A
   ``sending`` row with no attempt left is marked ``failed`` instead. A batch takes at most one
   row per number (its oldest due one): the calls of a batch race each other, so a person's
   messages go in successive batches and one sender hands them over in the order they were
   written (the balances in a run of receipts read in order). On PostgreSQL
   ``FOR UPDATE SKIP LOCKED`` lets several senders work side by side, each on rows of its own;
   SQLite serialises the claim (``BEGIN IMMEDIATE``).
2. **Hand over** with no database transaction open: one ``SMS.send`` per row, all the batch's
   rows at once from a small thread pool (one thread per row), each with the SDK's timeouts.
   The SDK's ``SMSService.send`` only reads the service's settings and makes a fresh
   ``requests.post`` (a session of its own) per call, so the threads share one client.
3. **Record** (one committed transaction) each answer against its claim only (``claim_token``
   matches and the row is still ``sending``): ``sent`` with Africa's Talking's messageId, status
   and cost; ``pending`` with a backoff for a transient failure; ``failed`` with the reason for
   a permanent one or when the attempts are used up. A row whose claim was lost is logged and
   left to the sender that holds it now.

So a batch costs two commits and about one HTTP call's time, however many rows it has.

A failure that is about the gateway or our account rather than one number (network error,
non-2xx answer, 405 InsufficientBalance, 402 InvalidSenderId) pauses the job: the rows of that
batch, already handed over side by side, get their own answers recorded; no further batch is
claimed, the rows not yet claimed stay due, untouched, and the periodic job wakes the sender
again, instead of one job spending every row's attempt (and the worker's time) on a gateway
that is down. At most one batch's attempts are spent on a dead gateway per job.

So a row is handed to the gateway at most once per attempt, and a row recorded as sent is
never handed over again. A sender killed between 2 and 3 (or whose record commit fails)
leaves its batch ``sending``; after ``SMS_CLAIM_TIMEOUT_SECONDS`` (kept above the SDK's
timeouts, so a live sender has always given up on its calls by then) those rows are claimed
and sent again. That window, one HTTP call
wide for each row, is the one place a message can reach a phone twice: Africa's Talking's SMS
API takes no idempotency key, and losing a receipt is worse than repeating one. Because a
batch's calls run side by side, the whole batch is in that window for one HTTP call's time
(not one call per row in turn), and a batch is over, recorded, well before its claims could
time out; ``SMS_CLAIM_BATCH`` bounds how many rows one dead sender can leave to be repeated.
"""

import contextvars
import enum
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from africastalking.Service import AfricasTalkingException
from flask import current_app
from sqlalchemy import and_, func, or_, select, update

from ..africas_talking import SmsClient
from ..clock import utcnow
from ..database import is_postgres
from ..queues import SMS_DOORBELL, Bell, ring
from .outbox import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)

DOORBELL_KEY = SMS_DOORBELL  # the job deletes it before it reads (worker/jobs.py)

# Africa's Talking's per-recipient statusCode.
ACCEPTED = {100: "Processed", 101: "Sent", 102: "Queued"}
# Refusals that no retry can fix: the number or the person is the problem.
PERMANENT = {
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    406: "UserInBlacklist",
    409: "DoNotDisturbRejection",
}
# Retried, and no use trying other numbers until they are fixed.
ACCOUNT_WIDE = {402: "InvalidSenderId", 405: "InsufficientBalance"}
# Everything else is retried with backoff until SMS_MAX_ATTEMPTS: 405 InsufficientBalance (our
# account gets topped up), 500/501/502 (their side), 401 RiskHold, 402 InvalidSenderId
# (an operator fixes the setting), 407 CouldNotRoute, and codes we do not know.


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Answer:
    """What one hand-over came to."""

    outcome: Outcome
    reason: str | None = None
    message_id: str | None = None
    status_code: int | None = None
    status: str | None = None
    cost: str | None = None
    pause: bool = False  # the gateway or our account is the problem: stop this batch


@dataclass(frozen=True)
class Claim:
    """A claimed row, copied out of the session so the hand-over touches no database."""

    id: int
    phone: str
    body: str
    attempt: int
    token: str


def hand_over(client: SmsClient, phone: str, body: str) -> Answer:
    """One ``SMS.send`` and what it means. Never raises for anything the gateway or the
    network does; only a bug in our code gets through (and reaches rq)."""
    try:
        answer = client.send(phone, body)
    except ValueError as exc:  # the SDK refused the number before any request
        return Answer(Outcome.FAILED, reason=f"invalid number: {exc}")
    except requests.RequestException as exc:  # connection refused, reset, timed out
        return Answer(Outcome.RETRY, reason=f"network: {type(exc).__name__}", pause=True)
    except AfricasTalkingException as exc:  # a non-2xx answer; the SDK keeps only the body
        return Answer(Outcome.RETRY, reason=f"gateway error: {str(exc)[:80]}", pause=True)
    return read_answer(answer)


def read_answer(answer) -> Answer:
    """Africa's Talking's 2xx answer for one recipient."""
    try:
        data = answer["SMSMessageData"]
        recipients = data.get("Recipients") or []
    except (TypeError, KeyError, AttributeError):
        return Answer(Outcome.RETRY, reason=f"unexpected answer: {str(answer)[:80]}", pause=True)
    if not recipients:
        # e.g. {"Message": "InvalidSenderId", "Recipients": []}: nothing was sent.
        return Answer(Outcome.RETRY, reason=f"not sent: {str(data.get('Message'))[:80]}", pause=True)
    first = recipients[0]
    try:
        code = int(first.get("statusCode"))
    except (TypeError, ValueError):
        return Answer(Outcome.RETRY, reason=f"unexpected answer: {str(first)[:80]}")
    status = str(first.get("status") or "")[:40]
    fields = {"status_code": code, "status": status, "cost": str(first.get("cost") or "")[:24] or None}
    if code in ACCEPTED:
        return Answer(Outcome.SENT, message_id=str(first.get("messageId") or "")[:64] or None, **fields)
    if code in PERMANENT:
        return Answer(Outcome.FAILED, reason=f"{code} {status or PERMANENT[code]}", **fields)
    return Answer(Outcome.RETRY, reason=f"{code} {status}".strip(), pause=code in ACCOUNT_WIDE, **fields)


def backoff(attempt: int) -> timedelta:
    config = current_app.config
    base = config["SMS_RETRY_BASE_SECONDS"]
    return timedelta(seconds=min(config["SMS_RETRY_MAX_SECONDS"], base * 2 ** max(0, attempt - 1)))


def claim_timeout() -> timedelta:
    config = current_app.config
    floor = config["SMS_CONNECT_TIMEOUT_SECONDS"] + config["SMS_READ_TIMEOUT_SECONDS"] + 5
    return timedelta(seconds=max(config["SMS_CLAIM_TIMEOUT_SECONDS"], floor))


def _due(now: datetime):
    return or_(
        and_(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        ),
        and_(
            OutboxMessage.status == OutboxStatus.SENDING.value,
            OutboxMessage.claimed_at <= now - claim_timeout(),
        ),
    )


def count_due(session, now: datetime | None = None) -> int:
    return int(session.execute(select(func.count()).where(_due(now or utcnow()))).scalar_one())


# Due rows read per free place in a batch, to find rows for numbers not yet in it.
CLAIM_WINDOW = 4


def claim_batch(session, size: int, now: datetime | None = None) -> list[Claim]:
    """Claim up to ``size`` of the oldest due rows, at most one per number, in one transaction
    and commit. Rows whose last sender died on their last attempt are marked failed on the way
    (they fill no place)."""
    max_attempts = current_app.config["SMS_MAX_ATTEMPTS"]
    now = now or utcnow()
    taken: list[Claim] = []
    phones: set[str] = set()
    while len(taken) < size:
        window = (size - len(taken)) * CLAIM_WINDOW
        query = select(OutboxMessage).where(_due(now)).order_by(OutboxMessage.id).limit(window)
        if phones:
            query = query.where(OutboxMessage.phone.not_in(phones))
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True)
        rows = list(session.execute(query).scalars())
        for row in rows:
            if len(taken) == size:
                break
            if row.phone in phones:
                continue  # the number's older message goes first; this one, in a later batch
            if row.status == OutboxStatus.SENDING.value and row.attempts >= max_attempts:
                # Its last sender died before recording; there is no attempt left to spend.
                row.status = OutboxStatus.FAILED.value
                row.failure_reason = f"no answer recorded after {row.attempts} attempts"
                row.claim_token = None
                continue
            if row.status == OutboxStatus.SENDING.value:
                log.warning(
                    "sms %d: sender stopped before recording attempt %d; sending again", row.id, row.attempts
                )
            row.status = OutboxStatus.SENDING.value
            row.attempts += 1
            row.claimed_at = now
            row.claim_token = uuid.uuid4().hex
            phones.add(row.phone)
            taken.append(Claim(row.id, row.phone, row.body, row.attempts, row.claim_token))
        if len(rows) < window:
            break  # nothing more is due
        # Look further, past the numbers already in the batch (failed rows are no longer due).
        session.flush()
    session.commit()
    return taken


def claim(session, now: datetime | None = None) -> Claim | None:
    """Claim the oldest due row and commit. None when nothing is due."""
    taken = claim_batch(session, 1, now)
    return taken[0] if taken else None


def _record(session, taken: Claim, answer: Answer, now: datetime) -> bool:
    """Write the answer against the claim, in the caller's transaction. False when the claim was
    lost (another sender claimed the row again after the timeout): that sender records its own."""
    values: dict = {"claim_token": None, "claimed_at": None}  # nosec B105  # clears a claim, no secret
    if answer.status_code is not None:
        values.update(gateway_status_code=answer.status_code, gateway_status=answer.status)
    if answer.outcome == Outcome.SENT:
        values.update(
            status=OutboxStatus.SENT.value,
            gateway_message_id=answer.message_id,
            cost=answer.cost,
            sent_at=now,
            failure_reason=None,
            next_attempt_at=None,
        )
    elif answer.outcome == Outcome.FAILED or taken.attempt >= current_app.config["SMS_MAX_ATTEMPTS"]:
        values.update(status=OutboxStatus.FAILED.value, failure_reason=(answer.reason or "")[:120])
    else:
        values.update(
            status=OutboxStatus.PENDING.value,
            failure_reason=(answer.reason or "")[:120],  # the last error, for the operator
            next_attempt_at=now + backoff(taken.attempt),
        )
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == taken.id,
            OutboxMessage.claim_token == taken.token,
            OutboxMessage.status == OutboxStatus.SENDING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        log.warning(
            "sms %d: claim for attempt %d was lost before its answer was recorded", taken.id, taken.attempt
        )
        return False
    return True


def record(session, taken: Claim, answer: Answer, now: datetime | None = None) -> bool:
    """Write one answer against its claim and commit. False when the claim was lost."""
    recorded = _record(session, taken, answer, now or utcnow())
    session.commit()
    return recorded


def record_batch(session, answered: list[tuple[Claim, Answer]], now: datetime | None = None) -> int:
    """Write each answer against its claim, all in one transaction, and commit. How many were
    recorded; a lost claim is logged and skipped, as ``record`` does."""
    now = now or utcnow()
    recorded = sum(_record(session, taken, answer, now) for taken, answer in answered)
    session.commit()
    return recorded


def hand_over_batch(pool: ThreadPoolExecutor, client: SmsClient, claims: list[Claim]) -> list:
    """Hand every claimed row over at once, one pool thread each (the pool has a thread per
    row of a batch), and wait for all. Each row's ``Answer``, or the exception a bug in our code
    raised for it; nothing here touches the database. Each thread runs in a copy of the
    caller's context, so log lines keep their request id."""
    futures = [
        pool.submit(contextvars.copy_context().run, hand_over, client, taken.phone, taken.body)
        for taken in claims
    ]
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except Exception as exc:  # a bug: record the others' answers first, then let it out
            results.append(exc)
    return results


def send_due(session, client: SmsClient, limit: int, now: datetime | None = None) -> dict[str, int]:
    """Hand over up to ``limit`` due rows, ``SMS_CLAIM_BATCH`` claims at a time. Counts by
    outcome, and ``paused`` = 1 when the job stopped early because the gateway or the account
    failed."""
    counts = {o.value: 0 for o in Outcome} | {"paused": 0}
    size = min(max(1, current_app.config["SMS_CLAIM_BATCH"]), limit)
    if size < 1:
        return counts
    handed = 0
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="sms-hand-over") as pool:
        while handed < limit:
            claims = claim_batch(session, min(size, limit - handed), now)
            if not claims:
                break
            handed += len(claims)
            results = hand_over_batch(pool, client, claims)
            answered = [(t, a) for t, a in zip(claims, results, strict=True) if isinstance(a, Answer)]
            for taken, answer in answered:
                if answer.outcome != Outcome.SENT:
                    log.info(
                        "sms %d attempt %d: %s (%s)", taken.id, taken.attempt, answer.outcome, answer.reason
                    )
                counts[answer.outcome.value] += 1
            record_batch(session, answered, now)
            bug = next((r for r in results if not isinstance(r, Answer)), None)
            if bug is not None:
                raise bug  # its row stays ``sending`` and is claimed again after the timeout
            if any(answer.pause for _, answer in answered):
                counts["paused"] = 1
                break
    return counts


def announce(*, force: bool = False) -> bool:
    """Make sure a send job will look at the outbox soon. True if one was enqueued.

    For committed work only: a commit that wrote an outbox row rings by itself (``add_sms``).
    At most one announcement waits at a time (the doorbell key); the job deletes the key
    before it reads the outbox, so rows committed after that read ring again.
    """
    return ring(Bell.SMS, force=force)
