"""Claiming the outbox's rows: which rows are due, a number's lane (its due rows in order,
stopping at one in its backoff or held by another sender), ``claim_lanes`` and ``extend_lane``
(see the package's docstring, step 1)."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, func, literal_column, or_, select, text, union_all

from ...clock import utcnow
from ...database import among, is_postgres, update_rows
from .. import outbox
from ..outbox import UNFINISHED_WHERE, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A claimed row, copied out of the session so the hand-over touches no database."""

    id: int
    phone: str
    body: str
    attempt: int
    token: str


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
