"""The job: ``send_due`` claims lanes, runs them side by side, extends and renews them, records
their news in groups, and keeps to the gateway's circuit (``circuit.py``: a probe first once its
pause is over); ``announce`` rings for it."""

import contextvars
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from flask import current_app

from ...africas_talking import SmsClient
from ...clock import utcnow
from ...queues import SMS_DOORBELL, Bell, ring
from .. import circuit
from .claims import Claim, claim_lanes, claim_timeout, extend_lane
from .connection import _again_if_lost, _one_connection
from .gateway import Outcome, hand_over
from .lanes import _Lane, _Lanes
from .records import _record_all, _unclaim, backoff, record_batch, renew

log = logging.getLogger(__name__)


DOORBELL_KEY = SMS_DOORBELL  # the job deletes it before it reads (worker/jobs.py)


def _record_news(session, lanes: _Lanes, news: list, counts: dict, now: datetime | None) -> None:
    """Record a group of answers and releases in one transaction, then free their places."""
    answered = [(taken, answer) for kind, taken, answer in news if kind == "answer"]
    released = [taken for kind, taken, _ in news if kind == "release"]
    for taken, answer in answered:
        if answer.outcome != Outcome.SENT:
            log.info("sms %d attempt %d: %s (%s)", taken.id, taken.attempt, answer.outcome, answer.reason)
        counts[answer.outcome.value] += 1
        if answer.pause and lanes.outage is None:
            lanes.outage = (taken.phone, answer.reason or "")

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


def _renew_lanes(session, running: dict[str, _Lane], settled: set[str], now: datetime | None) -> None:
    """Renew the running lanes' claims not yet recorded or released; a lane is held for another
    claim timeout only if every one of them still held (else it stops when its lease runs out)."""
    started = time.monotonic()  # before the new claimed_at is read: errs on the short side
    open_claims = [t for lane in running.values() for t in lane.claims if t.token not in settled]
    renewed = renew(session, open_claims, now)
    for lane in running.values():
        if all(t.token in renewed or t.token in settled for t in lane.claims):
            lane.held_since = started


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


def send_due(session, client: SmsClient, limit: int, now: datetime | None = None) -> dict[str, int]:
    """Hand over up to ``limit`` due rows in lanes, ``SMS_CLAIM_BATCH`` lanes side by side, each
    up to ``SMS_LANE_DEPTH`` rows of one number. Counts by outcome, and ``paused`` = 1 when the
    job stopped early because the gateway or the account failed, or claimed nothing because the
    gateway's circuit is open (``circuit.py``): in its pause, or another sender probing it.
    Once the pause is over the job first probes with one row; the rest only if it was answered."""
    config = current_app.config
    counts = {o.value: 0 for o in Outcome} | {"paused": 0}
    width = max(1, config["SMS_CLAIM_BATCH"])
    depth = max(1, config["SMS_LANE_DEPTH"])
    if limit < 1:
        return counts
    state, suspects = circuit.look()
    if state is not None and state.open_at(now or utcnow()):
        counts["paused"] = 1  # nobody calls the gateway before the pause is over
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
        with _one_connection(session) as own:
            if state is not None:
                probed = _probe(own, client, state, counts, now)
                if probed is None:
                    counts["paused"] = 1
                    return counts
                limit -= probed
                suspects = set(state.failed_phones())  # the probe closed the circuit
            lanes.suspects = frozenset(suspects)
            if limit < 1:
                return counts
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sms-lane") as pool:
                try:
                    _drive(own, pool, lanes, width, depth, limit, counts, now)
                except BaseException:
                    # The database failed us (a claim, a record or a renewal): stop the lanes
                    # (each ends after its call in flight) and let the job fail. What they hand
                    # over now goes unrecorded and is claimed again after the timeout: the
                    # documented window.
                    lanes.stop.set()
                    raise
    finally:
        client.close_idle()  # the connections the job's lanes passed on to one another
    if lanes.outage is not None:
        circuit.failed(now or utcnow(), lanes.outage[1], lanes.outage[0])
    # Still suspect when its row is due again: its next failure is its own too.
    circuit.keep_suspects(
        {
            phone: backoff(attempt).total_seconds()
            for phone, attempt in lanes.suspects_failed.items()
            if attempt < lanes.max_attempts
        }
    )
    bug = next((error for error in lanes.errors if error is not None), None)
    if bug is not None:
        raise bug  # its row stays ``sending`` and is claimed again after the timeout
    counts["paused"] = int(lanes.stop.is_set())
    return counts


def _probe(session, client: SmsClient, state: circuit.State, counts: dict, now) -> int | None:
    """The gateway's circuit is past its pause: hand over one row (the oldest due, of another
    number than every call that failed in this outage when one is due) and record its answer, unless
    another sender is probing. How many rows it took (0: nothing due) once the gateway
    answered, the circuit closed; None while it is still open (the probe failed: a longer
    pause; or another sender's probe is in flight, or nothing was due)."""
    if not circuit.take_probe(claim_timeout().total_seconds()):
        return None
    try:
        skip = set(state.failed_phones())
        fresh = _again_if_lost(session, claim_lanes, session, 1, 1, now, limit=1, skip=skip)
        if not fresh and skip:
            fresh = _again_if_lost(session, claim_lanes, session, 1, 1, now, limit=1)
        if not fresh:
            return None  # nothing to probe with: the circuit stays as it is
        [[taken]] = fresh
        with client.kept_alive():
            answer = hand_over(client, taken.phone, taken.body)
        if answer.outcome != Outcome.SENT:
            log.info("sms %d attempt %d: %s (%s)", taken.id, taken.attempt, answer.outcome, answer.reason)
        counts[answer.outcome.value] += 1
        _again_if_lost(session, record_batch, session, [(taken, answer)], now)
        moment = now or utcnow()
        if answer.pause:
            circuit.failed(moment, answer.reason or "", taken.phone, probe=True)
            return None
        circuit.closed(moment, state)
        return 1
    finally:
        circuit.end_probe()


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
