"""Sending the outbox: the real africastalking SDK against the local gateway on a real port,
with the gateway failing, refusing, hanging, and the sender killed mid-batch."""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from tests import sms_helpers
from tests.sms_helpers import agent_with_float, execute, outbox, person, wait_for
from ussd_app.extensions import db
from ussd_app.queues import SMS_QUEUE, get_queue
from ussd_app.sms import sender
from ussd_app.sms.client import get_client, make_service
from ussd_app.sms.outbox import add_sms
from ussd_app.sms.sender import Outcome, claim, claim_timeout, record, send_due, utcnow
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
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.failure_reason.startswith("gateway error")
    assert row.next_attempt_at == t0 + timedelta(seconds=10)  # SMS_RETRY_BASE_SECONDS

    assert sum(send_at(t0 + timedelta(seconds=9)).values()) == 0  # not due yet
    assert send_at(t0 + timedelta(seconds=10))["retry"] == 1
    assert outbox()[0].next_attempt_at == t0 + timedelta(seconds=30)  # backoff doubles
    assert send_at(t0 + timedelta(seconds=30))["sent"] == 1
    assert send_at(t0 + timedelta(hours=1))["sent"] == 0  # sent rows are never sent again

    assert gateway.requests_seen == 3
    [message] = gateway.inbox("+254712000101")
    [row] = outbox()
    assert (row.status, row.attempts, row.gateway_message_id) == ("sent", 3, message.id)
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


def test_an_unreachable_gateway_is_retried_and_pauses_the_batch(app, gateway):
    promise("+254712000105", "+254712000115", "+254712000125")
    running_url = app.config["AT_API_URL"]
    app.config["AT_API_URL"] = "http://127.0.0.1:9"  # discard port: connection refused
    try:
        assert send_at(utcnow()) == {"sent": 0, "retry": 1, "failed": 0, "paused": 1}
    finally:
        app.config["AT_API_URL"] = running_url
    tried, *untried = outbox()
    assert tried.status == "pending" and tried.failure_reason == "network: ConnectionError"
    # The others kept their attempts for when the gateway is back, and are due at once.
    assert [(r.status, r.attempts, r.next_attempt_at) for r in untried] == [("pending", 0, None)] * 2
    assert send_at(utcnow() + timedelta(seconds=10))["sent"] == 3


def test_insufficient_balance_on_our_account_pauses_the_batch(app, gateway):
    promise("+254712000106", "+254712000116")
    gateway.refuse("+254712000106", 405, times=1)
    assert send_at(utcnow()) == {"sent": 0, "retry": 1, "failed": 0, "paused": 1}
    assert [r.attempts for r in outbox()] == [1, 0]


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
    promise("+254712000107")
    gateway.fail_next(100, http_status=502)
    moment = utcnow()
    for _ in range(app.config["SMS_MAX_ATTEMPTS"] + 2):
        send_at(moment)
        moment += timedelta(hours=1)
    [row] = outbox()
    assert (row.status, row.attempts) == ("failed", app.config["SMS_MAX_ATTEMPTS"])
    assert row.failure_reason.startswith("gateway error")
    assert gateway.requests_seen == app.config["SMS_MAX_ATTEMPTS"]


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


def test_a_sender_killed_mid_batch_loses_nothing_and_resends_nothing_recorded(app, gateway):
    phones = [f"+25471200020{i}" for i in range(5)]
    promise(*phones)
    db.session.remove()
    gateway.hold_next(1, after=2)  # the third hand-over hangs
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
        wait_for(lambda: gateway.held == 1 or proc.poll() is not None, timeout=30, message="the held request")
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    rows = outbox()
    assert [r.status for r in rows] == ["sent", "sent", "sending", "pending", "pending"]
    recorded = {r.phone for r in rows if r.status == "sent"}
    in_flight = rows[2].phone
    # The gateway had the message when the sender died; it answers into a closed socket.
    gateway.release()
    wait_for(lambda: len(gateway.inbox()) == 3, message="the held message to be accepted")

    # Restart: too early, the in-flight row is still someone's claim; after the timeout it is not.
    assert send_at(utcnow())["sent"] == 2
    assert outbox()[2].status == "sending"
    assert send_at(utcnow() + claim_timeout() + timedelta(seconds=1))["sent"] == 1

    rows = outbox()
    assert {r.status for r in rows} == {"sent"}
    for phone in phones:
        count = len(gateway.inbox(phone))
        if phone == in_flight:
            # The one message whose answer was never recorded went out twice: the documented
            # at-least-once window, one HTTP call wide.
            assert count == 2 and rows[2].attempts == 2
        else:
            assert count == 1, phone
    assert all(len(gateway.inbox(p)) == 1 for p in recorded)


def test_the_job_is_safe_to_run_twice_and_rings_after_a_transfer_batch(app, gateway, redis):
    agent = agent_with_float()
    amina = person("+254712000301", "Amina Hassan")
    queue = get_queue(SMS_QUEUE)
    queue.empty()
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
