"""A transfer held for review (velocity rule) is told per kind: what it is and who (the number
topped up or invited, the agent); a held withdrawal tells the agent at the counter not to pay
out, and is told again if the operator refuses it (issue 15 item 18, attack on the fixes).
Through /ussd, the worker's job and the review CLI."""

import pytest

from tests.escrow_helpers import PIN, cash_in, sms_to, the_request
from tests.helpers import review
from tests.ussd_helpers import Phone, available
from ussd_app.payments.models import RequestKind, RequestStatus
from ussd_app.ussd.gsm7 import length
from worker import jobs

JUMA, AGENT = "+254712000111", "+254700000101"


@pytest.fixture
def juma(app, customer, agent, monkeypatch):
    account = cash_in(customer, agent)
    monkeypatch.setitem(app.config, "VELOCITY_MAX_VALUE_MAJOR", 50)  # anything over KES 50 is held
    return account


def held(kind: RequestKind):
    assert jobs.execute_transfers() == 1
    request = the_request(kind)
    assert request.status == RequestStatus.REVIEW.value, request.result
    return request


def one_segment(body: str) -> str:
    assert length(body) <= 160 and "  " not in body, body
    return body


def test_held_airtime_names_the_number(client, juma):
    phone = Phone(client, "0712000111")
    phone.walk("7", "2", "0799000111", "60", "1")
    assert phone.send(PIN).startswith("END Buying")
    request = held(RequestKind.AIRTIME)
    assert one_segment(sms_to(JUMA)[-1]) == (
        f"{request.code} On hold: KES 60.00 of airtime for +254799000111 waits for a security check. "
        "We will SMS the decision. Nothing has left your account."
    )


def test_held_airtime_in_kiswahili(client, juma):
    assert Phone(client, "0712000111").walk("2", "4", "2").startswith("END ")
    phone = Phone(client, "0712000111")
    phone.walk("7", "2", "0799000111", "60", "1")
    assert phone.send(PIN).startswith("END ")
    request = held(RequestKind.AIRTIME)
    assert one_segment(sms_to(JUMA)[-1]).startswith(
        f"{request.code} Imesimamishwa: muda wa maongezi wa KES 60.00 kwa +254799000111 unasubiri"
    )


def test_a_held_send_to_an_unregistered_number_names_the_number(client, juma):
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000999", "1", "500", "1")
    assert phone.send(PIN).startswith("END Sending")
    request = held(RequestKind.SEND_UNREGISTERED)
    assert one_segment(sms_to(JUMA)[-1]) == (
        f"{request.code} On hold: KES 500.00 to +254712000999 waits for a security check. "
        "We will SMS the decision. Nothing has left your account."
    )
    assert sms_to("+254712000999") == []  # no invitation for money that has not left


def withdraw_held(client):
    phone = Phone(client, "0712000111")
    phone.walk("4", "0700000101", "1000", "1")
    assert phone.send(PIN).startswith("END Withdrawing KES 1,000.00 from Ali Agent.")
    return held(RequestKind.WITHDRAWAL)


def test_a_held_withdrawal_tells_both_sides_no_cash_yet(client, runner, juma):
    agent_before = len(sms_to(AGENT))
    request = withdraw_held(client)
    assert one_segment(sms_to(JUMA)[-1]) == (
        f"{request.code} On hold: withdrawal of KES 1,000.00 at agent ALI AGENT waits for a security "
        "check. Take no cash until we SMS the decision."
    )
    agent = sms_to(AGENT)[agent_before:]
    assert [one_segment(b) for b in agent] == [
        f"{request.code} On hold: JUMA OTIENO +254712000111 withdrawing KES 1,000.00 waits for a "
        "security check. Pay out no cash until a Confirmed SMS."
    ]
    # Cleared: the agent gets the usual "Confirmed. Pay ... cash".
    result = review(runner, "clear", request.code)
    assert result.exit_code == 0, result.output
    assert jobs.execute_transfers() == 1
    assert sms_to(AGENT)[-1].startswith(f"{request.code} Confirmed. Pay KES 1,000.00 cash to JUMA OTIENO")


def test_a_refused_withdrawal_tells_the_waiting_agent(client, runner, juma):
    before = available(juma)
    request = withdraw_held(client)
    result = review(runner, "refuse", request.code)
    assert result.exit_code == 0, result.output
    assert one_segment(sms_to(AGENT)[-1]) == (
        f"{request.code} Withdrawal of KES 1,000.00 by JUMA OTIENO +254712000111 was stopped by a "
        "security check. Do not pay out any cash."
    )
    assert "Stopped by a security check" in sms_to(JUMA)[-1]
    assert available(juma) == before


def test_an_agent_started_withdrawal_held_tells_the_agent_to_wait(client, juma):
    """The agent was told "Pay out cash only after the SMS": the SMS they get must not be it."""
    agent = Phone(client, "0700000101")
    agent.walk("98", "9", "0712000111", "1000", "1")
    assert agent.send("1111").startswith("END Sent to Juma Otieno to approve")
    customer = Phone(client, "0712000111")
    customer.walk("3", "1", "1")
    assert customer.send(PIN).startswith("END Approved.")
    request = held(RequestKind.WITHDRAWAL)
    assert one_segment(sms_to(AGENT)[-1]) == (
        f"{request.code} On hold: JUMA OTIENO +254712000111 withdrawing KES 1,000.00 waits for a "
        "security check. Pay out no cash until a Confirmed SMS."
    )
    assert one_segment(sms_to(JUMA)[-1]).endswith("Take no cash until we SMS the decision.")
