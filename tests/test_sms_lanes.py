"""Lanes: a merchant paid many times in a burst gets its receipts many per job, in the order
they were written, each once; a busy number holds nobody else's back. The real SDK against
the local gateway on a real port (``devtools/gateway``), read through its received log."""

import threading
from datetime import timedelta

from sqlalchemy import select

from tests import sms_helpers
from tests.helpers import wait_for
from tests.sms_helpers import agent_with_float, execute, outbox, person
from tests.test_sms_sender import handed_over, in_thread, promise, promised, send_at
from ussd_app.africas_talking import get_client
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.sms import sender
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.sms.sender import claim_timeout, send_due
from worker import jobs

gateway = sms_helpers.gateway  # the fixture


def bodies(gateway, phone):
    """What the gateway received for ``phone``, in the order it accepted them."""
    return [m.message for m in gateway.inbox(phone)]


def written(rows, phone):
    return [r.body for r in rows if r.phone == phone]


def test_a_burst_to_one_number_goes_in_lanes_in_order_each_once(app, gateway, monkeypatch):
    # Lanes four deep, so the agent's 41 messages take several lanes, one after another.
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 4)
    agent = agent_with_float()
    for i in range(40):
        sms_helpers.send(agent, person(f"+2547130005{i:02d}", f"Customer {i}"), 100_00)
    assert execute() == 40

    counts = jobs.send_sms()  # 81 rows: the float's SMS, then two receipts a transfer
    assert counts == {"sent": 81, "retry": 0, "failed": 0, "paused": 0}
    rows = outbox()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert handed_over(gateway) == promised(rows) and gateway.requests_seen == 81
    # The agent's receipts (each with the balance after it) reached the gateway as written.
    assert len(written(rows, agent.phone)) == 41
    assert bodies(gateway, agent.phone) == written(rows, agent.phone)
    for phone in {r.phone for r in rows}:
        assert bodies(gateway, phone) == written(rows, phone)


def test_a_rate_limit_mid_lane_stops_it_and_the_rest_follow_in_order_once(app, gateway):
    till = "+254713000601"
    for i in range(6):
        promise(till, body=f"Receipt {i}")
    # The third call is refused with 429 (Africa's Talking's rate limit): the job pauses.
    gateway.fail_next(1, http_status=429, after=2)
    t0 = utcnow()

    assert send_at(t0) == {"sent": 2, "retry": 1, "failed": 0, "paused": 1}
    expected = [f"Receipt {i} for {till}" for i in range(6)]
    # Before it: sent once; it and after it: handed back, no attempt spent (the gateway's
    # failure, not the message's), it first.
    rows = outbox()
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 2 + [("pending", 0)] * 4
    assert rows[2].failure_reason.startswith("gateway error")
    assert bodies(gateway, till) == expected[:2]

    # Not before the gateway's pause is over (sms/circuit.py): no call at all.
    assert send_at(t0 + timedelta(seconds=5)) == {"sent": 0, "retry": 0, "failed": 0, "paused": 1}
    assert bodies(gateway, till) == expected[:2]
    assert send_at(t0 + timedelta(seconds=10)) == {"sent": 4, "retry": 0, "failed": 0, "paused": 0}

    rows = outbox()
    assert {r.status for r in rows} == {"sent"}
    assert bodies(gateway, till) == expected  # in order, once each
    assert handed_over(gateway) == promised(rows)
    assert gateway.requests_seen == 6 + 1  # each row accepted once, and the one 429


def test_a_busy_lane_given_more_rows_as_it_runs_stops_at_a_refusal_and_hands_the_rest_back(
    app, gateway, monkeypatch
):
    """Lanes four deep: the till's lane is given the number's next rows as it nears its end
    (``extend_lane``), so 20 receipts go in one lane, not five. A rate limit at the tenth
    stops it there: the rows claimed ahead for it go back unsent, no attempt spent, and follow
    in order after the backoff."""
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 4)
    till = "+254713000651"
    for i in range(20):
        promise(till, body=f"Receipt {i}")
    gateway.fail_next(1, http_status=429, after=9)
    t0 = utcnow()

    assert send_at(t0) == {"sent": 9, "retry": 1, "failed": 0, "paused": 1}
    expected = [f"Receipt {i} for {till}" for i in range(20)]
    rows = outbox()
    assert [(r.status, r.attempts) for r in rows] == [("sent", 1)] * 9 + [("pending", 0)] * 11
    assert all(r.claim_token is None for r in rows)
    assert bodies(gateway, till) == expected[:9]

    assert send_at(t0 + timedelta(seconds=5)) == {
        "sent": 0,
        "retry": 0,
        "failed": 0,
        "paused": 1,
    }  # the gateway's pause
    assert send_at(t0 + timedelta(seconds=10)) == {"sent": 11, "retry": 0, "failed": 0, "paused": 0}
    assert bodies(gateway, till) == expected  # in order, once each
    assert gateway.requests_seen == 20 + 1


def test_two_senders_side_by_side_never_hand_a_message_over_twice_nor_out_of_order(app, gateway, monkeypatch):
    """On PostgreSQL the lanes' rows are locked FOR UPDATE SKIP LOCKED and a lane is only the
    locked prefix of its number's rows; on SQLite the claims take turns."""
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    monkeypatch.setitem(app.config, "SMS_LANE_DEPTH", 8)
    tills = [f"+25471300070{i}" for i in range(3)]
    for i in range(40):
        promise(*tills, body=f"Receipt {i}")
        promise(f"+2547130008{i:02d}", body="One receipt")
    db.session.remove()
    start = threading.Barrier(2)

    def sender_job():
        start.wait(timeout=10)
        return send_due(db.session, get_client(), 1000)

    senders = [in_thread(app, sender_job) for _ in range(2)]
    for thread, _ in senders:
        thread.join(timeout=120)
    results = [result for _, result in senders]
    assert all("value" in r for r in results), results
    assert sum(r["value"]["sent"] for r in results) == 160
    rows = outbox()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert handed_over(gateway) == promised(rows) and gateway.requests_seen == 160
    for till in tills:
        assert bodies(gateway, till) == [f"Receipt {i} for {till}" for i in range(40)]


def test_a_busy_number_holds_nobody_elses_receipts_back(app, gateway, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    till = "+254713000901"
    for i in range(30):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    gateway.hold_next(1)  # the till's first call hangs: its lane is stuck
    thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100))
    try:
        wait_for(
            lambda: gateway.held == 1 or not thread.is_alive(), timeout=10, message="the till's call held"
        )
        # Receipts for others, written while the till's lane is stuck, go out in the same job.
        others = ["+254713000902", "+254713000903"]
        promise(*others)
        wait_for(
            lambda: all(bodies(gateway, phone) for phone in others) or not thread.is_alive(),
            timeout=10,
            message="the others' receipts beside the stuck lane",
        )
        assert gateway.held == 1 and thread.is_alive(), result
        assert bodies(gateway, till) == []
    finally:
        gateway.release()
        thread.join(timeout=60)
    assert result == {"value": {"sent": 32, "retry": 0, "failed": 0, "paused": 0}}
    assert bodies(gateway, till) == [f"Receipt {i} for {till}" for i in range(30)]


def test_a_renewed_claim_is_nobody_elses_until_a_timeout_after_its_renewal(app):
    till = "+254713000701"
    promise(till, body="First")
    promise(till, body="Second")
    t0 = utcnow()
    [lane] = sender.claim_lanes(db.session, 1, 5, t0)
    later = t0 + claim_timeout() - timedelta(seconds=1)
    assert sender.renew(db.session, lane, later) == {t.token for t in lane}
    # When the first claim would have timed out the lane is still its sender's: it renewed.
    assert sender.claim_lanes(db.session, 1, 5, t0 + claim_timeout()) == []
    # A timeout after the renewal it is anyone's (its sender died after renewing), in order.
    [again] = sender.claim_lanes(db.session, 1, 5, later + claim_timeout())
    assert [(t.id, t.attempt) for t in again] == [(t.id, 2) for t in lane]
    # The first sender's claims were taken over: renewing them holds nothing any more.
    assert sender.renew(db.session, lane, later + claim_timeout()) == set()


def claims_now():
    """(id, status, claimed_at) of every outbox row, read and the transaction ended at once (a
    read left open would keep a sender's commit waiting on SQLite)."""
    rows = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.claimed_at).order_by(OutboxMessage.id)
    ).all()
    db.session.commit()
    return rows


def test_a_live_sender_keeps_its_lane_past_the_claim_timeout(app, gateway, monkeypatch):
    # The claim timeout at its floor, 0.5 + 6 + 5 = 11.5 s: the job renews every 2.5 s.
    monkeypatch.setitem(app.config, "SMS_CONNECT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setitem(app.config, "SMS_READ_TIMEOUT_SECONDS", 6.0)
    monkeypatch.setitem(app.config, "SMS_CLAIM_TIMEOUT_SECONDS", 1)
    till = "+254713000702"
    for i in range(3):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    gateway.hold_next(1, after=1)  # the lane's second call hangs until released
    thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100))
    try:
        wait_for(
            lambda: gateway.held == 1 or not thread.is_alive(), timeout=10, message="the second call held"
        )
        wait_for(
            lambda: (
                [status for _, status, _ in claims_now()] == ["sent", "sending", "sending"]
                or not thread.is_alive()
            ),
            timeout=10,
            message="the first recorded",
        )
        claimed = {i: at for i, status, at in claims_now() if status == "sending"}
        assert thread.is_alive() and len(claimed) == 2, result

        def renewed():
            return all(at is not None and at > claimed[i] for i, _, at in claims_now()[1:])

        wait_for(
            lambda: renewed() or not thread.is_alive(),
            timeout=10,
            message="the lane's claims renewed while its sender lives",
        )
        assert thread.is_alive() and gateway.held == 1, result
        # Another sender looking when the lane's claim would have timed out finds it held.
        assert sender.claim_lanes(db.session, 1, 5, min(claimed.values()) + claim_timeout()) == []
    finally:
        gateway.release()
        thread.join(timeout=30)
    assert result == {"value": {"sent": 3, "retry": 0, "failed": 0, "paused": 0}}
    assert bodies(gateway, till) == [f"Receipt {i} for {till}" for i in range(3)]
