"""Sending the outbox: the real africastalking SDK against the local gateway on a real port,
with the gateway failing, refusing, hanging, and the sender killed mid-batch."""

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from tests import sms_helpers
from tests.conftest import PG_URL
from tests.helpers import wait_for
from tests.sms_helpers import agent_with_float, execute, outbox, person
from ussd_app.africas_talking import get_client, make_service
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.queues import SMS_QUEUE, get_queue
from ussd_app.sms import sender
from ussd_app.sms.outbox import add_sms
from ussd_app.sms.sender import Outcome, claim, claim_timeout, record, send_due
from worker import jobs

gateway = sms_helpers.gateway  # the fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def promise(*phones, body="Test message"):
    """Outbox rows, as the worker writes them with a posting."""
    for phone in phones:
        add_sms(db.session, phone=phone, body=f"{body} for {phone}")
    db.session.commit()


def send_at(now, limit=100):
    counts = send_due(db.session, get_client(), limit, now=now)
    db.session.remove()
    return counts


def test_a_gateway_that_answers_500_twice_then_succeeds_delivers_the_message_once(app, gateway):
    promise("+254712000101")
    gateway.fail_next(2, http_status=500)
    t0 = utcnow()

    assert send_at(t0) == {"sent": 0, "retry": 1, "failed": 0, "paused": 1}
    [row] = outbox()
    # The gateway's failure, not the message's: no attempt spent; the gateway's circuit paces it.
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, None)
    assert row.failure_reason.startswith("gateway error")

    paused = {"sent": 0, "retry": 0, "failed": 0, "paused": 1}
    assert send_at(t0 + timedelta(seconds=9)) == paused  # SMS_GATEWAY_PAUSE_SECONDS not over
    assert gateway.requests_seen == 1
    assert send_at(t0 + timedelta(seconds=10)) == {
        "sent": 0,
        "retry": 1,
        "failed": 0,
        "paused": 1,
    }  # the probe
    assert send_at(t0 + timedelta(seconds=29)) == paused  # the pause doubled
    assert send_at(t0 + timedelta(seconds=30))["sent"] == 1
    assert send_at(t0 + timedelta(hours=1))["sent"] == 0  # sent rows are never sent again

    assert gateway.requests_seen == 3
    [message] = gateway.inbox("+254712000101")
    [row] = outbox()
    assert (row.status, row.attempts, row.gateway_message_id) == ("sent", 1, message.id)
    assert (row.gateway_status_code, row.gateway_status, row.cost) == (101, "Success", "KES 0.8000")


@pytest.mark.parametrize(
    ("status_code", "reason"),
    [(403, "403 InvalidPhoneNumber"), (404, "404 UnsupportedNumberType"), (406, "406 UserInBlacklist")],
)
def test_a_permanent_refusal_is_marked_failed_and_never_retried(app, gateway, status_code, reason):
    promise("+254712000102", "+254712000103")
    gateway.refuse("+254712000102", status_code)

    assert send_at(utcnow()) == {"sent": 1, "retry": 0, "failed": 1, "paused": 0}
    assert sum(send_at(utcnow() + timedelta(days=1)).values()) == 0

    refused, fine = outbox()
    assert (refused.status, refused.failure_reason, refused.attempts) == ("failed", reason, 1)
    assert refused.gateway_status_code == status_code and refused.gateway_message_id is None
    assert fine.status == "sent"
    assert gateway.requests_seen == 2


@pytest.mark.parametrize("status_code", [405, 500, 501, 502])
def test_per_recipient_transient_codes_are_retried(app, gateway, status_code):
    promise("+254712000104")
    gateway.refuse("+254712000104", status_code, times=1)
    t0 = utcnow()
    assert send_at(t0)["retry"] == 1
    assert outbox()[0].failure_reason.startswith(str(status_code))
    assert send_at(t0 + timedelta(seconds=10))["sent"] == 1
    assert len(gateway.inbox("+254712000104")) == 1


def test_an_unreachable_gateway_is_retried_and_pauses_the_job(app, gateway, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 2)
    promise("+254712000105", "+254712000115", "+254712000125")
    running_url = app.config["AT_API_URL"]
    app.config["AT_API_URL"] = "http://127.0.0.1:9"  # discard port: connection refused
    try:
        # Two lanes side by side: the first refused call stops both (the other may have had its
        # own call in flight by then); no lane is claimed after it.
        counts = send_at(utcnow())
    finally:
        app.config["AT_API_URL"] = running_url
    assert (counts["sent"], counts["failed"], counts["paused"]) == (0, 0, 1) and counts["retry"] in (1, 2)
    rows = outbox()
    tried = [r for r in rows if r.failure_reason]
    assert [r.failure_reason for r in tried] == ["network: ConnectionError"] * counts["retry"]
    # Every one kept its attempts for when the gateway is back (the tried ones too: the failure
    # was the gateway's), and is due once the gateway's pause is over.
    assert {(r.status, r.attempts, r.next_attempt_at) for r in rows} == {("pending", 0, None)}
    assert send_at(utcnow() + timedelta(seconds=10))["sent"] == 3


def test_insufficient_balance_on_our_account_pauses_the_job(app, gateway, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 2)
    promise("+254712000106", "+254712000116", "+254712000126")
    gateway.refuse("+254712000106", 405, times=1)
    # Its lane-mate keeps its own answer if its call was in flight by then (else it waits,
    # attempt untouched); the third waits: no lane is claimed after the pause.
    counts = send_at(utcnow())
    assert (counts["retry"], counts["failed"], counts["paused"]) == (1, 0, 1) and counts["sent"] in (0, 1)
    mate = ("sent", 1) if counts["sent"] else ("pending", 0)
    # Our account's failure, not the message's: no attempt spent.
    assert [(r.status, r.attempts) for r in outbox()] == [("pending", 0), mate, ("pending", 0)]
    assert outbox()[0].failure_reason == "405 InsufficientBalance"
    assert send_at(utcnow() + timedelta(seconds=10))["sent"] == 3 - counts["sent"]


def test_a_gateway_that_hangs_past_the_read_timeout_is_retried(app, gateway):
    promise("+254712000136")
    app.config["SMS_READ_TIMEOUT_SECONDS"] = 0.3
    gateway.hold_next(1)
    try:
        assert send_at(utcnow())["retry"] == 1
    finally:
        app.config["SMS_READ_TIMEOUT_SECONDS"] = 10.0
        gateway.release()
    [row] = outbox()
    assert (row.status, row.failure_reason) == ("pending", "network: ReadTimeout")


def test_attempts_are_bounded(app, gateway):
    """A message the gateway refuses on its own (a recipient's 502 RejectedByGateway, every
    time) spends its attempts and is given up; its neighbour goes, and the gateway's circuit
    never opens (no pause: every job calls)."""
    promise("+254712000107", "+254712000117")
    gateway.refuse("+254712000107", 502)
    moment = utcnow()
    for _ in range(app.config["SMS_MAX_ATTEMPTS"] + 2):
        assert send_at(moment)["paused"] == 0
        moment += timedelta(hours=1)
    refused, fine = outbox()
    assert (refused.status, refused.attempts) == ("failed", app.config["SMS_MAX_ATTEMPTS"])
    assert refused.failure_reason.startswith("502")
    assert (fine.status, fine.attempts) == ("sent", 1)
    assert gateway.requests_seen == app.config["SMS_MAX_ATTEMPTS"] + 1


def test_a_claim_reclaimed_after_the_timeout_cannot_record_over_the_new_one(app):
    promise("+254712000108")
    t0 = utcnow()
    first = claim(db.session, t0)
    assert claim(db.session, t0) is None  # claimed rows are not handed out twice
    second = claim(db.session, t0 + claim_timeout())
    assert (first.id, first.attempt, second.attempt) == (second.id, 1, 2)

    accepted = sender.Answer(Outcome.SENT, message_id="ATXid_second", status_code=101, status="Success")
    assert record(db.session, second, accepted) is True
    assert record(db.session, first, sender.Answer(Outcome.RETRY, reason="late")) is False
    [row] = outbox()
    assert (row.status, row.gateway_message_id) == ("sent", "ATXid_second")


def test_a_row_whose_sender_died_on_its_last_attempt_is_failed_not_left_hanging(app):
    promise("+254712000109")
    app.config["SMS_MAX_ATTEMPTS"] = 1
    try:
        t0 = utcnow()
        assert claim(db.session, t0) is not None
        assert claim(db.session, t0 + claim_timeout()) is None
    finally:
        app.config["SMS_MAX_ATTEMPTS"] = 8
    [row] = outbox()
    assert (row.status, row.failure_reason) == ("failed", "no answer recorded after 1 attempts")


def test_a_lane_takes_a_numbers_due_rows_in_order_and_stops_where_one_must_wait(app, monkeypatch):
    promise("+254712000111", "+254712000112")
    promise("+254712000111", body="Second message")
    promise("+254712000111", body="Third message")
    promise("+254712000113")
    t0 = utcnow()
    lanes = sender.claim_lanes(db.session, 10, 2, t0)
    # A lane per number, in the order of each number's oldest message; at most two rows deep.
    assert [[t.body for t in lane] for lane in lanes] == [
        ["Test message for +254712000111", "Second message for +254712000111"],
        ["Test message for +254712000112"],
        ["Test message for +254712000113"],
    ]
    # ...111's third message is due, but its number's lane is another sender's (live): no lane.
    assert sender.claim_lanes(db.session, 10, 2, t0) == []

    # Their sender died on what is now the last attempt: they are failed (final, so the lane
    # goes on past them) and the number's next message is claimed.
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 1)
    [lane] = sender.claim_lanes(db.session, 10, 5, t0 + claim_timeout())
    assert [(t.body, t.attempt) for t in lane] == [("Third message for +254712000111", 1)]
    assert [r.status for r in outbox()] == ["failed", "failed", "failed", "sending", "failed"]


def test_a_message_in_its_backoff_holds_back_its_numbers_later_ones(app, gateway):
    promise("+254712000114", body="First")
    promise("+254712000114", body="Second")
    gateway.refuse("+254712000114", 500, times=1)  # a per-recipient failure: retried
    t0 = utcnow()
    assert send_at(t0) == {"sent": 0, "retry": 1, "failed": 0, "paused": 0}
    first, second = outbox()
    assert (first.status, first.attempts, second.status, second.attempts) == ("pending", 1, "pending", 0)
    # The second is due, but waits until the first is sent: nothing goes before its backoff.
    assert sum(send_at(t0 + timedelta(seconds=9)).values()) == 0
    assert send_at(t0 + timedelta(seconds=10))["sent"] == 2
    assert [m.message for m in gateway.inbox("+254712000114")] == [
        "First for +254712000114",
        "Second for +254712000114",
    ]


def test_a_sender_killed_mid_lane_loses_nothing_and_resends_nothing_recorded(app, gateway):
    till = "+254712000200"
    for i in range(5):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    # One lane, one call after another: the first two are answered, the third hangs.
    gateway.hold_next(1, after=2)
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        AT_API_URL=app.config["AT_API_URL"],
        AT_API_KEY="test-key",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from worker.jobs import send_sms; send_sms()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: (
                (gateway.held == 1 and [r.status for r in outbox()][:2] == ["sent", "sent"])
                or proc.poll() is not None
            ),
            timeout=30,
            message="the held call after two recorded ones",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    # The rest of the lane is still claimed: the one in flight and the two never handed over.
    assert [(r.status, r.attempts) for r in outbox()] == [("sent", 1)] * 2 + [("sending", 1)] * 3
    # The gateway had the held message when the sender died; it answers into a closed socket.
    gateway.release()
    wait_for(lambda: len(gateway.inbox()) == 3, message="the held message to be accepted")

    # Restart: too early, the lane is still someone's; after the timeout it is claimed again.
    assert sum(send_at(utcnow()).values()) == 0
    assert send_at(utcnow() + claim_timeout() + timedelta(seconds=1))["sent"] == 3

    rows = outbox()
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 2 + [("sent", 2)] * 3
    # Only the call in flight when the sender died went twice (the documented at-least-once
    # window); the two never handed over went once; and the number's order held throughout.
    assert [m.message for m in gateway.inbox(till)] == [f"Receipt {i} for {till}" for i in (0, 1, 2, 2, 3, 4)]


def test_the_job_is_safe_to_run_twice_and_rings_after_a_transfer_batch(app, gateway, redis):
    agent = agent_with_float()
    amina = person("+254712000301", "Amina Hassan")
    queue = get_queue(SMS_QUEUE)
    queue.empty()
    redis.delete(sender.DOORBELL_KEY)  # the float issue's commit rang already
    sms_helpers.send(agent, amina, 100_00)
    assert execute() == 1
    assert queue.count == 1  # the send job was announced once the batch committed

    first, second = jobs.send_sms(), jobs.send_sms()
    assert first["sent"] == 3 and sum(second.values()) == 0  # float + 2 receipts
    assert len(gateway.inbox()) == 3


def test_maintenance_wakes_the_sender_for_due_retries(app, gateway, redis):
    promise("+254712000302")
    gateway.fail_next(1)
    assert send_at(utcnow() - timedelta(seconds=20))["retry"] == 1  # failed 20 s ago: due again
    queue = get_queue(SMS_QUEUE)
    queue.empty()
    redis.delete(sender.DOORBELL_KEY)
    assert jobs.maintain()["sms_due"] == 1
    assert queue.count == 1
    assert jobs.send_sms()["sent"] == 1
    assert jobs.maintain()["sms_due"] == 0


# -- batches: a burst, a failing gateway, side by side ---------------------------------------


def handed_over(gateway):
    """What the gateway received, as (phone, body) pairs with how many times each."""
    return Counter((m.to, m.message) for m in gateway.inbox())


def promised(rows):
    return Counter((r.phone, r.body) for r in rows)


def test_a_burst_of_receipts_reaches_the_gateway_once_each(app, gateway, redis, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 16)
    agent = agent_with_float()
    for i in range(20):
        sms_helpers.send(agent, person(f"+2547120005{i:02d}", f"Customer {i}"), 100_00)
    assert execute() == 20

    counts = jobs.send_sms()  # 41 rows (the float's SMS, two receipts a transfer): 3 batches
    assert counts == {"sent": 41, "retry": 0, "failed": 0, "paused": 0}
    rows = outbox()
    assert len(rows) == 41 and {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert handed_over(gateway) == promised(rows)  # every receipt, each exactly once
    assert set(handed_over(gateway).values()) == {1} and gateway.requests_seen == 41
    assert {r.gateway_message_id for r in rows} == {m.id for m in gateway.inbox()}
    # Each person's messages reached the gateway in the order they were written: the agent's
    # 21 (the float, then a receipt a transfer, each with the balance after it) in particular.
    for phone in {r.phone for r in rows}:
        assert [m.message for m in gateway.inbox(phone)] == [r.body for r in rows if r.phone == phone]

    assert sum(jobs.send_sms().values()) == 0
    assert gateway.requests_seen == 41


def test_a_job_hands_over_no_more_than_its_limit(app, gateway, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    promise(*[f"+2547120006{i:02d}" for i in range(12)])
    assert send_at(utcnow(), limit=10) == {"sent": 10, "retry": 0, "failed": 0, "paused": 0}
    assert [r.attempts for r in outbox()] == [1] * 10 + [0] * 2
    assert gateway.requests_seen == 10


@pytest.mark.parametrize("failing", [3, 16])
def test_a_gateway_failing_mid_burst_loses_nothing_and_stops_the_job(app, gateway, monkeypatch, failing):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 16)
    # Which rows the failures land on is the threads' doing, not the sender's: a job spends one
    # call on each lane that called before the first failure stopped it (all 16, or only the
    # first lane's when the others' threads start after its answer, as on a loaded machine), and
    # the oldest rows lead the probes. The gateway's failures cost no attempt, so one attempt
    # each is enough, wherever the failures land.
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 1)
    promise(*[f"+2547120007{i:02d}" for i in range(40)])
    gateway.fail_next(failing, http_status=500)  # the first calls: some or all of the first lanes'
    t0 = utcnow()

    # The first failure stops every lane after the call it has in flight; their answers are
    # kept, and no lane is claimed while the gateway is in trouble.
    counts = send_at(t0)
    assert counts["paused"] == 1 and counts["failed"] == 0
    assert 1 <= counts["retry"] <= failing and counts["sent"] + counts["retry"] <= 16
    rows = outbox()
    retried = [r for r in rows if r.status == "pending" and r.failure_reason]
    untouched = [r for r in rows if r.status == "pending" and not r.failure_reason]
    assert len(retried) == counts["retry"] and len([r for r in rows if r.status == "sent"]) == counts["sent"]
    assert all(r.failure_reason.startswith("gateway error") for r in retried)
    assert {(r.attempts, r.next_attempt_at) for r in retried + untouched} == {(0, None)}
    assert len(untouched) == 40 - counts["sent"] - counts["retry"]

    # Later jobs spend the gateway's remaining failures the same way; then everything not yet
    # sent goes, and nothing twice: each failure cost one call, each row one accepted call.
    moment = t0
    for _ in range(failing + 1):
        if {r.status for r in outbox()} == {"sent"}:
            break
        moment += timedelta(hours=1)
        send_at(moment)
    rows = outbox()
    assert {r.status for r in rows} == {"sent"}
    assert handed_over(gateway) == promised(rows)
    assert gateway.requests_seen == 40 + failing
    # An attempt is an accepted call here: the gateway's failures cost none.
    assert sum(r.attempts for r in rows) == 40


def in_thread(app, work):
    """Run ``work()`` in a thread of its own with its own app context (so its own session)."""
    result = {}

    def run():
        with app.app_context():
            try:
                result["value"] = work()
            except BaseException as exc:  # surfaced by the test
                result["error"] = exc
            finally:
                db.session.remove()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_batch_is_handed_over_side_by_side_with_no_transaction_open(app, gateway, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    promise(*[f"+2547120008{i:02d}" for i in range(4)])
    db.session.remove()
    gateway.hold_next(4)  # every call hangs until released
    thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100))
    try:
        # All four calls are at the gateway at once: the batch takes one call's time.
        wait_for(lambda: gateway.held == 4 or not thread.is_alive(), timeout=10, message="4 calls in flight")
        assert gateway.held == 4, result
        # The claims were committed before the calls, and the sender holds no transaction
        # while it waits (on SQLite this write would wait for the sender's lock).
        assert [r.status for r in outbox()] == ["sending"] * 4
        promise("+254712000899")
    finally:
        gateway.release()
        thread.join(timeout=30)
    # The row written meanwhile went out in the next batch of the same job.
    assert result == {"value": {"sent": 5, "retry": 0, "failed": 0, "paused": 0}}
    assert [r.status for r in outbox()] == ["sent"] * 5


@pytest.mark.skipif(not PG_URL, reason="the job holds one PostgreSQL connection (DATABASE_URL)")
def test_a_database_connection_lost_mid_job_loses_nothing_and_sends_nothing_twice(app, gateway):
    till = "+254712000500"
    for i in range(4):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    gateway.hold_next(1, after=1)  # the first call answered and recorded, the second held
    thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100))
    try:
        wait_for(
            lambda: (gateway.held == 1 and outbox()[0].status == "sent") or not thread.is_alive(),
            timeout=30,
            message="the second call held after the first was recorded",
        )
        assert thread.is_alive(), result
        # The database drops every other connection (a failover, a restart, a network cut):
        # the job's among them, between two of its commits.
        dropped = db.session.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        db.session.remove()
        assert dropped >= 1
    finally:
        gateway.release()
        thread.join(timeout=60)
    # The job went on over a new connection: each receipt recorded sent, each reached the
    # gateway once, in order.
    assert result == {"value": {"sent": 4, "retry": 0, "failed": 0, "paused": 0}}
    assert [(r.status, r.attempts) for r in outbox()] == [("sent", 1)] * 4
    assert [m.message for m in gateway.inbox(till)] == [f"Receipt {i} for {till}" for i in range(4)]


def test_two_senders_side_by_side_never_hand_the_same_row_over_twice(app, gateway, monkeypatch):
    """On PostgreSQL the claims are FOR UPDATE SKIP LOCKED; on SQLite they take turns."""
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    promise(*[f"+254712{i:06d}" for i in range(200)])
    db.session.remove()
    start = threading.Barrier(2)

    def sender_job():
        start.wait(timeout=10)
        return send_due(db.session, get_client(), 1000)

    senders = [in_thread(app, sender_job) for _ in range(2)]
    for thread, _ in senders:
        thread.join(timeout=60)
    results = [result for _, result in senders]
    assert all("value" in r for r in results), results
    sent = [r["value"]["sent"] for r in results]
    assert sum(sent) == 200 and all(sent), sent  # both worked, and between them sent it all
    rows = outbox()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert handed_over(gateway) == promised(rows)
    assert gateway.requests_seen == 200


def test_base_url_sandbox_production_and_override():
    assert make_service("sandbox", "k")._make_url("/messaging") == (
        "https://api.sandbox.africastalking.com/version1/messaging"
    )
    assert (
        make_service("tuma", "k")._make_url("/messaging")
        == "https://api.africastalking.com/version1/messaging"
    )
    assert make_service("sandbox", "k", "http://127.0.0.1:8025/")._make_url("/messaging") == (
        "http://127.0.0.1:8025/version1/messaging"
    )
