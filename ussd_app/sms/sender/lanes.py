"""Lanes, one per number: a lane's claimed rows handed over one after another by one pool
thread, each once the one before was answered (the package's docstring, step 2)."""

import queue
import threading
import time
from dataclasses import dataclass, field, replace

from ...africas_talking import SmsClient
from .claims import Claim
from .gateway import Outcome, hand_over

# How often a lane waiting for a place looks whether the job has stopped.
PLACE_WAIT_SECONDS = 0.1


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
    # The first answer that was the gateway's failure (``Answer.pause``), as the job's thread
    # recorded it: (the number, the reason). It opens the gateway's circuit once the job ends.
    outage: tuple[str, str] | None = None
    # The circuit's suspects (circuit.py), read while the circuit was closed: a suspect's
    # gateway-type failure is its own (it spends its attempt, stops no lane, opens no circuit);
    # and, for each suspect whose row failed so, that row's attempt.
    suspects: frozenset[str] = frozenset()
    suspects_failed: dict[str, int] = field(default_factory=dict)

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
                if answer.pause and taken.phone in self.suspects:
                    answer = replace(answer, pause=False, reason=f"{answer.reason} (this number only)")
                    self.suspects_failed[taken.phone] = taken.attempt  # one lane per number
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
