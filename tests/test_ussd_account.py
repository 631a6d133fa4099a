"""My account: balance and mini statement after the PIN, change PIN, language."""

import pytest
from sqlalchemy import select

from tests.helpers import fund
from tests.ussd_helpers import Phone, options, person, screen
from ussd_app import pins
from ussd_app.extensions import db
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import find_by_phone
from worker.jobs import execute_transfers

PIN = "8642"


@pytest.fixture
def juma(customer):
    fund(customer.account_id, 1_234_500)
    return customer


def test_balance_after_pin(client, juma):
    phone = Phone(client, "0712000111")
    phone.dial()
    assert options(phone.send("2")) == {
        "1": "Balance",
        "2": "Mini statement",
        "3": "Change PIN",
        "4": "Language",
        "5": "Reverse a transaction",
    }
    assert screen(phone.send("1")) == "Enter your PIN to see your balance"
    assert phone.send(PIN) == "END Your balance is KES 12,345.00."


def test_wrong_pin_shows_no_balance(client, juma):
    phone = Phone(client, "0712000111")
    body = phone.walk("2", "1", "0000")
    assert body.startswith("CON Wrong PIN. 2 tries left.\nEnter your PIN to see your balance")
    assert "12,345" not in body


def _sends(sender_account: int, recipient_account: int, amounts):
    for amount in amounts:
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind="send",
            debit_account_id=sender_account,
            credit_account_id=recipient_account,
            amount=amount,
            fee=0,
        )
        db.session.commit()
        execute_transfers()  # one at a time, so "newest first" has one meaning


def test_mini_statement_shows_the_latest_on_screen_and_all_five_by_sms(client, juma):
    wanjiru = person("+254712000222", "Wanjiru Kamau", pin="9753")
    juma_phone = juma.phone
    _sends(juma.account_id, wanjiru.account_id, [10_000, 20_000, 30_000, 40_000, 50_000, 60_000])
    body = Phone(client, "0712000111").walk("2", "2", PIN)
    assert body.startswith("END ")
    lines = screen(body).splitlines()
    assert lines[-1] == "Full statement sent by SMS."
    assert "-KES 600.00 Wanjiru Kamau" in lines[0]  # newest first
    assert len(body) - 4 <= 160
    [sms] = (
        db.session.execute(
            select(OutboxMessage).where(OutboxMessage.phone == juma_phone).order_by(OutboxMessage.id)
        )
        .scalars()
        .all()[-1:]
    )
    statement = sms.body.splitlines()
    assert statement[0] == "Tuma mini statement:"
    assert [line.split(" ", 2)[2] for line in statement[1:]] == [
        f"-KES {n}00.00 Wanjiru Kamau" for n in (6, 5, 4, 3, 2)
    ]
    # The recipient sees the same transfers as money in.
    body = Phone(client, "0712000222").walk("2", "2", "9753")
    assert "+KES 600.00 Juma Otieno" in body


def test_mini_statement_without_transactions(client):
    person("+254712000333", "Amina Hassan", pin=PIN)
    assert Phone(client, "0712000333").walk("2", "2", PIN) == "END No transactions yet."


def test_change_pin_needs_the_old_one_and_the_new_one_twice(client, juma):
    phone = Phone(client, "0712000111")
    phone.walk("2", "3")
    assert phone.send("1111").startswith("CON Wrong PIN. 2 tries left.\nChange PIN")
    assert screen(phone.send(PIN)) == "Enter your new 4-digit PIN"
    assert phone.send(PIN).startswith("CON The new PIN must differ from the old one.")
    assert screen(phone.send("1357")) == "Enter your new PIN again"
    assert phone.send("1358").startswith("CON The PINs did not match. Try again.\nEnter your new 4-digit PIN")
    phone.send("1357")
    assert phone.send("1357") == "END Your PIN has been changed."
    user = find_by_phone(db.session, "+254712000111")
    db.session.refresh(user)
    assert pins.verify_pin(user.pin_hash, "1357")
    assert not pins.verify_pin(user.pin_hash, PIN)
    assert user.pin_failures == 0


def test_language_choice_is_stored_and_used_from_then_on(client, juma):
    phone = Phone(client, "0712000111")
    assert screen(phone.walk("2", "4")) == "Choose language\n1. English\n2. Kiswahili"
    assert phone.send("2") == "END Lugha imewekwa kuwa Kiswahili."
    assert find_by_phone(db.session, "+254712000111").language == "sw"
    assert options(Phone(client, "0712000111").dial())["2"] == "Akaunti yangu"
    assert Phone(client, "0712000111").walk("2", "4", "1") == "END Language set to English."


def test_agents_and_merchants_get_their_own_menus_with_my_account(client):
    person("+254712000555", "Amina Agent", pin=PIN, role="agent")
    person("+254712000666", "Mama Mboga", pin=PIN, role="merchant")
    agent_menu = options(Phone(client, "0712000555").dial())
    assert agent_menu["1"] == "Deposit" and agent_menu["7"] == "My account"
    assert Phone(client, "0712000555").walk("7", "1", PIN) == "END Your balance is KES 0.00."
    merchant_menu = options(Phone(client, "0712000666").dial())
    assert merchant_menu == {
        "1": "Balance",
        "2": "Statement",
        "3": "My account",
        "4": "My approvals",
        "5": "Request payment",
        "6": "My requests",
    }
    assert Phone(client, "0712000666").walk("3", "1", PIN) == "END Your balance is KES 0.00."
