"""A gateway outage longer than the attempts allow (``sms/circuit.py``): the real africastalking
SDK against the local gateway made to fail for everyone (connection refused, or a 503 on every
call), then brought back. The receipts keep their attempts, the senders hold off and probe
with one message, and once the gateway answers every receipt goes, once, in order per number;
a message the gateway refuses on its own is still given up."""

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
