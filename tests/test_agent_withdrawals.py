"""Withdrawals an agent starts: the agent enters the customer's number and amount, sees the
name and fee, confirms with the agent's PIN; the customer approves in My approvals with their
PIN (or declines); approved, it executes like a customer-started withdrawal (same kind, fee
and commission legs). Pending requests expire; every decision happens once, races included."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.escrow_helpers import FUNDS, PIN, at_once, cash_in, house, ledger_ok, sms_to
from tests.ussd_helpers import Phone, available, options
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, Transfer
from ussd_app.payments.agent_withdrawals import WithdrawalApproval
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest
from ussd_app.users import find_by_phone
from ussd_app.ussd import approvals
from worker import jobs

AGENT_PIN = "1111"
AGENT, CUSTOMER = "+254700000101", "+254712000111"


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def agent_account() -> int:
    return find_by_phone(db.session, AGENT).account_id


def agent_asks(client, customer="0712000111", amount="1000", fee="29.00") -> str:
    phone = Phone(client, "0700000101")
    assert options(phone.dial())["8"] == "My approvals"  # the menu's first page
    assert phone.send("98") == "CON 9. Withdraw cash\n10. Verify customer ID\n0. Back"
    assert phone.send("9") == "CON Withdraw for a customer\nEnter the customer's phone number"
    assert phone.send(customer) == "CON Withdraw for Juma Otieno\nEnter amount"
    assert phone.send(amount) == (
        f"CON Withdraw KES {int(amount):,}.00 for Juma Otieno +254712000111?\nFee: KES {fee}\n"
        "1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to ask Juma Otieno to approve"
    done = phone.send(AGENT_PIN)
    assert phone.repeat() == done  # the gateway retries: still one request
    return done


def approval_id() -> str:
    db.session.expire_all()
    return db.session.execute(select(WithdrawalApproval.id)).scalar_one()


def withdrawals() -> int:
    db.session.expire_all()
    n = db.session.execute(
        select(func.count()).where(TransferRequest.kind == RequestKind.WITHDRAWAL.value)
    ).scalar_one()
    db.session.commit()
    return n


def customer_decides(client, choice: str, pin=PIN) -> str:
    phone = Phone(client, "0712000111")
    assert phone.walk("3") == (
        "CON Waiting for your approval:\n1. Withdraw KES 1,000.00 at agent Ali Agent, fee KES 29.00"
    )
    assert phone.send("1") == (
        "CON Withdraw KES 1,000.00 at agent Ali Agent, fee KES 29.00\n1. Approve\n2. Decline"
    )
    phone.send(choice)
    return phone.send(pin)


def test_the_customer_approves_and_it_executes_like_a_withdrawal(client, juma):
    assert agent_asks(client) == (
        "END Sent to Juma Otieno to approve in My approvals. Pay out cash only after the SMS."
    )
    assert withdrawals() == 0 and jobs.execute_transfers() == 0  # nothing moves before approval
    [asked] = sms_to(CUSTOMER)[1:]  # after the deposit's receipt
    assert asked == (
        "Agent ALI AGENT +254700000101 asks to withdraw KES 1,000.00, fee KES 29.00. "
        "With this agent now? Dial *384*7# > My approvals within 10 min."
    )
    float_before = available(agent_account())

    assert customer_decides(client, "1") == "END Approved. You will receive an SMS confirmation."
    assert jobs.execute_transfers() == 1
    assert available(juma) == FUNDS - 1_000_00 - 29_00
    assert available(agent_account()) == float_before + 1_000_00
    assert house(AccountKind.COMMISSIONS).credits_posted == 12_00
    fees = house(AccountKind.FEES)
    assert fees.credits_posted - fees.debits_posted == 29_00 - 12_00
    request = db.session.get(TransferRequest, approval_id())
    assert (request.kind, request.status, request.fee, request.commission) == (
        RequestKind.WITHDRAWAL.value,
        RequestStatus.ACCEPTED.value,
        29_00,
        12_00,
    )
    assert f"{request.code} Confirmed. On " in sms_to(CUSTOMER)[-1]
    assert "Withdraw KES 1,000.00 from agent ALI AGENT +254700000101" in sms_to(CUSTOMER)[-1]
    agent_sms = sms_to(AGENT)[-1]
    assert "Pay KES 1,000.00 cash to JUMA OTIENO +254712000111" in agent_sms
    assert "Commission KES 12.00." in agent_sms
    ledger_ok()
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."


def test_declining_tells_the_agent_and_moves_nothing(client, juma):
    agent_asks(client)
    before = len(sms_to(AGENT))
    assert customer_decides(client, "2") == "END Declined."
    assert withdrawals() == 0
    assert available(juma) == FUNDS
    assert sms_to(AGENT)[before:] == [
        "JUMA OTIENO +254712000111 declined your request to withdraw KES 1,000.00. Do not pay out any cash."
    ]
    assert not approvals.decide(
        db.session, find_by_phone(db.session, CUSTOMER), f"withdrawal:{approval_id()}", approve=True
    )
    ledger_ok()


def test_a_wrong_pin_does_not_approve(client, juma):
    agent_asks(client)
    assert customer_decides(client, "1", pin="0000") == (
        "CON Wrong PIN. 2 tries left.\nEnter your PIN to approve"
    )
    assert withdrawals() == 0


def test_an_unanswered_request_expires_once_and_the_agent_is_told(app, client, juma):
    agent_asks(client)
    before = len(sms_to(AGENT))
    assert jobs.expire_agent_withdrawals(now=utcnow() + timedelta(minutes=9)) == 0
    when = utcnow() + timedelta(minutes=11)
    assert sorted(at_once(app, *[lambda: jobs.expire_agent_withdrawals(now=when)] * 2)) == [0, 1]
    assert sms_to(AGENT)[before:] == [
        "Your request to withdraw KES 1,000.00 from JUMA OTIENO +254712000111 expired unapproved. "
        "Do not pay out any cash."
    ]
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."
    assert withdrawals() == 0
    ledger_ok()


def test_a_request_past_its_time_cannot_be_approved_before_the_job_runs(app, client, juma):
    app.config["AGENT_WITHDRAWAL_EXPIRY_SECONDS"] = 0
    try:
        agent_asks(client)
    finally:
        app.config["AGENT_WITHDRAWAL_EXPIRY_SECONDS"] = 600
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."
    customer = find_by_phone(db.session, CUSTOMER)
    assert not approvals.decide(db.session, customer, f"withdrawal:{approval_id()}", approve=True)
    assert withdrawals() == 0


def test_two_sessions_approving_at_once_execute_it_once(app, client, juma):
    agent_asks(client)
    key = f"withdrawal:{approval_id()}"

    def approve():
        customer = find_by_phone(db.session, CUSTOMER)
        done = approvals.decide(db.session, customer, key, approve=True)
        db.session.commit()
        return done

    assert sorted(at_once(app, approve, approve)) == [False, True]
    assert jobs.execute_transfers() == 1
    assert available(juma) == FUNDS - 1_029_00
    db.session.expire_all()
    assert db.session.execute(select(func.count()).where(Transfer.code == "withdrawal")).scalar_one() == 1
    assert sum("Pay KES 1,000.00 cash" in b for b in sms_to(AGENT)) == 1
    ledger_ok()


def test_approving_while_it_expires_resolves_it_once(app, client, juma):
    agent_asks(client)
    key = f"withdrawal:{approval_id()}"
    when = utcnow() + timedelta(minutes=11)

    def approve():
        customer = find_by_phone(db.session, CUSTOMER)
        done = approvals.decide(db.session, customer, key, approve=True)
        db.session.commit()
        return "approved" if done else "gone"

    def expire():
        return "expired" if jobs.expire_agent_withdrawals(now=when) else "nothing"

    results = at_once(app, approve, expire)
    assert results in (["approved", "nothing"], ["gone", "expired"]), results
    jobs.execute_transfers()
    approved = results[0] == "approved"
    assert withdrawals() == int(approved)
    assert available(juma) == FUNDS - (1_029_00 if approved else 0)
    ledger_ok()


def test_only_customers_and_amounts_in_range(client, juma, merchant):
    phone = Phone(client, "0700000101")
    assert phone.walk("9", "0700000101").startswith("CON Enter the customer's number, not yours.")
    assert phone.send("0799999999").startswith("CON +254799999999 is not registered with Tuma.")
    assert phone.send("0700000002").startswith("CON +254700000002 is not a customer account.")
    phone.send("0712000111")
    assert phone.send("10").startswith("CON You can withdraw from KES 50.00 to KES 250,000.00.")


def test_kiswahili_customer_reads_the_request_in_kiswahili(client, juma):
    customer = find_by_phone(db.session, CUSTOMER)
    customer.language = "sw"
    db.session.commit()
    agent_asks(client)
    assert sms_to(CUSTOMER)[-1].startswith("Wakala ALI AGENT +254700000101 anaomba kutoa KES 1,000.00")
    assert (
        Phone(client, "0712000111")
        .walk("3")
        .endswith("1. Toa KES 1,000.00 kwa wakala Ali Agent, ada KES 29.00")
    )


def test_approving_without_the_money_tells_both_and_moves_nothing(client, juma):
    agent_asks(client, amount="9990", fee="115.00")  # with the fee, more than Juma's KES 10,000
    before = len(sms_to(AGENT))
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "1")
    # Said on the screen too (round 10 attack: it said "Approved." at the counter).
    assert phone.send(PIN) == "END Not enough money to pay KES 10,105.00. Your balance is KES 10,000.00."
    assert withdrawals() == 0 and jobs.execute_transfers() == 0
    assert sms_to(AGENT)[before:] == [
        "JUMA OTIENO +254712000111 does not have enough money to withdraw KES 9,990.00. "
        "Do not pay out any cash."
    ]
    assert sms_to(CUSTOMER)[-1] == (
        "Not enough money to withdraw KES 9,990.00 plus fee KES 115.00 at agent ALI AGENT. "
        "Your balance is KES 10,000.00."
    )
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."
    ledger_ok()
