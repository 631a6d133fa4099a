"""A gateway outage longer than the attempts allow (``sms/circuit.py``): the real africastalking
SDK against the local gateway made to fail for everyone (connection refused, or a 503 on every
call), then brought back. The receipts keep their attempts, the senders hold off and probe
with one message, and once the gateway answers every receipt goes, once, in order per number;
a message the gateway refuses on its own is still given up, and so is a "poison" one whose own
calls fail at the HTTP level (the gateway fine for everyone else), after one pause only."""

import logging
from datetime import timedelta

import pytest

from tests import sms_helpers
from tests.sms_helpers import outbox
from tests.test_sms_lanes import bodies
from tests.test_sms_sender import promise, send_at
from ussd_app.clock import utcnow
from ussd_app.sms import circuit

gateway = sms_helpers.gateway  # the fixture

NUMBERS = ["+254712300101", "+254712300102", "+254712300103"]
REFUSED = "+254712300199"  # the gateway refuses this one itself (403 InvalidPhoneNumber)
MAINTAIN_EVERY = timedelta(seconds=15)  # how often the periodic job rings the sender


def metric(client, name: str) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture
def small(app, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 2)
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 4)
    monkeypatch.setitem(app.config, "SMS_GATEWAY_PAUSE_SECONDS", 10)
    monkeypatch.setitem(app.config, "SMS_GATEWAY_PAUSE_MAX_SECONDS", 40)


@pytest.mark.parametrize("how", ["connection refused", "503 for everyone"])
def test_an_outage_longer_than_the_attempts_spends_none_and_every_receipt_goes_once_in_order(
    app, client, gateway, small, caplog, how
):
    caplog.set_level(logging.WARNING, logger="ussd_app.sms.circuit")
    expected = {}
    for i in range(3):
        for phone in NUMBERS:
            promise(phone, body=f"Receipt {i}")
            expected.setdefault(phone, []).append(f"Receipt {i} for {phone}")
    promise(REFUSED)
    gateway.refuse(REFUSED, 403)
    running_url = app.config["AT_API_URL"]
    if how == "connection refused":
        app.config["AT_API_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    else:
        gateway.outage(503)

    # Ten minutes down, the sender rung every 15 s: 40 jobs, where 2 attempts each would have
    # given every receipt up within the first few.
    moment = utcnow()
    calls = []
    try:
        for _ in range(40):
            seen = gateway.requests_seen
            counts = send_at(moment)
            calls.append(gateway.requests_seen - seen)
            assert counts["paused"] == 1 and counts["sent"] == counts["failed"] == 0, counts
            rows = outbox()
            assert {(r.status, r.attempts, r.claim_token) for r in rows} == {("pending", 0, None)}
            moment += MAINTAIN_EVERY
        assert metric(client, "tuma_sms_gateway_down") == 1
        assert metric(client, "tuma_sms_gateway_down_since_seconds") > 0
    finally:
        app.config["AT_API_URL"] = running_url
        gateway.recover()

    tried = [r for r in outbox() if r.failure_reason]
    assert tried and {r.failure_reason.split(":")[0] for r in tried} <= {"network", "gateway error"}
    if how == "503 for everyone":
        # The first job's lanes each spent at most one call; after it, one probe per pause
        # (10 s, doubling to 40 s): never more than one call a job, and most jobs none.
        assert calls[0] <= 4 and max(calls[1:]) == 1
        assert sum(calls[1:]) <= 40 * 15 // 40 + 3
    assert gateway.inbox() == []

    # The gateway is back: the next probe closes the circuit and everything goes.
    for _ in range(5):
        if {r.status for r in outbox()} <= {"sent", "failed"}:
            break
        moment += MAINTAIN_EVERY
        send_at(moment)
    rows = outbox()
    refused = [r for r in rows if r.phone == REFUSED]
    assert [(r.status, r.attempts, r.failure_reason) for r in refused] == [
        ("failed", 1, "403 InvalidPhoneNumber")
    ]
    assert {(r.status, r.attempts) for r in rows if r.phone != REFUSED} == {("sent", 1)}
    for phone in NUMBERS:
        assert bodies(gateway, phone) == expected[phone]  # once each, in order
    assert metric(client, "tuma_sms_gateway_down") == 0

    said = [r.getMessage() for r in caplog.records if r.name == "ussd_app.sms.circuit"]
    assert said[0].startswith("sms gateway down")
    assert any(line.startswith("sms gateway still down") for line in said)
    assert said[-1].startswith("sms gateway answers again")


def test_a_message_refused_on_its_own_is_given_up_and_opens_no_circuit(app, gateway, small, caplog):
    caplog.set_level(logging.WARNING, logger="ussd_app.sms.circuit")
    promise(REFUSED, NUMBERS[0])
    gateway.refuse(REFUSED, 407)  # CouldNotRoute, every time: retried, then given up
    moment = utcnow()
    for _ in range(4):
        assert send_at(moment)["paused"] == 0
        moment += timedelta(hours=1)
    refused, fine = outbox()
    assert (refused.status, refused.attempts, refused.failure_reason) == ("failed", 2, "407 CouldNotRoute")
    assert (fine.status, fine.attempts) == ("sent", 1)
    assert circuit.read() is None
    assert not [r for r in caplog.records if r.name == "ussd_app.sms.circuit"]


def test_only_one_sender_probes_and_the_probe_goes_to_another_number(app, gateway, small, redis):
    promise(*NUMBERS)
    gateway.outage(503)
    t0 = utcnow()
    send_at(t0)  # opens the circuit
    state = circuit.read()
    assert state is not None and state.last_phone in NUMBERS
    after = t0 + timedelta(seconds=10)

    # Another sender is probing: this one calls nobody.
    redis.set(circuit.PROBE_KEY, "1")
    seen = gateway.requests_seen
    assert send_at(after) == {"sent": 0, "retry": 0, "failed": 0, "paused": 1}
    assert gateway.requests_seen == seen
    redis.delete(circuit.PROBE_KEY)

    # The probe: one call, for a number other than the one whose call failed last.
    gateway.recover()
    counts = send_at(after)
    assert counts == {"sent": 3, "retry": 0, "failed": 0, "paused": 0}
    assert gateway.requests_seen == seen + 3
    assert gateway.inbox()[0].to != state.last_phone
    assert circuit.read() is None


POISON = "+254712300177"  # the gateway answers everyone but this number with a 500


def test_a_poison_message_is_given_up_after_its_attempts_and_pauses_the_senders_once(
    app, gateway, small, caplog, monkeypatch
):
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 3)
    caplog.set_level(logging.WARNING, logger="ussd_app.sms.circuit")
    promise(POISON, body="Poison")  # the oldest row: claimed first, every time it is due
    expected = {}
    for phone in NUMBERS:
        promise(phone, body="Receipt 0")
        expected[phone] = [f"Receipt 0 for {phone}"]
    gateway.outage(500, phone=POISON)

    # The sender rung every 15 s, a new receipt promised before each ring: the poison row is
    # retried with its backoff (10 s, 20 s) until its attempts are spent; the others go as usual.
    moment = utcnow()
    paused = late = 0
    for i in range(1, 9):
        phone = NUMBERS[i % len(NUMBERS)]
        promise(phone, body=f"Receipt {i}")
        expected[phone].append(f"Receipt {i} for {phone}")
        counts = send_at(moment)
        paused += counts["paused"]
        late += f"Receipt {i} for {phone}" not in bodies(gateway, phone)
        moment += MAINTAIN_EVERY

    [poison] = outbox(phone=POISON)
    assert (poison.status, poison.attempts) == ("failed", 3)
    assert poison.failure_reason == "gateway error: Internal Server Error (this number only)"
    assert bodies(gateway, POISON) == []
    assert {(r.status, r.attempts) for r in outbox() if r.phone != POISON} == {("sent", 1)}
    for phone in NUMBERS:
        assert bodies(gateway, phone) == expected[phone]  # once each, in order
    # Its first failure was taken for the gateway's: one pause (10 s, over by the next ring),
    # then the probe to another number closed it; never again after that.
    assert paused == 1 and late <= 1
    said = [r.getMessage() for r in caplog.records if r.name == "ussd_app.sms.circuit"]
    assert len(said) == 2
    assert said[0].startswith("sms gateway down") and said[1].startswith("sms gateway answers")
    assert circuit.read() is None


def test_an_outage_while_a_number_is_suspect_costs_at_most_its_one_row_an_attempt(
    app, gateway, small, monkeypatch
):
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 3)
    promise(POISON, *NUMBERS)
    gateway.outage(500, phone=POISON)
    t0 = utcnow()
    send_at(t0)  # the poison row's failure opens the circuit
    promise(NUMBERS[0], body="Next")  # (the probe goes to another number than the poison one)
    send_at(t0 + MAINTAIN_EVERY)  # the probe closes it; the poison row spends its attempt 1
    [poison] = outbox(phone=POISON)
    assert (poison.status, poison.attempts) == ("pending", 1) and circuit.read() is None

    # Then the gateway fails for everyone while the poison number is still suspect.
    gateway.recover(POISON)
    gateway.outage(503)
    promise(*NUMBERS, body="Later")
    moment = t0 + MAINTAIN_EVERY
    for _ in range(12):
        moment += MAINTAIN_EVERY
        send_at(moment)
    assert circuit.read() is not None
    rows = outbox()
    assert {(r.status, r.attempts) for r in rows if r.body.startswith("Later")} == {("pending", 0)}
    [poison] = [r for r in rows if r.phone == POISON]
    assert poison.status == "pending" and poison.attempts <= 2  # at most one more, its own

    gateway.recover()
    for _ in range(10):
        if {r.status for r in outbox()} == {"sent"}:
            break
        moment += timedelta(minutes=1)
        send_at(moment)
    assert {r.status for r in outbox()} == {"sent"}
    assert len(bodies(gateway, POISON)) == 1
    for phone in NUMBERS:
        assert bodies(gateway, phone) == [
            f"Test message for {phone}",
            *([f"Next for {phone}"] if phone == NUMBERS[0] else []),
            f"Later for {phone}",
        ]


def test_two_poison_messages_are_not_each_others_probe_and_both_are_given_up(
    app, gateway, small, monkeypatch
):
    monkeypatch.setitem(app.config, "SMS_MAX_ATTEMPTS", 2)
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 1)  # one lane: the poison rows go first, one by one
    other = "+254712300178"
    promise(POISON, other, body="Poison")  # the two oldest rows
    gateway.outage(500, phone=POISON)
    gateway.outage(502, phone=other)
    moment = utcnow()
    for i in range(8):
        promise(NUMBERS[0], body=f"Receipt {i}")
        send_at(moment)
        moment += MAINTAIN_EVERY
    assert {(r.phone, r.status, r.attempts) for r in outbox() if r.body.startswith("Poison")} == {
        (POISON, "failed", 2),
        (other, "failed", 2),
    }
    assert bodies(gateway, NUMBERS[0]) == [f"Receipt {i} for {NUMBERS[0]}" for i in range(8)]
    assert circuit.read() is None
