"""Standing orders on USSD (issue 18 item 3), through the real webhook: set one up to a person,
a till or a pay bill with the name shown and the PIN once; dates never in the past; ``0`` goes
back; My standing orders lists them, shows one, pauses, resumes and cancels (with the PIN)."""

from datetime import timedelta

import pytest

from tests.escrow_helpers import cash_in, sms_to
from tests.events_helpers import running_receiver
from tests.standing_order_helpers import STANDING_ORDERS, ddmmyyyy, orders, set_up_to_person, today
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, local, options, person
from ussd_app.events.endpoints import configure
from ussd_app.extensions import db
from ussd_app.users import create_user

PIN = CUSTOMER["pin"]
ME, PAYEE = CUSTOMER["phone"], SECOND_CUSTOMER["phone"]


def dd(day) -> str:
    return day.strftime("%d/%m/%y")


def test_the_customer_menu_offers_standing_orders(client, customer):
    phone = Phone(client, local(ME))
    menu = options(phone.dial())
    if "98" in menu:  # the menu pages when it is long
        menu.update(options(phone.send("98")))
    assert menu[STANDING_ORDERS] == "Standing orders"
    assert phone.send(STANDING_ORDERS) == "CON Standing orders\n1. New\n2. My standing orders"


def test_set_up_to_a_person_with_the_pin_once(client, customer, agent, second_customer):
    cash_in(customer, agent)
    phone = Phone(client, local(ME))
    phone.walk(STANDING_ORDERS)
    assert phone.send("1") == "CON New standing order\nPay:\n1. A person\n2. A till\n3. A pay bill"
    assert phone.send("1") == "CON Enter the phone number to pay"
    assert phone.send(local(ME)) == "CON You cannot pay yourself.\nEnter the phone number to pay"
    assert phone.send(local(PAYEE)) == "CON Pay Wanjiru Kamau\nEnter the amount of each payment"
    assert phone.send("0") == "CON Enter the phone number to pay"  # back
    phone.send(local(PAYEE))
    assert phone.send("80000") == (
        "CON Over your limit of KES 70,000.00 per transaction.\n"
        "Pay Wanjiru Kamau\nEnter the amount of each payment"
    )
    assert phone.send("150") == "CON How often?\n1. Daily\n2. Weekly\n3. Monthly"
    assert phone.send("3") == "CON First payment\n1. Today\n2. Tomorrow\n3. Enter a date"
    assert phone.send("3") == "CON Enter the first payment's date as DDMMYYYY"
    yesterday, first, last = (
        today() - timedelta(days=1),
        today() + timedelta(days=5),
        today() + timedelta(days=70),
    )
    assert phone.send(ddmmyyyy(yesterday)) == (
        "CON That date is past. Enter today or later.\nEnter the first payment's date as DDMMYYYY"
    )
    assert phone.send("31022027") == (
        "CON Enter the date as DDMMYYYY, like 01022027.\nEnter the first payment's date as DDMMYYYY"
    )
    assert phone.send(ddmmyyyy(first)) == "CON Ends\n1. After a number of payments\n2. On a date"
    assert phone.send("2") == "CON Enter the last date as DDMMYYYY"
    assert phone.send(ddmmyyyy(first - timedelta(days=1))) == (
        f"CON The last date is before the first, {dd(first)}.\nEnter the last date as DDMMYYYY"
    )
    confirm = phone.send(ddmmyyyy(last))
    assert confirm == (
        f"CON Pay Wanjiru Kamau {PAYEE} KES 150.00 monthly from {dd(first)}, to {dd(last)}?\n"
        "Fee each: KES 7.00\n1. Confirm\n2. Cancel"
    )
    assert len(confirm) - 4 <= 160
    assert phone.send("1") == "CON Enter your PIN to set up the standing order"
    done = f"END Standing order set up. First payment on {dd(first)}. You will get an SMS."
    assert phone.send(PIN) == done
    assert phone.repeat() == done  # the gateway retries: still one order
    [order] = orders()
    assert (order.kind, order.amount, order.frequency, order.first_date, order.ends_on, order.runs_limit) == (
        "send",
        150_00,
        "monthly",
        first,
        last,
        None,
    )
    assert order.payee_account_id == second_customer.account_id and order.state == "active"
    assert sms_to(PAYEE) == [
        f"JUMA OTIENO {ME} set up a standing order to pay you KES 150.00 every month, first on {dd(first)}."
    ]
    assert sms_to(ME)[-1] == (
        f"Standing order set up: KES 150.00 every month to WANJIRU KAMAU, first on {dd(first)}, to "
        f"{dd(last)}. Fee KES 7.00 each. Dial *384*7# to change it."
    )


def test_set_up_to_a_till_and_to_a_pay_bill_shows_the_business_name(client, customer, merchant):
    phone = Phone(client, local(ME))
    assert phone.walk(STANDING_ORDERS, "1", "2", "999999") == (
        "CON Till 999999 is not on Tuma.\nEnter till number"
    )
    assert phone.send("123456") == "CON Pay Mama Mboga\nEnter the amount of each payment"
    phone.send("200")
    phone.send("2")  # weekly
    phone.send("1")  # from today
    phone.send("1")
    assert phone.send("4") == (
        f"CON Pay Mama Mboga (123456) KES 200.00 weekly from {dd(today())}, 4 payments?\n"
        "Fee each: KES 0.00\n1. Confirm\n2. Cancel"
    )
    phone.send("1")
    assert phone.send(PIN).startswith("END Standing order set up.")

    create_user(
        db.session,
        phone="+254700000003",
        name="Maji Water",
        role="merchant",
        pin="3333",
        till="654321",
        paybill=True,
    )
    db.session.commit()
    bill = Phone(client, local(ME))
    assert bill.walk(STANDING_ORDERS, "1", "3", "654321") == "CON Pay Maji Water\nEnter account number"
    assert bill.send("acc-42") == "CON Pay Maji Water\nEnter the amount of each payment"
    bill.send("1000")
    bill.send("1")
    bill.send("2")  # from tomorrow
    bill.send("1")
    confirm = bill.send("12")
    assert confirm.startswith("CON Pay Maji Water account ACC-42 KES 1,000.00 daily from ")
    bill.send("1")
    bill.send(PIN)
    till_order, bill_order = orders()
    assert (till_order.kind, till_order.reference, till_order.runs_limit) == ("buy_goods", None, 4)
    assert (bill_order.kind, bill_order.reference, bill_order.runs_limit) == ("pay_bill", "ACC-42", 12)


def test_cancel_at_the_confirm_sets_up_nothing(client, customer, second_customer):
    phone = Phone(client, local(ME))
    phone.walk(STANDING_ORDERS, "1", "1", local(PAYEE), "150", "1", "1", "1", "3")
    assert phone.send("2") == "END Cancelled. No standing order was set up."
    assert orders() == []


def test_my_standing_orders_pause_resume_and_cancel_with_the_pin(client, customer, second_customer):
    assert set_up_to_person(client, ME, PIN, PAYEE, 150, runs=3).startswith("END Standing order set up.")
    tomorrow = today() + timedelta(days=1)
    phone = Phone(client, local(ME))
    assert phone.walk(STANDING_ORDERS, "2") == "CON My standing orders\n1. KES 150.00 daily Wanjiru Kamau"
    details = f"To Wanjiru Kamau {PAYEE}\nKES 150.00 daily\nNext: {dd(tomorrow)}\nPayments: 0 of 3\n"
    assert phone.send("1") == "CON " + details + "1. Pause\n2. Cancel order"
    assert phone.send("0") == "CON My standing orders\n1. KES 150.00 daily Wanjiru Kamau"  # back
    phone.send("1")
    assert phone.send("1") == "END Paused. No payments until you resume it."
    assert orders()[0].state == "paused"

    phone = Phone(client, local(ME))
    assert phone.walk(STANDING_ORDERS, "2") == "CON My standing orders\n1. KES 150.00 Wanjiru Kamau (paused)"
    assert phone.send("1") == "CON " + details + "1. Resume\n2. Cancel order"
    assert phone.send("1").startswith("CON Resume the standing order to Wanjiru Kamau")
    assert phone.send("1") == "CON Enter your PIN to resume the standing order"  # payments again: the PIN
    assert phone.send(PIN) == f"END Resumed. Next payment on {dd(tomorrow)}."
    assert orders()[0].state == "active"

    phone = Phone(client, local(ME))
    assert phone.walk(STANDING_ORDERS, "2", "1", "2") == (
        f"CON Cancel the standing order to Wanjiru Kamau {PAYEE}? No more payments will be made.\n"
        "1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to cancel the standing order"
    assert phone.send("0000") == "CON Wrong PIN. 2 tries left.\nEnter your PIN to cancel the standing order"
    assert phone.send(PIN) == "END Standing order cancelled. The payee is told by SMS."
    assert orders()[0].state == "cancelled"
    assert (
        sms_to(PAYEE)[-1] == f"JUMA OTIENO {ME} cancelled the standing order paying you KES 150.00 every day."
    )
    assert Phone(client, local(ME)).walk(STANDING_ORDERS, "2") == "END You have no standing orders."


def test_keeping_an_order_at_the_cancel_question_changes_nothing(client, customer, second_customer):
    set_up_to_person(client, ME, PIN, PAYEE, 150, runs=3)
    phone = Phone(client, local(ME))
    phone.walk(STANDING_ORDERS, "2", "1", "2")
    assert phone.send("2") == "END Nothing was changed."
    assert orders()[0].state == "active"


def test_three_wrong_pins_at_set_up_lock_the_payer_and_set_up_nothing(client, customer, second_customer):
    phone = Phone(client, local(ME))
    phone.walk(STANDING_ORDERS, "1", "1", local(PAYEE), "150", "1", "2", "1", "3", "1")
    assert phone.send("1111") == "CON Wrong PIN. 2 tries left.\nEnter your PIN to set up the standing order"
    assert phone.send("2222") == "CON Wrong PIN. 1 try left.\nEnter your PIN to set up the standing order"
    assert phone.send("3333").startswith("END Your PIN is locked")
    assert orders() == []
    assert Phone(client, local(ME)).dial().startswith("END Your PIN is locked")
    assert not [body for body in sms_to(PAYEE) if "standing order" in body]


def test_kiswahili_screens(client, second_customer):
    person("+254712000555", "Zawadi Mrema", pin=PIN, language="sw")
    phone = Phone(client, "0712000555")
    assert phone.walk(STANDING_ORDERS) == "CON Malipo ya kudumu\n1. Mpya\n2. Malipo yangu ya kudumu"
    assert phone.send("1") == "CON Malipo mapya ya kudumu\nLipa:\n1. Mtu\n2. Till\n3. Pay bill"
    phone.send("1")
    assert phone.send(local(PAYEE)) == "CON Lipa Wanjiru Kamau\nWeka kiasi cha kila malipo"


def test_a_payer_with_the_most_orders_allowed_cancels_one_first(client, config, customer, second_customer):
    config(STANDING_ORDERS_PER_PAYER=1)
    set_up_to_person(client, ME, PIN, PAYEE, 150, runs=3)
    assert Phone(client, local(ME)).walk(STANDING_ORDERS, "1") == (
        "END You have 1 standing order running, the most allowed. Cancel it first."
    )
    assert len(orders()) == 1


@pytest.fixture
def receiver():
    yield from running_receiver()


def test_a_pay_bill_that_refuses_the_account_is_said_before_the_pin(client, customer, receiver):
    water = create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
    )
    url = receiver.url
    configure(db.session, water.account_id, url=f"{url}/hooks/water", validation_url=f"{url}/validate/water")
    db.session.commit()
    receiver.receiver.refuse("ACC-99")
    phone = Phone(client, local(ME))
    phone.walk(STANDING_ORDERS, "1", "3", "888880", "acc-99")
    assert phone.send("500") == (
        "CON Kisumu Water does not accept account ACC-99.\nPay Kisumu Water\nEnter account number"
    )
    phone.send("acc-42")
    assert phone.send("500") == "CON How often?\n1. Daily\n2. Weekly\n3. Monthly"
    assert [q["account_reference"] for q in receiver.receiver.questions] == ["ACC-99", "ACC-42"]


def test_a_dropped_session_resumes_at_the_confirm_screen_never_at_the_pin(client, customer, second_customer):
    first = Phone(client, local(ME))
    confirm = first.walk(STANDING_ORDERS, "1", "1", local(PAYEE), "150", "1", "2", "1", "3")
    assert confirm.startswith("CON Pay Wanjiru Kamau")  # the session drops here
    again = Phone(client, local(ME))
    assert again.dial() == (
        "CON Continue the standing order of KES 150.00 to Wanjiru Kamau?\n1. Yes\n2. No, start again"
    )
    assert again.send("1") == confirm
    again.send("1")
    assert again.send(PIN).startswith("END Standing order set up.")
    assert len(orders()) == 1
