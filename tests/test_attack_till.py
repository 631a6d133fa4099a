"""Attack tests on a busy till's lane being extended as it runs (``sender.extend_lane``), the
due rows read in two limited reads and the claims and records written as the driver's own SQL:
two senders on one busy number, refusals and pauses at the moment a lane is extended, rows
written during a lane, an operator's retry of an older row, a claim timeout during a long
lane, a worker killed mid-lane. The real SDK against the local gateway on a real port; the
gateway here also notes every call it is asked (refused ones too) and how many calls to one
number it had in flight at once."""

import contextlib
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from devtools.gateway import Gateway, serve_in_thread
from tests.conftest import PG_URL
from tests.helpers import wait_for
from tests.sms_helpers import outbox
from tests.test_sms_sender import in_thread, promise
from ussd_app.africas_talking import get_client
from ussd_app.extensions import db
from ussd_app.sms.sender import send_due


@dataclass
class WatchedGateway(Gateway):
    """The local gateway, noting each call as it comes (``calls``: (to, message), refused ones
    too) and the most calls to one number it had in flight at once (``most``). ``script``:
    (number, nth call to it) or (number, message) -> what that call meets: ``("http", 429)`` an HTTP error,
    ``("code", 403)`` that statusCode for the recipient, ``("hold", event)`` the call waits for
    the event (``reached[(number, nth)]`` is set once it is waiting)."""

    delay: float = 0.0  # seconds each call takes (Africa's Talking's own takes 100 ms or more)
    calls: list = field(default_factory=list)
    script: dict = field(default_factory=dict)
    reached: dict = field(default_factory=lambda: defaultdict(threading.Event))
    most: Counter = field(default_factory=Counter)
    _in: Counter = field(default_factory=Counter)
    _nth: Counter = field(default_factory=Counter)

    def messaging(self, form, api_key):
        to, message = form.get("to"), form.get("message")
        with self._lock:
            self.calls.append((to, message))
            self._nth[to] += 1
            nth = self._nth[to]
            self._in[to] += 1
            self.most[to] = max(self.most[to], self._in[to])
            kind, value = self.script.pop((to, nth), None) or self.script.pop((to, message), (None, None))
            if kind == "code":
                self._refusals[to] = [value, 1]
        try:
            if self.delay:
                time.sleep(self.delay)
            if kind in ("hold", "hold-then-429"):
                self.reached[(to, nth)].set()
                value.wait(timeout=60)
            if kind == "hold-then-429":
                return "Too Many Requests", 429
            if kind == "http":
                return "Too Many Requests", value
            return super().messaging(form, api_key)
        finally:
            with self._lock:
                self._in[to] -= 1

    def accepted(self, phone):
        return [m.message for m in self.inbox(phone)]

    def asked(self, phone):
        return [message for to, message in self.calls if to == phone]


@pytest.fixture
def watched(app):
    running = serve_in_thread(WatchedGateway())
    saved = {k: app.config[k] for k in ("AT_API_URL", "AT_API_KEY", "AT_SENDER_ID")}
    app.config.update(AT_API_URL=running.url, AT_API_KEY="test-key", AT_SENDER_ID="TUMA")
    try:
        yield running.gateway
    finally:
        for event in [v for k, v in running.gateway.script.items() if v[0].startswith("hold")]:
            event[1].set()
        app.config.update(saved)
        running.stop()


def receipts(till, n, start=0):
    for i in range(start, start + n):
        promise(till, body=f"Receipt {i:04d}")
    return [f"Receipt {i:04d} for {till}" for i in range(start, start + n)]


def job(limit=1000):
    return send_due(db.session, get_client(), limit)


def statuses(phone=None):
    """Each outbox row's status (of ``phone``'s rows), in id order, as plain values, the
    transaction ended at once: ORM rows read after a commit load again in a transaction of
    their own, which on SQLite holds the write lock until the next commit and starves the
    sender under test."""
    from sqlalchemy import select

    from ussd_app.sms.outbox import OutboxMessage

    query = select(OutboxMessage.status).order_by(OutboxMessage.id)
    if phone is not None:
        query = query.where(OutboxMessage.phone == phone)
    found = list(db.session.execute(query).scalars())
    db.session.commit()
    return found


def in_order_once(gateway, till, expected):
    assert gateway.accepted(till) == expected
    assert gateway.most[till] == 1, gateway.most


@pytest.mark.parametrize("depth,width", [(1, 1), (2, 1), (4, 2), (4, 16), (8, 4)])
def test_two_senders_on_one_busy_till_with_rows_written_meanwhile(app, watched, monkeypatch, depth, width):
    """Two jobs side by side on a till's 40 receipts while 40 more are written: whichever lane
    is given the till's next rows, each receipt is asked of the gateway once, in the order
    written, one call to the till at a time."""
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", depth)
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", width)
    watched.delay = 0.003  # the job's thread keeps up with the lane: its lanes are extended
    till = "+254713100001"
    expected = receipts(till, 40)
    others = [f"+2547131002{i:02d}" for i in range(6)]
    promise(*others)
    db.session.remove()
    start = threading.Barrier(3)

    def sender_job():
        start.wait(timeout=10)
        return job()

    def writer():
        start.wait(timeout=10)
        for i in range(40, 80):
            promise(till, body=f"Receipt {i:04d}")
        return 40

    senders = [in_thread(app, sender_job) for _ in range(2)]
    w = in_thread(app, writer)
    for thread, _ in [*senders, w]:
        thread.join(timeout=120)
    assert all("value" in r for _, r in [*senders, w]), [r for _, r in senders]
    expected += [f"Receipt {i:04d} for {till}" for i in range(40, 80)]
    # The rows written after both jobs looked last wait for the next job.
    job()
    db.session.remove()
    rows = outbox()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    in_order_once(watched, till, expected)
    assert watched.asked(till) == expected


def send_at(now, limit=1000):
    counts = send_due(db.session, get_client(), limit, now=now)
    db.session.remove()
    return counts


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("nth", range(1, 9))
@pytest.mark.parametrize("fault", [("http", 429), ("code", 403), ("code", 407), ("code", 405)])
def test_a_refusal_or_pause_at_any_call_near_an_extension(app, watched, monkeypatch, depth, nth, fault):
    from datetime import timedelta

    from ussd_app.clock import utcnow

    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", depth)
    watched.delay = 0.003  # the job's thread keeps up with the lane: its lanes are extended
    till = "+254713100011"
    expected = receipts(till, 12)
    watched.script[(till, nth)] = fault
    t0 = utcnow()
    counts = send_at(t0)
    rows = outbox()
    before = [(r.status, r.attempts) for r in rows[: nth - 1]]
    assert before == [("sent", 1)] * (nth - 1), counts
    refused = rows[nth - 1]
    permanent = fault == ("code", 403)
    if permanent:
        assert (refused.status, refused.attempts) == ("failed", 1)
        assert [(r.status, r.attempts) for r in rows[nth:]] == [("sent", 1)] * (12 - nth)
        assert watched.asked(till) == expected
        assert watched.accepted(till) == expected[: nth - 1] + expected[nth:]
        assert watched.most[till] == 1
        return
    if fault == ("code", 407):  # the message's own transient refusal: an attempt spent, a backoff
        assert (refused.status, refused.attempts) == ("pending", 1), counts
        assert refused.next_attempt_at == t0 + timedelta(seconds=10)
    else:  # the gateway's or the account's (429, 405): no attempt spent; the circuit's pause
        assert (refused.status, refused.attempts, refused.next_attempt_at) == ("pending", 0, None), counts
    assert [(r.status, r.attempts, r.claim_token) for r in rows[nth:]] == [("pending", 0, None)] * (12 - nth)
    waiting = send_at(t0 + timedelta(seconds=5))  # its backoff, or the gateway's pause
    assert (waiting["sent"], waiting["retry"], waiting["failed"]) == (0, 0, 0)
    assert send_at(t0 + timedelta(seconds=10))["sent"] == 12 - nth + 1
    assert {(r.status) for r in outbox()} == {"sent"}
    assert watched.asked(till) == expected[:nth] + expected[nth - 1 :]
    in_order_once(watched, till, expected)


def test_a_long_lane_renews_the_rows_it_was_given_as_it_ran(app, watched, monkeypatch):
    """The claim timeout at its floor (0.5 + 6 + 5 = 11.5 s: renewed every 2.5 s); lanes four
    deep, so the till's sixth call is one of the rows claimed ahead for the running lane. While
    it hangs, every row of the lane still ``sending`` is renewed, and another sender looking
    when the first of their claims would have timed out finds the number held."""
    from tests.test_sms_lanes import claims_now
    from ussd_app.sms import sender

    monkeypatch.setitem(app.config, "SMS_CONNECT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setitem(app.config, "SMS_READ_TIMEOUT_SECONDS", 6.0)
    monkeypatch.setitem(app.config, "SMS_CLAIM_TIMEOUT_SECONDS", 1)
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 4)
    till = "+254713100021"
    expected = receipts(till, 12)
    go = threading.Event()
    watched.script[(till, 6)] = ("hold", go)
    db.session.remove()
    thread, result = in_thread(app, job)
    try:
        assert watched.reached[(till, 6)].wait(timeout=20), result
        wait_for(
            lambda: [s for _, s, _ in claims_now()][:5] == ["sent"] * 5 or not thread.is_alive(),
            timeout=10,
            message="the five before it recorded",
        )
        claimed = {i: at for i, status, at in claims_now() if status == "sending"}
        assert thread.is_alive() and len(claimed) >= 3, (claimed, result)  # the held one and beyond

        def renewed():
            now = {i: at for i, _, at in claims_now()}
            return all(now[i] is not None and now[i] > at for i, at in claimed.items())

        wait_for(lambda: renewed() or not thread.is_alive(), timeout=10, message="every claim renewed")
        assert thread.is_alive(), result
        assert sender.claim_lanes(db.session, 1, 5, max(claimed.values()) + sender.claim_timeout()) == []
    finally:
        go.set()
        thread.join(timeout=30)
    assert result == {"value": {"sent": 12, "retry": 0, "failed": 0, "paused": 0}}
    in_order_once(watched, till, expected)


FAST = dict(
    TUMA_SMS_CONNECT_TIMEOUT_SECONDS=0.5, TUMA_SMS_READ_TIMEOUT_SECONDS=1, TUMA_SMS_CLAIM_TIMEOUT_SECONDS=1
)


def replayed_in_order(got, expected):
    """``got`` is ``expected`` with one stretch handed over twice (a killed sender's handed
    over and unrecorded rows, sent again from the first of them): how long that stretch is."""
    first = next((i for i in range(1, len(got)) if got[i] <= got[i - 1]), None)
    if first is None:
        assert got == expected
        return 0
    again = expected.index(got[first])
    assert got == expected[:first] + expected[again:], got
    return first - again


@pytest.mark.parametrize("depth,width,kill_at", [(4, 16, 9), (2, 1, 20), (1, 16, 12), (64, 16, 50)])
def test_a_worker_killed_mid_lane_leaves_its_till_to_go_on_in_order(
    app, config, watched, depth, width, kill_at
):
    """A worker process SIGKILLed while its lane hands the till's 150 receipts over (claimed
    ahead as it goes). After the claim timeout the next worker sends the rest: in the gateway's
    log the till's receipts are in order, each once but one stretch of at most
    ``SMS_CLAIM_BATCH`` handed over and not recorded (the documented window), sent again from
    its first; no row claimed more than twice, and no more rows claimed twice than the dead
    lane could hold (its depth not yet handed over, its places handed over)."""
    from tests.worker_helpers import kill_worker, run_burst_worker, start_worker
    from ussd_app.sms import sender

    till = "+254713100031"
    expected = receipts(till, 150)
    settings = dict(TUMA_SMS_LANE_DEPTH=depth, TUMA_SMS_CLAIM_BATCH=width, **FAST)
    victim = start_worker("--burst", **settings)
    try:
        wait_for(lambda: len(watched.accepted(till)) >= kill_at, message="the lane under way")
    finally:
        kill_worker(victim)
    assert len(watched.accepted(till)) < len(expected), "killed too late"
    config(SMS_CONNECT_TIMEOUT_SECONDS=0.5, SMS_READ_TIMEOUT_SECONDS=1, SMS_CLAIM_TIMEOUT_SECONDS=1)
    left = len([m for m in outbox() if m.status != "sent"])
    wait_for(lambda: sender.count_due(db.session) == left, message="the killed lane due again")
    db.session.remove()
    run_burst_worker("--queues", "sms", "maintenance", **settings)
    rows = outbox()
    assert {r.status for r in rows} == {"sent"}
    assert watched.most[till] == 1
    repeated = replayed_in_order(watched.accepted(till), expected)
    assert repeated <= width
    attempts = Counter(r.attempts for r in rows)
    assert set(attempts) <= {1, 2} and attempts[2] <= depth + width, attempts


@pytest.fixture
def signed_in(client):
    from tests.admin_helpers import login, operator

    operator()
    login(client)
    return client


def retry_by_operator(signed_in, message_id):
    from tests.admin_helpers import post

    assert post(signed_in, f"/admin/sms/{message_id}/retry").status_code == 302
    db.session.remove()


def a_failed_first_receipt(watched, till):
    """The till's first receipt refused for good (403), as an operator later finds it."""
    [first] = receipts(till, 1)
    watched.script[(till, 1)] = ("code", 403)
    assert job() == {"sent": 0, "retry": 0, "failed": 1, "paused": 0}
    db.session.remove()
    [row] = outbox()
    return row.id, first


@contextlib.contextmanager
def a_lane_held_once_extended(app, watched, till, call: int, first: int):
    """The job (limit 100) in a thread, its lane of ``till`` held at the number's ``call``-th
    call until the block ends; entered once the lane was given its next twelve rows (from
    ``first``, in id order, ``sending``: extend_lane). Yields the job's result (filled in once
    its thread ends, after the block)."""
    go = threading.Event()
    watched.script[(till, call)] = ("hold", go)
    db.session.remove()
    thread, result = in_thread(app, lambda: job(100))
    try:
        assert watched.reached[(till, call)].wait(timeout=20), result
        wait_for(
            lambda: statuses()[first : first + 12] == ["sending"] * 12 or not thread.is_alive(),
            timeout=10,
            message="the lane given its next rows",
        )
        yield result
    finally:
        go.set()
        thread.join(timeout=60)


def test_an_operators_retry_of_an_older_receipt_mid_lane_waits_no_longer_than_a_lane(
    app, watched, signed_in, monkeypatch
):
    """The till's lane runs (16 deep, given its number's next rows as it goes) when an operator
    retries the till's older, failed receipt: it is handed over once, and after no more than a
    lane's depth of receipts still waiting then, as the number's next claim would take it; not
    behind every receipt the job may still claim for the till (its limit, 100)."""
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 16)
    watched.delay = 0.02
    till = "+254713100041"
    failed_id, first = a_failed_first_receipt(watched, till)
    later = receipts(till, 80, start=1)
    # The lane's twelfth receipt hangs with four left to hand over: the lane is given the
    # number's next twelve meanwhile (extend_lane); the operator retries once they are its.
    with a_lane_held_once_extended(app, watched, till, 13, 17) as result:
        retry_by_operator(signed_in, failed_id)
    assert "value" in result, result
    for _ in range(2):
        job(100)  # the job its retry rang, and the next
        db.session.remove()
    assert {r.status for r in outbox()} == {"sent"}
    accepted = watched.accepted(till)
    assert sorted(accepted) == sorted([first, *later]) and watched.most[till] == 1
    ahead = accepted.index(first) - 12  # handed over after the one that hung
    assert ahead <= 16, accepted


def test_an_older_receipt_in_its_backoff_holds_back_the_lanes_next_rows(app, watched, signed_in, monkeypatch):
    """Two senders. The till's lane runs in the first (16 deep, given its next rows as it
    goes) when an operator retries its older, failed receipt; the second sender takes none of
    the till's rows while that lane is live (one call to a number in flight). The lane ends with
    the rows it held then; the older receipt goes next and the gateway refuses it for now (407):
    it waits in its backoff, and so must the receipts after it."""
    from datetime import timedelta

    from ussd_app.clock import utcnow

    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 16)
    watched.delay = 0.02
    till = "+254713100051"
    failed_id, first = a_failed_first_receipt(watched, till)
    later = receipts(till, 60, start=1)
    watched.script[(till, first)] = ("code", 407)  # the older receipt, handed over again: CouldNotRoute
    # The first lane's twelfth call hangs, four left: the lane is extended.
    with a_lane_held_once_extended(app, watched, till, 13, 17) as result:
        retry_by_operator(signed_in, failed_id)
        assert job(100) == {"sent": 0, "retry": 0, "failed": 0, "paused": 0}  # a live lane: none taken
        db.session.remove()
    assert "value" in result, result
    assert (till, first) not in watched.script and watched.most[till] == 1  # it was tried, alone
    held_then = 28  # the first lane's rows when the older receipt was retried: up to Receipt 0028
    during_backoff = [m for m in watched.accepted(till) if m > later[held_then - 1]]
    assert during_backoff == [], f"{len(during_backoff)} sent while an older receipt waits in its backoff"
    assert send_at(utcnow() + timedelta(seconds=11))["sent"] >= 1
    assert {r.status for r in outbox()} == {"sent"}


@pytest.mark.skipif(not PG_URL, reason="SQLite takes one writer at a time: ids follow commits")
def test_a_receipt_committed_after_later_ones_mid_lane_waits_no_longer_than_a_lane(app, watched, monkeypatch):
    """PostgreSQL: a transaction that took its outbox row's id first commits after the till's
    later receipts, while their lane runs (16 deep, given its next rows as it goes). That row
    goes once, after no more than a lane's depth of the receipts waiting then."""
    from sqlalchemy.orm import Session

    from ussd_app.sms.outbox import add_sms

    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 16)
    watched.delay = 0.02
    till = "+254713100061"
    late = Session(db.engine)
    add_sms(late, phone=till, body=f"Receipt 0000 for {till}")
    late.flush()  # its id taken, not committed
    try:
        later = receipts(till, 60, start=1)
        # The twelfth call hangs, four left: the lane is extended.
        with a_lane_held_once_extended(app, watched, till, 12, 16) as result:
            late.commit()
    finally:
        late.close()
    assert "value" in result, result
    for _ in range(2):
        job(100)
        db.session.remove()
    assert {r.status for r in outbox()} == {"sent"}
    accepted = watched.accepted(till)
    first = f"Receipt 0000 for {till}"
    assert sorted(accepted) == sorted([first, *later]) and watched.most[till] == 1
    assert accepted.index(first) - 12 <= 16, accepted


def test_a_pause_on_another_lane_while_the_till_is_extended_hands_its_rows_back(app, watched, monkeypatch):
    """Two lanes: the till's (16 deep, given its next rows as it goes) and another number's,
    whose one call hangs until the till's lane has been extended, then meets a 429. The job
    pauses: the till's rows claimed ahead go back unsent with no attempt spent, and the next
    job sends them in order, each asked of the gateway once."""
    from datetime import timedelta

    from ussd_app.clock import utcnow

    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 16)
    watched.delay = 0.01
    till, other = "+254713100071", "+254713100072"
    promise(other)
    expected = receipts(till, 60)
    go = threading.Event()
    watched.script[(other, 1)] = ("hold-then-429", go)
    db.session.remove()
    t0 = utcnow()
    thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100, now=t0))
    try:
        wait_for(
            lambda: len([s for s in statuses(till) if s != "pending"]) > 20 or not thread.is_alive(),
            timeout=20,
            message="the till's lane extended",
        )
    finally:
        go.set()
        thread.join(timeout=60)
    assert "value" in result and result["value"]["paused"] == 1, (result, thread.is_alive())
    rows = [r for r in outbox() if r.phone == till]
    sent = [r for r in rows if r.status == "sent"]
    assert len(sent) < 60 and {r.attempts for r in sent} == {1}
    assert [(r.status, r.attempts, r.claim_token) for r in rows[len(sent) :]] == [("pending", 0, None)] * (
        60 - len(sent)
    )
    assert send_at(t0 + timedelta(seconds=10))["sent"] == 60 - len(sent) + 1
    in_order_once(watched, till, expected)
    assert watched.asked(till) == expected


def test_two_worker_processes_on_one_busy_till(app, watched):
    """Two real workers, each with an SMS job at once, jobs of 20, lanes four deep extended as
    they go, on a till's 200 receipts: each asked of the gateway once, in order, one at a time."""
    from tests.worker_helpers import finish, start_worker
    from ussd_app.sms import sender

    watched.delay = 0.003
    till = "+254713100081"
    expected = receipts(till, 200)
    assert sender.announce(force=True)
    db.session.remove()
    settings = dict(TUMA_SMS_LANE_DEPTH=4, TUMA_SMS_BATCH_SIZE=20, TUMA_SMS_CLAIM_BATCH=4)
    for _round in range(3):
        workers = [start_worker("--burst", "--queues", "sms", **settings) for _ in range(2)]
        outputs = [finish(w) for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs
        if {r.status for r in outbox()} == {"sent"}:
            break
        # Both jobs ended while the other's lane of the till was live (under load a lane can
        # outlast PASSED_WAIT_SECONDS): the rest is left to the periodic ring (maintenance,
        # within 15 s), which burst workers do not run. Rung as it rings them.
        db.session.remove()
        assert sender.announce(force=True)
    assert {r.status for r in outbox()} == {"sent"}, outputs
    in_order_once(watched, till, expected)
    assert watched.asked(till) == expected


def test_an_older_receipt_retried_beside_a_live_lane_is_not_a_second_call_in_flight(app, watched, signed_in):
    till = "+254713100091"
    failed_id, first = a_failed_first_receipt(watched, till)
    receipts(till, 8, start=1)
    go = threading.Event()
    watched.script[(till, 3)] = ("hold", go)  # the first sender's lane, its second receipt
    db.session.remove()
    thread, result = in_thread(app, job)
    try:
        assert watched.reached[(till, 3)].wait(timeout=20), result
        retry_by_operator(signed_in, failed_id)
        job()  # a second sender, while the first one's call is in flight
        db.session.remove()
    finally:
        go.set()
        thread.join(timeout=60)
    job()
    assert {r.status for r in outbox()} == {"sent"}
    assert watched.accepted(till).count(first) == 1  # once, whatever its place
    assert watched.most[till] == 1
