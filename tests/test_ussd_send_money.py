"""Send money, scripted through the real webhook: number, amount, confirm, PIN, queued."""

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import CUSTOMER_MENU, Phone, available, options, person, screen
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.ussd import sessions
from worker.jobs import execute_transfers

PIN = "8642"


@pytest.fixture
def juma(customer):
    fund(customer.account_id, 500_000)  # KES 5,000
    return customer


@pytest.fixture
def wanjiru(second_customer):
    return second_customer


def requests_count() -> int:
    return db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()


def to_confirm(phone: Phone, recipient="0712000222", amount="1000") -> str:
    phone.dial()
    phone.send("1")
    phone.send(recipient)
    return phone.send(amount)


def test_confirm_screen_shows_registered_name_amount_and_fee_then_pin_queues_the_transfer(
    client, juma, wanjiru
):
    phone = Phone(client, "0712000111")
    assert options(phone.dial()) == CUSTOMER_MENU
    assert "recipient's phone number" in phone.send("1")
    assert screen(phone.send("0712 000 222")) == "Send to Wanjiru Kamau\nEnter amount"
    confirm = phone.send("1000")
    assert confirm.startswith("CON Send KES 1,000.00 to Wanjiru Kamau +254712000222?\nFee: KES 13.00")
    assert "Enter your PIN" in phone.send("1")
    done = phone.send(PIN)
    assert done == "END Sending KES 1,000.00 to Wanjiru Kamau. You will receive an SMS confirmation shortly."

    [request] = db.session.execute(select(TransferRequest)).scalars()
    assert (request.kind, request.amount, request.fee, request.status) == ("send", 100_000, 1_300, "queued")
    assert (request.debit_account_id, request.credit_account_id) == (juma.account_id, wanjiru.account_id)
    stored = sessions.load(phone.session_id)
    assert stored.data["transfer_id"] == request.id  # the id minted at the confirm step

    juma_account, wanjiru_account = juma.account_id, wanjiru.account_id
    execute_transfers()
    assert available(juma_account) == 500_000 - 101_300
    assert available(wanjiru_account) == 100_000


def test_repeated_final_request_shows_the_same_screen_and_sends_once(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone)
    phone.send("1")
    first = phone.send(PIN)
    assert phone.repeat() == first
    assert phone.repeat() == first
    assert requests_count() == 1
    # Even a different late hop on the ended session cannot start anything.
    assert phone.send("1") == first
    wanjiru_account = wanjiru.account_id
    execute_transfers()
    execute_transfers()
    assert available(wanjiru_account) == 100_000


def test_repeated_middle_request_does_not_advance_twice(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    phone.dial()
    first = phone.send("1")
    assert phone.repeat() == first
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")


def test_network_that_sends_only_the_newest_input_works_too(client, juma, wanjiru):
    phone = Phone(client, "0712000111", append=False)
    to_confirm(phone, "+254712000222", "250")
    phone.send("1")
    assert phone.send(PIN).startswith("END Sending KES 250.00 to Wanjiru Kamau")
    assert requests_count() == 1


@pytest.mark.parametrize(
    "recipient,reason",
    [
        ("12345", "Not a valid phone number."),
        ("hello", "Not a valid phone number."),
        ("0712000111", "You cannot send money to yourself."),
        ("+254712000111", "You cannot send money to yourself."),
        # An unregistered number is offered a held send instead: tests/test_escrow_unregistered.py.
    ],
)
def test_bad_recipient_reshows_the_number_screen_with_a_reason(client, juma, wanjiru, recipient, reason):
    phone = Phone(client, "0712000111")
    phone.dial()
    phone.send("1")
    body = phone.send(recipient)
    assert body.startswith(f"CON {reason}\nSend money\nEnter the recipient's phone number")
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")  # and it still works after


@pytest.mark.parametrize("amount", ["12.50", "-5", "abc", "", "99999999999", "1,0,0"])
def test_bad_amount_reshows_the_amount_screen(client, juma, wanjiru, amount):
    phone = Phone(client, "0712000111")
    phone.dial()
    phone.send("1")
    phone.send("0712000222")
    assert phone.send(amount).startswith("CON Enter a whole amount, like 500.\nSend to Wanjiru Kamau")


def test_back_goes_to_the_previous_screen_and_home_to_the_main_menu(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone)
    assert "Send to Wanjiru Kamau\nEnter amount" in phone.send("0")
    assert "recipient's phone number" in phone.send("0")
    assert "1. Send money" in phone.send("0")  # back at the main menu
    assert "1. Send money" in phone.send("0")  # nothing before home: stays there
    to_amount = phone.send("1")
    assert "recipient's phone number" in to_amount
    phone.send("0712000222")
    assert options(phone.send("00")) == CUSTOMER_MENU
    assert requests_count() == 0


def test_changing_the_amount_after_going_back_sends_the_new_amount_once(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone, amount="1000")
    phone.send("0")
    assert "KES 300.00" in phone.send("300")
    phone.send("1")
    phone.send(PIN)
    [request] = db.session.execute(select(TransferRequest)).scalars()
    assert request.amount == 30_000


def test_cancel_sends_nothing(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone)
    assert phone.send("2") == "END Cancelled. Nothing was sent."
    assert requests_count() == 0


def test_not_enough_money_ends_after_the_pin_without_a_request(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone, amount="5000")
    phone.send("1")
    body = phone.send(PIN)
    assert body == (
        "END Not enough money to send KES 5,000.00 plus fee KES 57.00. Your balance is KES 5,000.00."
    )
    assert requests_count() == 0


def test_wrong_pin_says_how_many_tries_are_left_and_a_right_one_still_works(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    to_confirm(phone)
    phone.send("1")
    assert phone.send("1111").startswith("CON Wrong PIN. 2 tries left.\nEnter your PIN")
    assert phone.send("12").startswith("CON A PIN is 4 digits.")  # not a PIN: not counted
    assert phone.send("2222").startswith("CON Wrong PIN. 1 try left.")
    assert phone.send(PIN).startswith("END Sending KES 1,000.00")
    db.session.refresh(juma)
    assert juma.pin_failures == 0
    assert requests_count() == 1


def test_kiswahili_speaker_sees_kiswahili(client, wanjiru):
    amina = person("+254712000333", "Amina Hassan", pin=PIN, language="sw")
    fund(amina.account_id, 100_000)
    phone = Phone(client, "0712000333")
    assert options(phone.dial()) == {
        "1": "Tuma pesa",
        "2": "Akaunti yangu",
        "3": "Idhini zangu",
        "4": "Toa pesa",
        "5": "Nunua bidhaa",
        "6": "Lipa bili",
        "7": "Nunua muda wa maongezi",
        "8": "Omba pesa",
        "9": "Maombi yangu",
        "98": "Zaidi",  # the menu pages in Kiswahili: the rest is on the next page
    }
    assert options(phone.send("98")) == {
        "10": "Toa mchango",
        "11": "Malipo ya kudumu",
        "12": "Vibali vya malipo",
        "0": "Rudi",
    }
    phone.send("1")
    phone.send("0712000222")
    assert phone.send("100").startswith("CON Tuma KES 100.00 kwa Wanjiru Kamau +254712000222?\nAda: KES 0.00")
    phone.send("1")
    assert phone.send(PIN).startswith("END Unatuma KES 100.00 kwa Wanjiru Kamau.")


def test_98_is_an_amount_where_there_is_nothing_to_page(client, juma, wanjiru):
    phone = Phone(client, "0712000111")
    assert "Send KES 98.00 to Wanjiru Kamau" in to_confirm(phone, amount="98")
