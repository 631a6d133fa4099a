"""Merchants by USSD: customers pay a till (Buy goods) or a pay-bill number with an account
reference (Pay bill), free for the customer, the merchant's name shown before the PIN; every
payment reaches the merchant as an SMS with the payer's name, number, amount and code; the
merchant's menu shows balance and statement."""

import pytest
from sqlalchemy import select

from tests.escrow_helpers import FUNDS, cash_in, ledger_ok, sms_to
from tests.ussd_helpers import MERCHANT, Phone, available, options
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.users import create_user
from worker.jobs import execute_transfers

PIN, MERCHANT_PIN = "8642", MERCHANT["pin"]


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


@pytest.fixture
def till(merchant):
    """The cast's merchant, Mama Mboga, till 123456."""
    return merchant.account_id


@pytest.fixture
def paybill(app):
    """A pay-bill business, Kisumu Water (888880)."""
    user = create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin=MERCHANT["pin"],
        till="888880",
        paybill=True,
    )
    db.session.commit()
    return user.account_id


def only_request(kind: RequestKind) -> TransferRequest:
    db.session.expire_all()
    return db.session.execute(select(TransferRequest).where(TransferRequest.kind == kind.value)).scalar_one()


def test_buy_goods_pays_the_till_free_and_the_merchant_gets_an_sms(client, juma, till):
    phone = Phone(client, "0712000111")
    assert options(phone.dial())["5"] == "Buy goods"
    assert phone.send("5") == "CON Buy goods\nEnter till number"
    assert phone.send("123456") == "CON Pay Mama Mboga\nEnter amount"
    assert phone.send("250") == (
        "CON Pay KES 250.00 to Mama Mboga (123456)?\nFee: KES 0.00\n"
        "1. Confirm\n2. Cancel\n3. Pay with protection"
    )
    assert phone.send("1") == "CON Enter your PIN to pay KES 250.00 to Mama Mboga"
    assert phone.send(PIN) == (
        "END Paying KES 250.00 to Mama Mboga. You will receive an SMS confirmation shortly."
    )
    assert execute_transfers() == 1
    assert available(juma) == FUNDS - 250_00
    assert available(till) == 250_00 - 1_25  # the merchant pays 0.5% (tariffs.payee_fee)
    request = only_request(RequestKind.BUY_GOODS)
    [merchant_sms] = sms_to("+254700000002")
    assert merchant_sms.startswith(f"{request.code} Confirmed. KES 250.00 from JUMA OTIENO +254712000111")
    assert "Fee KES 1.25. Till balance KES 248.75." in merchant_sms
    customer_sms = sms_to("+254712000111")[-1]
    assert f"{request.code} Confirmed. KES 250.00 paid to MAMA MBOGA till 123456" in customer_sms
    assert "Transaction cost, KES 0.00." in customer_sms
    ledger_ok()

    # The merchant's own menu: balance and statement.
    assert options(Phone(client, "0700000002").dial()) == {
        "1": "Balance",
        "2": "Statement",
        "3": "My account",
        "4": "My approvals",
        "5": "Request payment",
        "6": "My requests",
    }
    assert Phone(client, "0700000002").walk("1", MERCHANT_PIN) == "END Your balance is KES 248.75."
    statement = Phone(client, "0700000002").walk("2", MERCHANT_PIN)
    assert f"{request.code} +KES 248.75 Juma Otieno" in statement  # net of the merchant's fee


def test_pay_bill_carries_the_account_reference_to_both_parties(client, juma, paybill):
    phone = Phone(client, "0712000111")
    assert phone.walk("6") == "CON Pay bill\nEnter business number"
    assert phone.send("888880") == "CON Pay Kisumu Water\nEnter account number"
    assert phone.send("acc-42") == "CON Account ACC-42\nEnter amount"
    assert phone.send("1200").startswith("CON Pay KES 1,200.00 to Kisumu Water (888880) for account ACC-42?")
    phone.send("1")
    assert phone.send(PIN).startswith("END Paying KES 1,200.00 to Kisumu Water.")
    execute_transfers()
    assert available(juma) == FUNDS - 1_200_00
    assert available(paybill) == 1_200_00 - 6_00  # the merchant pays 0.5%
    request = only_request(RequestKind.PAY_BILL)
    assert request.reference == "ACC-42"
    [merchant_sms] = sms_to("+254700000003")
    assert f"{request.code} Confirmed. JUMA OTIENO +254712000111 paid KES 1,200.00 for ACC-42" in merchant_sms
    assert "KES 1,200.00 sent to KISUMU WATER for account ACC-42" in sms_to("+254712000111")[-1]
    ledger_ok()


def test_tills_and_pay_bill_numbers_are_not_confused_and_balances_are_checked(client, juma, till, paybill):
    phone = Phone(client, "0712000111")
    assert phone.walk("5", "888880") == "CON Till 888880 is not on Tuma.\nBuy goods\nEnter till number"
    assert phone.send("12") == "CON A till number is 5 to 7 digits.\nBuy goods\nEnter till number"
    phone.send("123456")
    phone.send("20000")
    phone.send("1")
    assert phone.send(PIN) == "END Not enough money to pay KES 20,000.00. Your balance is KES 10,000.00."

    bill = Phone(client, "0712000111")
    assert bill.walk("6") == "CON Pay bill\nEnter business number"
    assert bill.send("123456").startswith("CON Business number 123456 is not on Tuma.")
    assert execute_transfers() == 0


def test_kiswahili_buy_goods(client, juma, till):
    db.session.execute(
        db.text("UPDATE users SET language = 'sw' WHERE phone IN ('+254712000111', '+254700000002')")
    )
    db.session.commit()
    phone = Phone(client, "0712000111")
    assert options(phone.dial())["5"] == "Nunua bidhaa"
    assert phone.walk("5", "123456", "100").startswith("CON Lipa KES 100.00 kwa Mama Mboga (123456)?")
    phone.send("1")
    phone.send(PIN)
    execute_transfers()
    assert "KES 100.00 kutoka JUMA OTIENO" in sms_to("+254700000002")[-1]
    assert "imelipwa kwa MAMA MBOGA till 123456" in sms_to("+254712000111")[-1]
