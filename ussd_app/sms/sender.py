"""Sending the outbox through Africa's Talking: claim, hand over, record, in lanes, one per number.

The protocol, and why:

1. **Claim** (one committed transaction): for up to ``SMS_CLAIM_BATCH`` numbers with due rows
   (in the order of their oldest due row), take that number's *lane*: its unfinished rows
   (``pending`` or ``sending``) in id order, up to ``SMS_LANE_DEPTH`` of them, while each is due
   (``pending`` and due, or ``sending`` for longer than the claim timeout). A lane stops at the
   first row that is not: a row in its retry backoff holds back every later message to its
   number, and a number one of whose rows another sender holds (``sending``, not timed out) gets
   no lane at all. For each row taken: ``sending``, one more ``attempts``, ``claimed_at`` and a
   fresh ``claim_token``. A ``sending`` row with no attempt left is marked ``failed`` instead
   (final, so the lane goes on past it). On PostgreSQL the lane's rows are locked ``FOR UPDATE
   SKIP LOCKED`` and a lane is only the locked prefix of its number's rows: two senders that
   pick the same number at once cannot both take it (the second sees the first's rows locked,
   or, once committed, ``sending``). SQLite serialises the claim (``BEGIN IMMEDIATE``).
2. **Hand over** with no database transaction open: the lanes side by side, one thread each;
   within a lane one ``SMS.send`` after another, each only once the one before was answered
   (accepted, or refused for good). So a number's messages reach Africa's Talking in the order
   they were written (the balances in a run of receipts read in order), a merchant paid 5,000
   times gets them at the gateway's pace instead of one per claim, and a busy number fills
   one lane and holds nobody else's receipts back: the job claims new lanes beside those still
   running (when half the lanes are free and more may be due, and every ``CLAIM_POLL_SECONDS``
   while one runs). More may be due after a claim that took every lane it asked for, after a
   lane as deep as allowed ends (its number may have more) and after rows are handed back; a
   claim that found fewer lanes than it asked for saw every due number, and rows written after
   it ring the doorbell for a job of their own, so ordinary receipts cost one claim a job.
   A lane as deep as allowed is **extended** before it runs dry (``extend_lane``: when it has
   a quarter of ``SMS_LANE_DEPTH``, at most ``SMS_CLAIM_BATCH``, rows left to hand over, its
   number's next due rows after its last are claimed, on the same terms as a claim, and added
   to it): a busy till's lane goes on at the gateway's pace instead of stopping every
   ``SMS_LANE_DEPTH`` rows while its number is claimed again. A lane holds at most
   ``SMS_LANE_DEPTH`` rows not yet handed over; rows claimed for a lane that has meanwhile
   ended or stopped go back (``release``'s terms: pending, their attempt undone). A lane is not
   extended while a row of its number with a lower id than its last is ``pending`` (an
   operator's retry of an older receipt, a row committed late, or one in its backoff after
   another sender's transient failure): it ends with what it holds, and its number is claimed
   again from that row, which goes next (or holds the later ones back in its backoff).
   While its lanes run, the job **renews** their claims (``renew``: ``claimed_at`` moved on
   where the claim token still holds) every half of what the claim timeout leaves beyond the
   SDK's timeouts; a lane whose claims were not all renewed is not held any longer.
   A lane stops early, handing back (``release``) its rows not yet
   handed over, with their attempt undone: at a transient failure (the number's next messages
   must wait behind the one that failed, which is retried with backoff), when the job pauses,
   or when less than the SDK's timeouts is left of its hold (claimed or last renewed, plus the
   claim timeout). The SDK's ``SMSService.send`` only reads the
   service's settings, so the threads share one client; each lane's calls go over one
   kept-alive connection of its own (``SmsClient.kept_alive``, ``africas_talking.py``), handed
   on to the job's next lane when it ends and closed once the job's lanes are done.
3. **Record** (committed transactions, in the job's own thread, while the lanes go on) each
   answer against its claim only (``claim_token`` matches and the row is still ``sending``):
   ``sent`` with Africa's Talking's messageId, status and cost; ``pending`` with a backoff for a
   transient failure; ``failed`` with the reason for a permanent one or when the attempts are
   used up. A row whose claim was lost is logged and left to the sender that holds it now.
   Answers are recorded in groups (what arrives within ``GATHER_SECONDS`` of the first, or
   while the last group was being committed), so a lane's calls and the commits overlap. On
   PostgreSQL the job's claims, records, releases and renewals go over one connection held for
   the job (not one checked out, and pinged, per commit); a transaction that finds it lost is
   done again on a new one (at once, then while the database takes no connections, for up to
   the claim timeout), which each of them allows (``_again_if_lost``).

A failure that is about the gateway or our account rather than one number (network error,
non-2xx answer such as a 429 rate limit, 405 InsufficientBalance, 402 InvalidSenderId) pauses
the job: every lane stops after the call it has in flight, each answer is recorded, the rows
not yet handed over are released (not lost, no attempt spent) and no lane is claimed again;
the periodic job wakes the sender later, instead of one job spending every row's attempt (and
the worker's time) on a gateway that is down. At most one call per lane is spent on a dead
gateway per job: at least the first lane's, and how many more depends on how many lanes' threads
called before its answer came. Lanes are claimed oldest row first, so the rows whose calls failed
lead the next job's lanes again: while the gateway stays down it is the oldest rows' attempts
that are spent, and one of them may spend one each job until its ``SMS_MAX_ATTEMPTS`` run out.

So a row is handed to the gateway at most once per attempt, and a row recorded as sent is
never handed over again. A lane hands a row over only while it holds one of
``SMS_CLAIM_BATCH`` places, each given back when that row's answer is committed: at most
``SMS_CLAIM_BATCH`` rows of a sender are ever handed over and not yet recorded, as many as one
batch of side-by-side calls before lanes. A sender killed between 2 and 3 (or whose record
commit fails) leaves its lanes ``sending`` and renews them no more; once
``SMS_CLAIM_TIMEOUT_SECONDS`` (20; kept above the SDK's timeouts plus 5 s) pass since their last
claim or renewal, those rows are claimed and sent again, in order. A live sender has always
given up on its calls by then: a lane hands nothing over once less than the SDK's timeouts are
left of its hold, and its hold only moves on with a renewal that found every one of its claims
still its own (a renewal's time is read before its statement, so the sender's view of its hold
is never later than the database's). Those handed over but unrecorded are the one place a message
can reach a phone twice: Africa's Talking's SMS API takes no idempotency key, and losing a
receipt is worse than repeating one; the rest of a dead sender's lanes were never handed over
and go once. ``SMS_CLAIM_BATCH`` bounds how many rows one dead sender can leave to be repeated,
each in that window for about one HTTP call and one commit. The price of lanes is in the delay,
not the count: a dead sender's lanes (up to ``SMS_BATCH_SIZE`` rows, the job's limit) wait for
the claim timeout before anyone sends them, where a batch left at most ``SMS_CLAIM_BATCH``;
renewal is what lets that timeout be 20 s, not a minute (it needs only to outlast the SDK's
timeouts, not a lane's whole run).
"""

import contextlib
import contextvars
import enum
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from africastalking.Service import AfricasTalkingException
from flask import current_app
from sqlalchemy import and_, bindparam, func, literal_column, or_, select, text, union_all, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..africas_talking import SmsClient
from ..clock import utcnow
from ..database import among, is_postgres, update_rows
from ..queues import SMS_DOORBELL, Bell, ring
from . import outbox
from .outbox import UNFINISHED_WHERE, OutboxMessage, OutboxStatus

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


def _status_is(status: OutboxStatus):
    """``status = '<status>'`` with the value written into the statement, not bound: the
    partial indexes on ``status`` (``ix_outbox_messages_pending``, ``_sending``, ``_unfinished``)
    are usable only where the planner sees the value. PostgreSQL's generic plan of a prepared
    statement (psycopg prepares a statement from its fifth execution on a connection, and the
    server may then plan it once for any parameters) sees ``status = $1``: for the due rows that
    plan is a walk of the primary key from the oldest row ever written, through every sent one
    (77 ms, 9,900 buffers at 300,000 sent rows, against 0.3 ms and 77 buffers through the
    partial indexes). SQLite never matches a bound parameter to a partial index's condition."""
    return OutboxMessage.status == literal_column(f"'{status.value}'")


def _due(now: datetime):
    return or_(
        and_(
            _status_is(OutboxStatus.PENDING),
            or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now),
        ),
        and_(
            _status_is(OutboxStatus.SENDING),
            OutboxMessage.claimed_at <= now - claim_timeout(),
        ),
    )


def count_due(session, now: datetime | None = None) -> int:
    return int(session.execute(select(func.count()).where(_due(now or utcnow()))).scalar_one())


# Due rows read per free lane, to find numbers not yet seen; and how many such reads a claim
# makes before it settles for fewer lanes (numbers held back by a retry fill no lane).
CLAIM_WINDOW = 4
CLAIM_LOOKS = 4

_UNFINISHED = (OutboxStatus.PENDING.value, OutboxStatus.SENDING.value)


# The statements of ``_due_query``, built once each (by window, and whether numbers are skipped):
# SQLAlchemy then finds the compiled form by the statement's memoized cache key, where a
# statement built anew at each claim was keyed again from its parts.
_due_queries: dict[tuple[int, bool], object] = {}


def _due_query(window: int, skipping: bool):
    """The first ``window`` due rows' numbers, in id order (``now``, ``timed_out`` and, when
    ``skipping``, the numbers to leave out, ``seen``, bound). The due rows are the pending ones
    past their backoff and the sending ones past their claim's timeout: one ordered, limited
    read of each (through ix_outbox_messages_pending, in id order, and
    ix_outbox_messages_sending), then the first ``window`` of the two. One read with an OR of
    the two found every due row (a bitmap scan of both indexes, then a sort): a till with
    1,000 receipts waiting had all of them read by every claim (1,140 buffers, 5 ms)."""
    query = _due_queries.get((window, skipping))
    if query is not None:
        return query
    table = OutboxMessage.__table__
    arms = [
        select(table.c.id, table.c.phone).where(
            _status_is(OutboxStatus.PENDING),
            or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= bindparam("now")),
        ),
        select(table.c.id, table.c.phone).where(
            _status_is(OutboxStatus.SENDING), table.c.claimed_at <= bindparam("timed_out")
        ),
    ]
    if skipping:
        arms = [arm.where(table.c.phone.not_in(bindparam("seen", expanding=True))) for arm in arms]
    limited = (arm.order_by(table.c.id).limit(window).subquery() for arm in arms)
    due = union_all(*(select(arm.c.id, arm.c.phone) for arm in limited)).subquery()
    query = _due_queries[(window, skipping)] = select(due.c.phone).order_by(due.c.id).limit(window)
    return query


def _due_numbers(session, want: int, skip: set[str], now: datetime) -> tuple[list[str], bool]:
    """Up to ``want`` numbers with a due row, not in ``skip``, in the order of their oldest
    due row: the order in which they were promised something; and whether they are all of
    them (the read came short of its window: every due row of a number not in ``skip`` was
    read, so no other such number is due)."""
    found: list[str] = []
    seen = set(skip)
    window = want * CLAIM_WINDOW
    query = _due_query(window, bool(seen))
    params = {"now": now, "timed_out": now - claim_timeout()} | ({"seen": list(seen)} if seen else {})
    read = 0
    for phone in session.execute(query, params).scalars():
        read += 1
        if phone not in seen:
            seen.add(phone)
            found.append(phone)
            if len(found) == want:
                return found, False
    return found, read < window


# Numbers read per statement: SQLite takes at most 500 terms in a compound SELECT
# (SQLITE_MAX_COMPOUND_SELECT), and a claim asks for up to SMS_CLAIM_BATCH numbers.
UNION_ARMS = 500


def _unfinished_rows(session, phones: list[str], depth: int, after: int | None = None) -> dict[str, list]:
    """Each number's first ``depth`` unfinished rows, in id order, as plain rows (no ORM
    objects: a claim reads and writes up to ``SMS_BATCH_SIZE`` of them). On PostgreSQL they are
    locked (``SKIP LOCKED``) and read as they are once locked, and a number's list ends before
    its first row another transaction holds (another sender claiming the number, or recording
    one of its rows): a lane never skips a row."""
    table = OutboxMessage.__table__
    # Each number's first rows of ix_outbox_messages_unfinished (only unfinished rows, by
    # phone and id): at most ``depth`` entries read per number, however many rows it had sent
    # before. Through ix_outbox_messages_phone this read visited every row the number ever had
    # (a busy till's whole history: 7,700 buffers a claim at 100,000 sent rows), and a
    # ``row_number()`` over the number's unfinished rows read all of them, not ``depth``.
    lanes = [
        select(table.c.id, table.c.phone)
        .where(
            table.c.phone == phone,
            text(UNFINISHED_WHERE),
            *([table.c.id > after] if after is not None else []),
        )
        .order_by(table.c.id)
        .limit(depth)
        .subquery()
        for phone in phones
    ]
    expected: dict[str, list[int]] = {phone: [] for phone in phones}
    for start in range(0, len(lanes), UNION_ARMS):
        arms = (select(lane.c.id, lane.c.phone) for lane in lanes[start : start + UNION_ARMS])
        for row_id, phone in session.execute(union_all(*arms)):
            expected[phone].append(row_id)
    for row_ids in expected.values():
        row_ids.sort()  # each arm reads in id order; UNION ALL promises no order of its own
    ids = [row_id for phone in phones for row_id in expected[phone]]
    if not ids:
        return {phone: [] for phone in phones}
    query = (
        select(
            table.c.id,
            table.c.phone,
            table.c.body,
            table.c.status,
            table.c.attempts,
            table.c.claimed_at,
            table.c.next_attempt_at,
            table.c.transfer_request_id,  # for the log line of each claim (ops/tracing.py)
        )
        .where(among(session, table.c.id, ids))
        .order_by(table.c.id)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    got = {row.id: row for row in session.execute(query)}
    rows: dict[str, list] = {}
    for phone in phones:
        rows[phone] = []
        for row_id in expected[phone]:
            row = got.get(row_id)
            if row is None or row.status not in _UNFINISHED:
                break  # held by another transaction, or finished meanwhile: stop before it
            rows[phone].append(row)
    return rows


def _live_numbers(session, phones: list[str], timed_out: datetime, after: int | None = None) -> set[str]:
    """Those of ``phones`` with a row ``sending`` under a claim not timed out (with an id
    after ``after``, when given): another sender's lane of the number is live, wherever its rows
    stand among the number's unfinished ones. ``_Taking.lane`` sees such a row only among the
    rows a claim reads and locks: not beyond ``SMS_LANE_DEPTH`` older rows (an operator's retry
    of a till's failed receipts), nor one held by its sender's record transaction (``SKIP
    LOCKED`` ends the number's rows before it, the lane's next call in flight beyond it).
    Read without a lock, as committed, through ix_outbox_messages_sending (only the rows
    ``sending`` under a recent claim: a few per live sender)."""
    if not phones:
        return set()
    table = OutboxMessage.__table__
    query = select(table.c.phone).where(
        _status_is(OutboxStatus.SENDING),
        table.c.claimed_at > timed_out,
        among(session, table.c.phone, phones),
        *([table.c.id > after] if after is not None else []),
    )
    return set(session.execute(query).scalars())


class _Taking:
    """The rows one claim (or a lane's extension) takes, in one transaction: ``lane`` picks a
    number's rows as they stand, ``write`` claims them all in one statement (and marks failed
    the ones whose last sender died on their last attempt)."""

    def __init__(self, now: datetime, timed_out: datetime, max_attempts: int):
        self.now, self.timed_out, self.max_attempts = now, timed_out, max_attempts
        self.claimed: list[dict] = []
        self.failed: list[dict] = []
        self.transfers: dict[int, str | None] = {}

    def lane(self, rows: list, left: int) -> list[Claim]:
        """Of a number's unfinished rows (in id order, locked), the ones to take, at most
        ``left``: stop at one in its backoff (the number's later messages wait behind it), and
        take none while another sender's lane of the number is live (a row of it ``sending``,
        its claim not timed out), wherever its rows stand: an older row beside it (an
        operator's retry of a failed receipt, a row committed after later ones) taken now
        would be a second call to the number in flight. It goes once that lane has ended,
        first of the number's rows. (A live row this claim cannot see, held by its sender's
        transaction as it records, or beyond the rows read, is found by ``_live_numbers``.)"""
        if any(self._live(row) for row in rows):
            return []
        lane: list[Claim] = []
        for row in rows:
            if len(lane) >= left:
                break
            if row.status == OutboxStatus.SENDING.value:
                if row.attempts >= self.max_attempts:
                    # Its last sender died before recording; there is no attempt left.
                    self.failed.append(
                        {
                            "id": row.id,
                            "status": OutboxStatus.FAILED.value,
                            "failure_reason": f"no answer recorded after {row.attempts} attempts",
                            "claim_token": None,  # nosec B105  # clears a claim, no secret
                        }
                    )
                    continue
                log.warning(
                    "sms %d: sender stopped before recording attempt %d; sending again",
                    row.id,
                    row.attempts,
                )
            elif row.next_attempt_at is not None and row.next_attempt_at > self.now:
                break  # in its backoff: the number's later messages wait behind it
            token = uuid.uuid4().hex
            self.transfers[row.id] = row.transfer_request_id
            self.claimed.append(
                {
                    "id": row.id,
                    "status": OutboxStatus.SENDING.value,
                    "attempts": row.attempts + 1,
                    "claimed_at": self.now,
                    "claim_token": token,
                }
            )
            lane.append(Claim(row.id, row.phone, row.body, row.attempts + 1, token))
        return lane

    def _live(self, row) -> bool:
        return (
            row.status == OutboxStatus.SENDING.value
            and row.claimed_at is not None
            and row.claimed_at > self.timed_out
        )

    def write(self, session) -> None:
        """Claim the rows taken, in the caller's transaction. They are ours (locked on
        PostgreSQL, the database held on SQLite): each matches."""
        table = OutboxMessage.__table__
        if self.claimed and is_postgres(session):
            _write_claims(session, self.claimed)
        else:
            update_rows(session, table, "id", self.claimed)
        update_rows(session, table, "id", self.failed)
        if self.claimed:
            outbox.claimed(
                session, [(row["id"], row["attempts"], self.transfers[row["id"]]) for row in self.claimed]
            )
        self.claimed, self.failed, self.transfers = [], [], {}


# PostgreSQL: ``_Taking.write``'s claims in one statement, as ``update_rows`` would write them,
# with the two values every row shares (``sending``, the claim's time) bound once instead of
# as arrays of 64 equal values, and run as the driver's own SQL (no compiling per claim).
_CLAIM_SQL = (
    "UPDATE outbox_messages SET status = 'sending', attempts = v.attempts, claimed_at = %(now)s, "
    "claim_token = v.token FROM unnest(CAST(%(ids)s AS INTEGER[]), CAST(%(attempts)s AS INTEGER[]), "
    "CAST(%(tokens)s AS VARCHAR[])) AS v(id, attempts, token) WHERE outbox_messages.id = v.id"
)


def _write_claims(session, claimed: list[dict]) -> None:
    now = claimed[0]["claimed_at"]
    if any(row["claimed_at"] != now or row["status"] != OutboxStatus.SENDING.value for row in claimed):
        raise ValueError("one claim's rows share their status and time")
    params = {
        "now": now,
        "ids": [row["id"] for row in claimed],
        "attempts": [row["attempts"] for row in claimed],
        "tokens": [row["claim_token"] for row in claimed],
    }
    written = session.connection().exec_driver_sql(_CLAIM_SQL, params).rowcount
    if written != len(claimed):  # each is ours (locked): anything else is a bug; the caller rolls back
        raise RuntimeError(f"outbox_messages: claimed {written} of {len(claimed)} rows")


def claim_lanes(
    session,
    lanes: int,
    depth: int,
    now: datetime | None = None,
    *,
    limit: int | None = None,
    skip=(),
    passed: set[str] | None = None,
) -> list[list[Claim]]:
    """Claim up to ``lanes`` lanes (a number's due rows in order, at most ``depth`` of them, at
    most ``limit`` rows in all), for numbers not in ``skip``, in one transaction, and commit.
    Rows whose last sender died on their last attempt are marked failed on the way. The rows
    taken are written in one statement (``update_rows``), not one ORM flush of each. Numbers
    due but passed over for another sender's live lane are added to ``passed``."""
    max_attempts = current_app.config["SMS_MAX_ATTEMPTS"]
    now = now or utcnow()
    timed_out = now - claim_timeout()
    left = limit if limit is not None else lanes * depth
    taken: list[list[Claim]] = []
    looked: set[str] = set(skip)
    for _ in range(CLAIM_LOOKS):
        if len(taken) == lanes or left <= 0:
            break
        phones, every_one = _due_numbers(session, lanes - len(taken), looked, now)
        if not phones:
            break
        looked.update(phones)
        unfinished = _unfinished_rows(session, phones, depth)
        live = _live_numbers(session, phones, timed_out)  # after the lock: as committed by then
        taking = _Taking(now, timed_out, max_attempts)
        for phone in phones:
            if phone in live:
                if passed is not None:
                    passed.add(phone)
                continue  # another sender's lane of it is live: one call to a number in flight
            lane = taking.lane(unfinished[phone], left)
            left -= len(lane)
            if lane:
                taken.append(lane)
            if len(taken) == lanes:
                break
        taking.write(session)
        if every_one:
            break  # another look would find no number due that this one did not see
    session.commit()
    return taken


def extend_lane(
    session, phone: str, after: int, rows: int, now: datetime | None = None
) -> list[Claim] | None:
    """Claim, in one transaction, and commit, up to ``rows`` more of ``phone``'s due rows with
    ids after ``after`` (the last row of the number's running lane), in id order, on the same
    terms as ``claim_lanes``: stopping at a row another sender holds or one in its backoff.
    The running lane hands them over after its own (``_Lane.extend``), so a busy number's lane
    goes on without a stop at each ``SMS_LANE_DEPTH`` rows while the next ones are claimed.

    None, claiming nothing, when a row of the number with a lower id than ``after`` is
    ``pending`` (a running lane's own rows are ``sending`` or done): an operator's retry of an
    older failed receipt, a row committed after later ones, or one in its backoff after another
    sender's transient failure. The lane then ends with what it holds and its number is claimed
    again from its first unfinished row, as a lane that was never extended would be: that row
    goes next (or, in its backoff, holds the later ones back), not after every row the job may
    still claim for the number."""
    table = OutboxMessage.__table__
    # The number's unfinished rows before ``after``: through ix_outbox_messages_unfinished, the
    # lane's own not yet recorded (a few) and any waiting behind them. Asked in SQL for the
    # pending ones alone, PostgreSQL may walk ix_outbox_messages_pending instead, through every
    # other number's pending row older than the lane's last (a backlog's worth).
    earlier = session.execute(
        select(table.c.status).where(table.c.phone == phone, text(UNFINISHED_WHERE), table.c.id < after)
    ).scalars()
    if OutboxStatus.PENDING.value in set(earlier):
        session.commit()
        return None
    now = now or utcnow()
    taking = _Taking(now, now - claim_timeout(), current_app.config["SMS_MAX_ATTEMPTS"])
    unfinished = _unfinished_rows(session, [phone], rows, after)[phone]
    if _live_numbers(session, [phone], taking.timed_out, after):
        session.commit()
        return []  # another sender's lane of the number, after this one's rows, is live
    lane = taking.lane(unfinished, rows)
    taking.write(session)
    session.commit()
    return lane


def claim(session, now: datetime | None = None) -> Claim | None:
    """Claim the oldest due row and commit. None when nothing is due."""
    taken = claim_lanes(session, 1, 1, now)
    return taken[0][0] if taken else None


def _values(taken: Claim, answer: Answer, now: datetime) -> dict:
    """The columns an answer sets on its row (the claim cleared)."""
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
    return values


def _record_all(session, answered: list[tuple[Claim, Answer]], now: datetime) -> int:
    """Write each answer against its claim only (``claim_token`` matches and the row is still
    ``sending``), in the caller's transaction: one statement (executemany: one round trip on
    PostgreSQL) per set of columns written, not one per row. How many were recorded; a claim
    lost meanwhile (another sender claimed the row again after the timeout, and records its own)
    is logged."""
    table = OutboxMessage.__table__
    groups: dict[tuple, list[dict]] = {}
    for taken, answer in answered:
        values = _values(taken, answer, now)
        groups.setdefault(tuple(values), []).append(
            {"_id": taken.id, "_token": taken.token, **{f"_v_{k}": v for k, v in values.items()}}
        )
    recorded = 0
    postgres = is_postgres(session)
    for columns, rows in groups.items():
        if postgres:
            sql = _claimed_update_sql(session, table, columns)
            params = {
                f"a{i}": [row[key] for row in rows] for i, key in enumerate(_claimed_update_keys(columns))
            }
            recorded += session.connection().exec_driver_sql(sql, params).rowcount
            continue
        statement = (
            update(table)
            .where(
                table.c.id == bindparam("_id"),
                table.c.claim_token == bindparam("_token"),
                table.c.status == OutboxStatus.SENDING.value,
            )
            .values({name: bindparam(f"_v_{name}") for name in columns})
        )
        recorded += session.execute(statement, rows).rowcount
    if recorded != len(answered):
        lost = ", ".join(f"sms {t.id} attempt {t.attempt}" for t, _ in answered[:20])
        log.warning(
            "%d of %d claims were lost before their answers were recorded (among: %s)",
            len(answered) - recorded,
            len(answered),
            lost,
        )
    return recorded


def _claimed_update_keys(columns: tuple) -> list[str]:
    """The keys of ``_record_all``'s rows, in the order of ``_claimed_update_sql``'s arrays."""
    return ["_id", "_token", *(f"_v_{name}" for name in columns)]


# The statement for each set of columns an answer writes (a handful: sent, retried, failed).
_claimed_update_sqls: dict[tuple, str] = {}


def _claimed_update_sql(session, table, columns: tuple) -> str:
    """PostgreSQL: ``_record_all``'s executemany as one statement (``UPDATE ... FROM
    unnest(...)``, one array per column, as ``database.update_rows``), with the same condition
    for each row (its id, its claim token, still ``sending``); its rowcount is how many held.
    Written once per set of columns and run as the driver's own SQL (its arrays bound as
    ``%(aN)s``, in ``_claimed_update_keys`` order): a record is the job thread's most frequent
    statement, and SQLAlchemy's compiling of a ``text()`` with its array parameters (cache key,
    types) was about as much Python as the rest of the record while the lane waits for the GIL."""
    sql = _claimed_update_sqls.get(columns)
    if sql is not None:
        return sql
    dialect = session.get_bind().dialect
    specs = [("id", table.c.id), ("token", table.c.claim_token)]
    specs += [(f"v_{name}", table.c[name]) for name in columns]
    casts = [
        f"CAST(%(a{i})s AS {column.type.compile(dialect=dialect)}[])" for i, (_, column) in enumerate(specs)
    ]
    # Table and column names come from our model, never from input; the values are bound.
    sets = ", ".join(f"{name} = v.v_{name}" for name in columns)
    names, arrays, t = ", ".join(alias for alias, _ in specs), ", ".join(casts), table.name
    sending = OutboxStatus.SENDING.value
    sql = (
        f"UPDATE {t} SET {sets} FROM unnest({arrays}) AS v({names}) "  # noqa: S608  # nosec B608
        f"WHERE {t}.id = v.id AND {t}.claim_token = v.token AND {t}.status = '{sending}'"
    )
    _claimed_update_sqls[columns] = sql
    return sql


def _record(session, taken: Claim, answer: Answer, now: datetime) -> bool:
    """Write one answer against its claim, in the caller's transaction. False when the claim
    was lost (another sender claimed the row again after the timeout): that sender records its
    own."""
    return _record_all(session, [(taken, answer)], now) == 1


def record(session, taken: Claim, answer: Answer, now: datetime | None = None) -> bool:
    """Write one answer against its claim and commit. False when the claim was lost."""
    recorded = _record(session, taken, answer, now or utcnow())
    session.commit()
    return recorded


def record_batch(session, answered: list[tuple[Claim, Answer]], now: datetime | None = None) -> int:
    """Write each answer against its claim, all in one transaction, and commit. How many were
    recorded; a lost claim is logged and skipped, as ``record`` does."""
    recorded = _record_all(session, answered, now or utcnow())
    session.commit()
    return recorded


def _unclaim(session, released: list[Claim]) -> None:
    """Hand claimed rows back, never handed over: ``pending`` again with their attempt undone,
    in the caller's transaction (only where the claim still holds)."""
    table = OutboxMessage.__table__
    session.execute(
        update(table)
        .where(
            table.c.id == bindparam("_id"),
            table.c.claim_token == bindparam("_token"),
            table.c.status == OutboxStatus.SENDING.value,
        )
        .values(
            status=OutboxStatus.PENDING.value,
            attempts=table.c.attempts - 1,
            claim_token=None,
            claimed_at=None,
        ),
        [{"_id": taken.id, "_token": taken.token} for taken in released],
    )


@dataclass
class _Lane:
    """One number's claimed rows, handed over in order by one pool thread. The job's thread may
    add rows claimed after them (``extend``) while the lane runs; the lane's thread takes them
    one by one (``take``). Once the lane has taken its last row or stopped early (``close_from``)
    it is closed and takes no more: what the job claimed for it then goes back."""

    claims: list[Claim]
    # ``time.monotonic()`` when every unfinished claim of the lane was last known to be ours in
    # the database: taken just before it was claimed, or before a renewal that found them all.
    # Written by the job's thread, read by the lane's (a float: one atomic store).
    held_since: float
    more: bool = False  # its last claim or extension took all it asked for: the number may have more
    # A row of its number with a lower id waits (``extend_lane`` said None): not extended again;
    # once it ends its number is claimed again from its first unfinished row.
    behind: bool = False
    taken: int = 0  # rows taken by the lane's thread so far (read by the job's thread)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def phone(self) -> str:
        return self.claims[0].phone

    def take(self) -> Claim | None:
        """The next row to hand over; None, and the lane closed, when there is none."""
        with self.lock:
            if self.taken < len(self.claims):
                self.taken += 1
                return self.claims[self.taken - 1]
            self.closed = True
            return None

    def close_from(self, index: int) -> list[Claim]:
        """Close the lane: the rows from ``index`` on (none of them handed over), to hand back."""
        with self.lock:
            self.closed = True
            self.taken = len(self.claims)
            return self.claims[index:]

    def extend(self, claims: list[Claim]) -> bool:
        """Add rows after the lane's own, unless it is closed (then the caller hands them back)."""
        with self.lock:
            if self.closed:
                return False
            self.claims.extend(claims)
            return True

    def left(self) -> int:
        """Rows claimed for the lane and not yet taken."""
        return len(self.claims) - self.taken


@dataclass
class _Lanes:
    """What the job's lanes share with its own thread (which alone touches the database)."""

    client: SmsClient
    places: threading.BoundedSemaphore  # hand-overs not yet recorded, at most SMS_CLAIM_BATCH
    stop: threading.Event  # the gateway or our account failed (or our code did): lanes stop
    # ("answer", Claim, Answer) after each hand-over, ("release", Claim, None) for a row not
    # handed over, and ("end", phone, exception or None) when a lane is done.
    news: queue.SimpleQueue
    max_attempts: int
    lease: float  # the claim timeout, in seconds: a claim not renewed for this long is anyone's
    margin: float  # the SDK's connect + read timeouts: the longest a call can take
    errors: list = field(default_factory=list)  # what each ended lane raised (None: nothing)

    def held(self, lane: _Lane) -> bool:
        """A call started now ends (answered or timed out) before the lane's claim could time
        out: nobody else can have taken its rows by then."""
        return time.monotonic() + self.margin < lane.held_since + self.lease

    def run(self, lane: _Lane) -> None:
        """Hand the lane's rows over one after another (each after the one before was accepted
        or refused for good); release the rest when it stops early. Runs in a pool thread."""
        error = None
        try:
            with self.client.kept_alive():  # one connection for the lane's calls in turn
                self._hand_over(lane)
        except BaseException as exc:  # a bug in our code: the job records the rest, then raises
            error = exc
            self.stop.set()
        finally:
            self.news.put(("end", lane.phone, error))

    def _hand_over(self, lane: _Lane) -> None:
        while (taken := lane.take()) is not None:
            i = lane.taken - 1  # taken's place in the lane (only this thread moves it)
            while not self.places.acquire(timeout=PLACE_WAIT_SECONDS):
                if self.stop.is_set():  # the job stopped recording: a place may never come
                    self._release(lane.close_from(i))
                    return
            if self.stop.is_set() or not self.held(lane):
                self.places.release()
                self._release(lane.close_from(i))
                return
            try:
                answer = hand_over(self.client, taken.phone, taken.body)
            except BaseException:
                self.places.release()  # nothing to record: the row stays claimed until its timeout
                self._release(lane.close_from(i + 1))
                raise
            self.news.put(("answer", taken, answer))
            if answer.pause:
                self.stop.set()
            if answer.pause or (answer.outcome == Outcome.RETRY and taken.attempt < self.max_attempts):
                self._release(lane.close_from(i + 1))  # they wait behind this one, which is retried
                return

    def _release(self, rest: list[Claim]) -> None:
        for taken in rest:
            self.news.put(("release", taken, None))


def _record_news(session, lanes: _Lanes, news: list, counts: dict, now: datetime | None) -> None:
    """Record a group of answers and releases in one transaction, then free their places."""
    answered = [(taken, answer) for kind, taken, answer in news if kind == "answer"]
    released = [taken for kind, taken, _ in news if kind == "release"]
    for taken, answer in answered:
        if answer.outcome != Outcome.SENT:
            log.info("sms %d attempt %d: %s (%s)", taken.id, taken.attempt, answer.outcome, answer.reason)
        counts[answer.outcome.value] += 1

    def write() -> None:
        if answered:
            _record_all(session, answered, now or utcnow())
        if released:
            _unclaim(session, released)
        session.commit()

    if answered or released:
        _again_if_lost(session, write)
    for _ in answered:
        lanes.places.release()


def _hand_back(session, released: list[Claim]) -> None:
    """``_unclaim`` and commit."""
    _unclaim(session, released)
    session.commit()


def renew(session, claims: list[Claim], now: datetime | None = None) -> set[str]:
    """Move the claims' ``claimed_at`` to ``now`` where they still hold (the row is
    ``sending`` under that claim token), and commit: a live sender keeps its lanes while they
    run, so the claim timeout need only cover a dead one. The tokens renewed."""
    if not claims:
        return set()
    table = OutboxMessage.__table__
    renewed = set(
        session.execute(
            update(table)
            .where(
                among(session, table.c.claim_token, [taken.token for taken in claims]),
                table.c.status == OutboxStatus.SENDING.value,
            )
            .values(claimed_at=now or utcnow())
            .returning(table.c.claim_token)
        ).scalars()
    )
    session.commit()
    return renewed


def _renew_lanes(session, running: dict[str, _Lane], settled: set[str], now: datetime | None) -> None:
    """Renew the running lanes' claims not yet recorded or released; a lane is held for another
    claim timeout only if every one of them still held (else it stops when its lease runs out)."""
    started = time.monotonic()  # before the new claimed_at is read: errs on the short side
    open_claims = [t for lane in running.values() for t in lane.claims if t.token not in settled]
    renewed = renew(session, open_claims, now)
    for lane in running.values():
        if all(t.token in renewed or t.token in settled for t in lane.claims):
            lane.held_since = started


# How often a lane waiting for a place looks whether the job has stopped.
PLACE_WAIT_SECONDS = 0.1
# While a lane runs and another is free, how often the job looks for new numbers to give lanes
# to (messages written meanwhile start beside a busy or stuck lane).
CLAIM_POLL_SECONDS = 0.25
# How long a job out of lanes looks again for numbers its last claim passed over for another
# sender's live lane (``_drive``): a lane of a few receipts ends well within it.
PASSED_WAIT_SECONDS = 1.0
# How long the job waits for more answers to record in one commit, once one has come; and,
# while a lane deeper than the places runs (a busy number's: the one kind of lane that can be
# held up waiting for its answers to be recorded), for up to half the places' answers, so its
# rows cost one commit per half the places instead of one per two or three (the other half lets
# the lane go on while that commit runs). Ordinary receipts (lanes of a row or two) keep 5 ms.
GATHER_SECONDS = 0.005
GATHER_DEEP_SECONDS = 0.02


def _gather(
    news: queue.SimpleQueue, running: int, width: int, wait: float | None, deep: bool = False
) -> list:
    """The next group of news to record in one commit: the first to come within ``wait``
    seconds (or ever: every lane ends with an "end"), then what follows within
    ``GATHER_SECONDS`` (``GATHER_DEEP_SECONDS`` when ``deep``, a deep lane running), until
    every place is taken by an answer (half of them when ``deep``) or every running lane has
    ended. A lane whose places are all taken waits at most that long for them. Empty when
    nothing came within ``wait``."""
    try:
        group = [news.get(timeout=wait)]
    except queue.Empty:
        return []
    answers = ends = 0
    deadline = time.monotonic() + (GATHER_DEEP_SECONDS if deep else GATHER_SECONDS)
    enough = (width + 1) // 2 if deep else width
    while True:
        kind = group[-1][0]
        answers += kind == "answer"
        ends += kind == "end"
        if answers >= enough or ends >= running:
            break
        try:
            group.append(news.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
    try:
        while True:
            group.append(news.get_nowait())
    except queue.Empty:
        pass
    return group


@contextlib.contextmanager
def _one_connection(session):
    """A session of the job's own on one PostgreSQL connection, held from the first claim to
    the last record: the pool pings a connection each time it hands one out (``database.py``),
    one round trip per commit (~10% of the job thread's time, py-spy), and the job commits
    after every group of answers. The ping's one use, a connection lost between two commits,
    is covered by ``_again_if_lost``. SQLite: the caller's session."""
    if not is_postgres(session):
        yield session
        return
    with session.get_bind().connect() as connection, Session(bind=connection) as own:
        yield own


# The first try again is at once (a connection cut with the server still there); then, while
# the server does not take connections (a restart, a failover), again after these pauses.
RECONNECT_PAUSE_SECONDS = 0.05
RECONNECT_PAUSE_MAX_SECONDS = 1.0


def _lost(session, exc: DBAPIError) -> bool:
    """The job's connection was lost (the error says so), or it was and could not be made again
    (a connection refused while the server restarts: psycopg's dialect calls no failed connect
    a disconnect, but the held connection is still marked invalidated)."""
    bind = session.get_bind()
    return bool(exc.connection_invalidated or getattr(bind, "invalidated", False))


def _again_if_lost(session, step, *args, **kwargs):
    """``step(*args, **kwargs)`` (writes and their commit); if the connection was lost on the
    way, again on a new one (the held connection reconnects once rolled back): at once, then
    after growing pauses while the database takes no connections, for up to the claim timeout
    (after that other senders may hold the job's rows; its answers would be recorded nowhere).
    Safe for each of the job's transactions, however many times: a record, a release and a
    renewal only write where the claim token still holds and the row is still ``sending``, so
    one done again (its first commit went through unseen) writes nothing the second time; a
    claim done again leaves the rows of the first, if it went through, to the claim timeout,
    never handed over, so sent once. Giving up after one try, a restart or failover of a moment
    failed the job with answers in hand: those receipts were sent again after the timeout."""
    deadline = time.monotonic() + claim_timeout().total_seconds()
    pause = 0.0
    while True:
        try:
            return step(*args, **kwargs)
        except DBAPIError as exc:
            if not _lost(session, exc) or time.monotonic() + pause >= deadline:
                raise
            session.rollback()
            log.warning("sms job: the database connection was lost (%s); again on a new one", exc.orig)
        time.sleep(pause)
        pause = min(max(pause * 2, RECONNECT_PAUSE_SECONDS), RECONNECT_PAUSE_MAX_SECONDS)


def send_due(session, client: SmsClient, limit: int, now: datetime | None = None) -> dict[str, int]:
    """Hand over up to ``limit`` due rows in lanes, ``SMS_CLAIM_BATCH`` lanes side by side, each
    up to ``SMS_LANE_DEPTH`` rows of one number. Counts by outcome, and ``paused`` = 1 when the
    job stopped early because the gateway or the account failed."""
    config = current_app.config
    counts = {o.value: 0 for o in Outcome} | {"paused": 0}
    width = max(1, config["SMS_CLAIM_BATCH"])
    depth = max(1, config["SMS_LANE_DEPTH"])
    if limit < 1:
        return counts
    lanes = _Lanes(
        client,
        threading.BoundedSemaphore(width),
        threading.Event(),
        queue.SimpleQueue(),
        config["SMS_MAX_ATTEMPTS"],
        lease=claim_timeout().total_seconds(),
        margin=config["SMS_CONNECT_TIMEOUT_SECONDS"] + config["SMS_READ_TIMEOUT_SECONDS"],
    )
    try:
        with (
            _one_connection(session) as own,
            ThreadPoolExecutor(max_workers=width, thread_name_prefix="sms-lane") as pool,
        ):
            try:
                _drive(own, pool, lanes, width, depth, limit, counts, now)
            except BaseException:
                # The database failed us (a claim, a record or a renewal): stop the lanes (each
                # ends after its call in flight) and let the job fail. What they hand over now
                # goes unrecorded and is claimed again after the timeout: the documented window.
                lanes.stop.set()
                raise
    finally:
        client.close_idle()  # the connections the job's lanes passed on to one another
    bug = next((error for error in lanes.errors if error is not None), None)
    if bug is not None:
        raise bug  # its row stays ``sending`` and is claimed again after the timeout
    counts["paused"] = int(lanes.stop.is_set())
    return counts


def _drive(session, pool, lanes: _Lanes, width: int, depth: int, limit: int, counts: dict, now) -> None:
    """The job's own thread: claim lanes, start them, renew their claims, record their news,
    until they are done."""
    running: dict[str, _Lane] = {}
    settled: set[str] = set()  # claim tokens recorded or released by this job
    claimed = 0
    # Claim again (when half the lanes are free, or none runs) only while more may be due: the
    # last claim took as many lanes as it asked for, a lane as deep as allowed ended (its number
    # may have more), or rows were handed back. A claim that found fewer lanes than it asked for
    # saw every due number; rows written after it ring the doorbell for a job of their own.
    claim_again = True
    # Numbers the last claim passed over for another sender's live lane: that sender may end its
    # lane having seen this job's own lanes live (and passed over their numbers' later rows), so
    # this job, out of lanes, looks again every CLAIM_POLL_SECONDS for up to PASSED_WAIT_SECONDS
    # before it ends and leaves them to the periodic ring (up to 15 s later). Not longer: a lane
    # held up by a slow gateway must not hold this worker (it takes transfers too) with it.
    passed: set[str] = set()
    out_of_lanes = None  # when this job last found itself with no lane running
    last_claim = last_renewal = float("-inf")
    # A lane hands a row over only while its claim outlasts the call (``_Lanes.held``), so the
    # job renews its lanes' claims well before that stops being so.
    renew_every = max(0.5, (lanes.lease - lanes.margin) / 2)
    # A lane with this many rows left to hand over, whose number may have more, is extended.
    low = max(1, min(width, depth // 4))
    while True:
        free = width - len(running)
        can_claim = free and not lanes.stop.is_set() and claimed < limit
        # Beside a running lane, look every CLAIM_POLL_SECONDS whatever the claims found, so
        # messages written meanwhile start beside a busy or stuck lane instead of after it.
        polled = running and time.monotonic() - last_claim >= CLAIM_POLL_SECONDS
        waiting = bool(passed) and not running
        if can_claim and ((claim_again and (free >= (width + 1) // 2 or not running)) or polled or waiting):
            started = time.monotonic()
            passed = set()
            fresh = _again_if_lost(
                session,
                claim_lanes,
                session,
                free,
                depth,
                now,
                limit=limit - claimed,
                skip=running.keys(),
                passed=passed,
            )
            last_claim = time.monotonic()
            for claims in fresh:
                claimed += len(claims)
                lane = _Lane(claims, started, more=len(claims) >= depth)
                running[lane.phone] = lane
                pool.submit(contextvars.copy_context().run, lanes.run, lane)
            claim_again = len(fresh) == free
        if not running:
            out_of_lanes = out_of_lanes or time.monotonic()
            waited = time.monotonic() - out_of_lanes
            if not passed or lanes.stop.is_set() or claimed >= limit or waited >= PASSED_WAIT_SECONDS:
                break
            time.sleep(max(0.0, last_claim + CLAIM_POLL_SECONDS - time.monotonic()))
            continue
        out_of_lanes = None
        # A busy number's lane near its end is given the number's next rows before it gets
        # there, so it goes on instead of ending and waiting for a claim of its number again.
        for lane in running.values():
            if lanes.stop.is_set() or claimed >= limit:
                break
            ask = min(depth - lane.left(), limit - claimed)
            if lane.more and not lane.behind and not lane.closed and lane.left() <= low and ask > 0:
                more = _again_if_lost(session, extend_lane, session, lane.phone, lane.claims[-1].id, ask, now)
                if more is None:
                    lane.behind = True  # still ``more``: its number is claimed again once it ends
                    continue
                claimed += len(more)
                lane.more = len(more) == ask
                if more and not lane.extend(more):
                    # The lane ended meanwhile (or stopped early): they go back, unsent.
                    _again_if_lost(session, _hand_back, session, more)
                    claimed -= len(more)
                    claim_again = True
        # Renew when the oldest lane's hold is renew_every old; at most once per renew_every
        # (a lane whose claim was lost is not renewed, and stops when its hold runs out).
        renew_at = max(min(lane.held_since for lane in running.values()), last_renewal) + renew_every
        if renew_at <= time.monotonic():
            last_renewal = time.monotonic()
            _again_if_lost(session, _renew_lanes, session, running, settled, now)
            renew_at = last_renewal + renew_every
        wait = renew_at - time.monotonic()
        if can_claim:
            wait = min(wait, CLAIM_POLL_SECONDS)
        wait = max(0.0, wait)
        deep = any(len(lane.claims) > width for lane in running.values())
        news = _gather(lanes.news, len(running), width, wait, deep)
        _record_news(session, lanes, news, counts, now)
        for kind, item, detail in news:
            if kind == "end":
                lane = running.pop(item)
                claim_again = claim_again or lane.more
                lanes.errors.append(detail)
            else:
                settled.add(item.token)
                claim_again = claim_again or kind == "release"


def announce(*, force: bool = False) -> bool:
    """Make sure a send job will look at the outbox soon. True if one was enqueued.

    For committed work only: a commit that wrote an outbox row rings by itself (``add_sms``).
    At most one announcement waits at a time (the doorbell key); the job deletes the key
    before it reads the outbox, so rows committed after that read ring again.
    """
    return ring(Bell.SMS, force=force)
