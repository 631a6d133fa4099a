"""Agents by USSD: deposit (cash-in), customer-started withdrawal (cash-out) with the fee and
the agent's commission as linked legs, float balance, commission, last transactions,
registering a customer (unlocking a PIN and raising the tier: tests/test_agent_unlock.py)."""

import pytest
from sqlalchemy import select

from tests.ussd_helpers import Phone, available, options, person
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, house_account
from ussd_app.ledger.check import check
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.execute import execute_requests
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import find_by_phone
from worker.jobs import execute_transfers

AGENT_PIN, PIN = "1111", "8642"
FLOAT = 100_000_00  # KES 100,000


@pytest.fixture
def agent(agent):
    """The cast's agent with KES 100,000 of float."""
    issue_float(db.session, agent, FLOAT, "BANK-1")
    db.session.commit()
    return agent.account_id


@pytest.fixture
def juma(customer):
    return customer.account_id


def sms_to(phone: str) -> list[str]:
    db.session.expire_all()
    bodies = list(
        db.session.execute(
            select(OutboxMessage.body).where(OutboxMessage.phone == phone).order_by(OutboxMessage.id)
        ).scalars()
    )
    db.session.commit()
    return bodies


def ledger_ok():
    failed = [f for f in check(db.session, trust_deposits_total=FLOAT) if not f.ok]
    assert not failed, failed


def house(kind: AccountKind) -> int:
    account = house_account(db.session, kind)
    db.session.refresh(account)
    return account.credits_posted - account.debits_posted


def deposit(client, customer="0712000111", amount="5000") -> str:
    phone = Phone(client, "0700000101")
    assert options(phone.dial())["1"] == "Deposit"
    phone.send("1")
    confirm = phone.send(customer)
    assert confirm.startswith("CON Deposit to Juma Otieno\nEnter amount"), confirm
    confirm = phone.send(amount)
    assert confirm.startswith(f"CON Deposit KES {int(amount):,}.00 to Juma Otieno +254712000111?"), confirm
    phone.send("1")
    return phone.send(AGENT_PIN)


def test_deposit_moves_float_to_the_customer_and_both_get_an_sms(client, agent, juma):
    body = deposit(client)
    assert body == "END Depositing KES 5,000.00 to Juma Otieno. You will both receive an SMS shortly."
    assert execute_transfers() == 1
    assert available(juma) == 5_000_00
    assert available(agent) == FLOAT - 5_000_00
    agent_sms = sms_to("+254700000101")[-1]  # after the float issue's
    assert (
        "Confirmed. You received KES 5,000.00 cash from JUMA OTIENO +254712000111 and deposited it"
        in agent_sms
    )
    assert "New float balance is KES 95,000.00." in agent_sms
    [customer_sms] = sms_to("+254712000111")
    assert "you deposited KES 5,000.00 with agent ALI AGENT +254700000101" in customer_sms
    assert "New balance is KES 5,000.00." in customer_sms
    ledger_ok()


def test_deposit_refuses_unknown_numbers_and_more_than_the_float(client, agent, juma):
    phone = Phone(client, "0700000101")
    assert phone.walk("1", "0799999999") == (
        "CON +254799999999 is not registered with Tuma.\nDeposit\nEnter the customer's phone number"
    )
    assert phone.send("0700000101").startswith("CON Enter the customer's number, not yours.")
    customer = find_by_phone(db.session, "+254712000111")
    customer.tier = "full"  # room for KES 200,000 (a basic wallet is told so before the PIN)
    db.session.commit()
    phone.send("0712000111")
    phone.send("200000")
    phone.send("1")
    assert phone.send(AGENT_PIN) == (
        "END Not enough float to deposit KES 200,000.00. Your float balance is KES 100,000.00."
    )
    assert execute_transfers() == 0


def fund(client, agent, juma, amount="5000"):
    deposit(client, amount=amount)
    execute_transfers()


def withdraw(client, amount="1000", pin=PIN) -> tuple[Phone, str]:
    phone = Phone(client, "0712000111")
    assert options(phone.dial())["4"] == "Withdraw cash"
    phone.send("4")
    assert phone.send("0700000101") == "CON Withdraw from Ali Agent\nEnter amount"
    return phone, phone.send(amount)


def test_customer_withdrawal_pays_fee_and_commission_as_linked_legs(client, agent, juma):
    fund(client, agent, juma)
    phone, confirm = withdraw(client)
    assert confirm == (
        "CON Withdraw KES 1,000.00 from agent Ali Agent +254700000101?\nFee: KES 29.00\n1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to withdraw KES 1,000.00 from Ali Agent"
    assert phone.send(PIN).startswith("END Withdrawing KES 1,000.00 from Ali Agent.")
    assert execute_transfers() == 1

    assert available(juma) == 5_000_00 - 1_000_00 - 29_00
    assert available(agent) == FLOAT - 5_000_00 + 1_000_00
    assert house(AccountKind.FEES) == 29_00 - 12_00
    assert house(AccountKind.COMMISSIONS) == 12_00
    customer_sms = sms_to("+254712000111")[-1]
    assert "Withdraw KES 1,000.00 from agent ALI AGENT +254700000101" in customer_sms
    assert "New balance is KES 3,971.00. Transaction cost, KES 29.00." in customer_sms
    agent_sms = sms_to("+254700000101")[-1]
    assert "Pay KES 1,000.00 cash to JUMA OTIENO +254712000111" in agent_sms
    assert "Commission KES 12.00." in agent_sms
    ledger_ok()

    # Executing the same request again posts nothing twice (leg ids come from the request id).
    request = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.WITHDRAWAL.value)
    ).scalar_one()
    assert request.status == RequestStatus.ACCEPTED.value and request.commission == 12_00
    execute_requests(db.session, [request])
    db.session.commit()
    assert available(juma) == 5_000_00 - 1_029_00
    assert house(AccountKind.COMMISSIONS) == 12_00
    ledger_ok()

    # The agent's own screens: commission earned, float balance, last transactions.
    assert Phone(client, "0700000101").walk("3", AGENT_PIN) == "END Commission earned: KES 12.00."
    assert Phone(client, "0700000101").walk("2", AGENT_PIN) == "END Your balance is KES 96,000.00."
    statement = Phone(client, "0700000101").walk("4", AGENT_PIN)
    assert f"{request.code} +KES 1,000.00 Juma Otieno" in statement


def test_withdrawal_refuses_non_agents_small_amounts_and_more_than_the_balance(
    client, agent, juma, second_customer
):
    phone = Phone(client, "0712000111")
    assert phone.walk("4", "0712000222") == (
        "CON +254712000222 is not a Tuma agent.\nWithdraw cash\nEnter the agent's phone number"
    )
    assert phone.send("0700000101") == "CON Withdraw from Ali Agent\nEnter amount"
    body = phone.send("10")
    assert body.startswith("CON You can withdraw from KES 50.00 to KES 250,000.00.")
    phone.send("1000")
    phone.send("1")
    assert phone.send(PIN) == (
        "END Not enough money to withdraw KES 1,000.00 plus fee KES 29.00. Your balance is KES 0.00."
    )
    assert execute_transfers() == 0


def test_agent_registers_a_customer_who_then_chooses_a_pin(client, agent):
    phone = Phone(client, "0700000101")
    assert phone.walk("5", "0712000333", "Akinyi", "Odhiambo", "12345678") == (
        "CON Register Akinyi Odhiambo +254712000333 ID 12345678?\n1. Confirm\n2. Cancel"
    )
    phone.send("1")
    assert phone.send(AGENT_PIN) == (
        "END Akinyi Odhiambo is registered. They should dial now to choose their PIN."
    )
    [invite] = sms_to("+254712000333")
    assert invite == (
        "Welcome to Tuma, Akinyi. Agent Ali Agent opened your account. Dial *384*7# to choose your PIN."
    )
    user = find_by_phone(db.session, "+254712000333")
    assert user.pin_hash is None and user.id_number == "12345678"

    customer = Phone(client, "0712000333")
    assert customer.dial() == "CON Welcome to Tuma, Akinyi. Choose a 4-digit PIN"
    assert customer.send("2468") == "CON Enter the PIN again to confirm"
    assert customer.send("2468") == "END Your PIN is set. Dial again to use Tuma."
    assert options(Phone(client, "0712000333").dial())["1"] == "Send money"
    assert Phone(client, "0712000333").walk("2", "1", "2468") == "END Your balance is KES 0.00."

    # The same number cannot be registered twice.
    assert (
        Phone(client, "0700000101")
        .walk("5", "0712000333")
        .startswith("CON +254712000333 is already registered.")
    )


def test_kiswahili_agent_and_customer(client, juma):
    user = person("+254700000102", "Baraka Wakala", pin=AGENT_PIN, role="agent", language="sw")
    issue_float(db.session, user, FLOAT, "BANK-2")
    db.session.commit()
    find_by_phone(db.session, "+254712000111").language = "sw"
    db.session.commit()
    phone = Phone(client, "0700000102")
    assert options(phone.dial())["1"] == "Weka pesa"
    phone.walk("1", "0712000111", "700", "1", AGENT_PIN)
    execute_transfers()
    agent_sms = sms_to("+254700000102")[-1]
    assert "Umepokea pesa taslimu KES 700.00 kutoka kwa JUMA OTIENO +254712000111" in agent_sms
    [customer_sms] = sms_to("+254712000111")
    assert "umeweka KES 700.00 kwa wakala BARAKA WAKALA" in customer_sms
