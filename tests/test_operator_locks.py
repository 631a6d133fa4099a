"""An operator's lock (the back office's "lock") is Tuma's own: an agent cannot lift it, the
locked person is sent to customer care, and a locked agent or merchant takes no payment,
whenever the payment was recorded. Through the real webhooks, back office and worker job."""

import re

import pytest

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import FUNDS, funded_customer, ledger_ok, sms_to
from tests.ussd_helpers import Phone, available, person
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest
from ussd_app.users import create_user, find_by_phone
from ussd_app.ussd.pin_guard import is_locked, unlock_pin
from worker import jobs

AGENT, AGENT_PIN = "+254700000101", "1111"
JUMA, PIN = "+254712000111", "8642"
AMINA, AMINA_PIN = "+254712000333", "2468"
MERCHANT, TILL = "+254700000002", "123456"
BILLER, PAYBILL = "+254700000003", "888880"

BY_TUMA = "END Your Tuma account is locked by Tuma. Please call customer care."
AGENT_TOLD = "END This account was locked by Tuma. Only customer care can unlock it."


def lock_in_back_office(client, phone: str) -> None:
    operator()
    login(client)
    user = find_by_phone(db.session, phone)
    response = post(client, f"/admin/accounts/{user.id}/lock", {"reason": "reported stolen"})
    assert response.status_code == 302
    db.session.expire_all()
    assert is_operator_locked(find_by_phone(db.session, phone))


def is_operator_locked(user) -> bool:
    """The back office's lock: a lock that never runs out (year 9999)."""
    return user.locked_until is not None and user.locked_until.year == 9999


def user(phone: str):
    db.session.expire_all()
    return find_by_phone(db.session, phone)


def asked_to_unlock() -> list[str]:
    return [body for body in sms_to(AMINA) if "asks to unlock your PIN" in body]


# -- item 1: an agent never lifts an operator's lock -----------------------------------------


@pytest.fixture
def amina(app):
    person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")
    person(AMINA, "Amina Hassan", pin=AMINA_PIN)
    return app.test_client()


def test_an_agent_is_told_only_customer_care_lifts_an_operators_lock_and_no_code_is_sent(amina):
    client = amina
    lock_in_back_office(client, AMINA)
    phone = Phone(client, "0700000101")
    assert phone.walk("6", "0712000333") == AGENT_TOLD
    assert not asked_to_unlock()
    assert is_operator_locked(user(AMINA))
    assert Phone(client, "0712000333").dial() == BY_TUMA


def test_an_operators_lock_over_a_pin_lock_is_not_lifted_by_the_code_already_sent(amina):
    """Three wrong PINs; an agent sends her a code; meanwhile an operator locks the account
    (stolen phone): the code typed in lifts nothing."""
    client = amina
    Phone(client, "0712000333").walk("2", "1", "0000", "0000", "0000")
    assert Phone(client, "0712000333").dial().startswith("END Your PIN is locked after too many wrong tries")
    phone = Phone(client, "0700000101")
    phone.walk("6", "0712000333", "Amina Hassan")
    assert phone.send(AGENT_PIN).startswith("CON Code sent by SMS to +254712000333")
    code = re.search(r"Code (\d{6})", asked_to_unlock()[-1]).group(1)
    lock_in_back_office(client, AMINA)
    assert phone.send(code) == AGENT_TOLD
    assert is_operator_locked(user(AMINA))
    assert not [b for b in sms_to(AMINA) if "was unlocked" in b]
    assert Phone(client, "0712000333").dial() == BY_TUMA


def test_an_operators_lock_between_the_name_and_the_agents_pin_sends_no_code(amina):
    client = amina
    Phone(client, "0712000333").walk("2", "1", "0000", "0000", "0000")
    phone = Phone(client, "0700000101")
    assert phone.walk("6", "0712000333", "Amina Hassan").startswith("CON Enter your PIN to send")
    lock_in_back_office(client, AMINA)
    assert phone.send(AGENT_PIN) == AGENT_TOLD
    assert not asked_to_unlock()


def test_the_pin_lock_keeps_its_message_and_an_agent_still_lifts_it(amina):
    client = amina
    Phone(client, "0712000333").walk("2", "1", "0000", "0000", "0000")
    assert Phone(client, "0712000333").dial() == (
        "END Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."
    )
    phone = Phone(client, "0700000101")
    phone.walk("6", "0712000333", "Amina Hassan", AGENT_PIN)
    code = re.search(r"Code (\d{6})", asked_to_unlock()[-1]).group(1)
    assert phone.send(code) == "END The PIN of Amina Hassan is unlocked. They can dial again."
    assert not is_locked(user(AMINA))


def test_locked_mid_session_the_customer_is_sent_to_customer_care(amina):
    client = amina
    phone = Phone(client, "0712000333")
    assert phone.walk("2", "1").startswith("CON ")
    lock_in_back_office(client, AMINA)
    assert phone.send(AMINA_PIN) == BY_TUMA
    assert "Ask an agent" not in Phone(client, "0712000333").dial()


def test_only_an_operator_lifts_an_operators_lock(amina):
    from ussd_app.ussd.pin_guard import OperatorLock

    client = amina
    lock_in_back_office(client, AMINA)
    agent = find_by_phone(db.session, AGENT)
    with pytest.raises(OperatorLock):
        unlock_pin(db.session, user(AMINA), agent=agent)
    with pytest.raises(OperatorLock):
        unlock_pin(db.session, user(AMINA))
    db.session.rollback()
    assert is_operator_locked(user(AMINA))
    # The back office lifts it.
    response = post(client, f"/admin/accounts/{user(AMINA).id}/unlock")
    assert response.status_code == 302
    assert not is_locked(user(AMINA))
    assert Phone(client, "0712000333").walk("2", "1", AMINA_PIN) == "END Your balance is KES 0.00."


def test_the_cli_lifts_an_operators_lock(amina, runner):
    client = amina
    lock_in_back_office(client, AMINA)
    result = runner.invoke(args=["accounts", "unlock", "--phone", "0712000333"])
    assert result.exit_code == 0, result.output
    assert not is_locked(user(AMINA))


# -- item 2: a locked agent or merchant takes no payment -------------------------------------


@pytest.fixture
def businesses(app):
    """Juma funded by the agent Ali; a till and a pay bill."""
    funded_customer()
    create_user(db.session, phone=MERCHANT, name="Mama Mboga", role="merchant", pin="2222", till=TILL)
    create_user(
        db.session, phone=BILLER, name="Kisumu Water", role="merchant", pin="3333", till=PAYBILL, paybill=True
    )
    db.session.commit()
    return app.test_client()


NUMBER_SCREENS = [
    (
        AGENT,
        ["4"],
        "0700000101",
        "This agent cannot take withdrawals now.\nWithdraw cash\nEnter the agent's phone number",
    ),
    (MERCHANT, ["5"], TILL, "This business cannot take payments now.\nBuy goods\nEnter till number"),
    (BILLER, ["6"], PAYBILL, "This business cannot take payments now.\nPay bill\nEnter business number"),
]


@pytest.mark.parametrize(
    "business,path,number,refused", NUMBER_SCREENS, ids=["withdraw", "buy goods", "pay bill"]
)
def test_a_locked_business_is_refused_at_the_number_screen(businesses, business, path, number, refused):
    client = businesses
    lock_in_back_office(client, business)
    phone = Phone(client, "0712000111")
    phone.walk(*path)
    assert phone.send(number) == f"CON {refused}"


# The customer's whole walk, up to the PIN, for a payment to each kind of business.
WALKS = [
    (AGENT, ["4", "0700000101", "500", "1", PIN], "END Withdrawing", "withdrawal of KES 500.00 not made"),
    (MERCHANT, ["5", TILL, "500", "1", PIN], "END Paying", "KES 500.00 not paid"),
    (BILLER, ["6", PAYBILL, "ACC1", "500", "1", PIN], "END Paying", "KES 500.00 not paid"),
]


@pytest.mark.parametrize("business,walk,done,failed", WALKS, ids=["withdraw", "buy goods", "pay bill"])
def test_a_payment_recorded_before_the_lock_is_refused_by_the_worker(
    businesses, business, walk, done, failed
):
    """The request was recorded while the business was open; an operator locks it before the
    worker runs: nothing is paid, the payer is told by SMS, the business is told nothing
    (an agent must not hand out cash)."""
    client = businesses
    payer = find_by_phone(db.session, JUMA)
    assert Phone(client, "0712000111").walk(*walk).startswith(done)
    before_business = len(sms_to(business))
    lock_in_back_office(client, business)
    assert jobs.execute_transfers() == 1
    assert available(payer.account_id) == FUNDS
    db.session.expire_all()
    [request] = (
        db.session.query(TransferRequest)
        .filter(TransferRequest.debit_account_id == payer.account_id)
        .filter(TransferRequest.kind != RequestKind.DEPOSIT.value)
        .all()
    )
    assert request.status == RequestStatus.REJECTED.value and request.result == "payee_locked"
    assert f"Failed: {failed}." in sms_to(JUMA)[-1]
    assert "cannot take payments now." in sms_to(JUMA)[-1]
    assert len(sms_to(business)) == before_business
    ledger_ok()


def test_the_locked_answers_fit_one_segment_in_both_languages(app):
    from ussd_app.i18n import t
    from ussd_app.messages.inbound import LOCKED_REPLIES
    from ussd_app.ussd.gsm7 import length

    for language in ("en", "sw"):
        for english in LOCKED_REPLIES.values():
            text = t(language, english, domain="sms")
            assert language == "en" or text != english, english
            assert length(text) is not None and length(text) <= 160, text
