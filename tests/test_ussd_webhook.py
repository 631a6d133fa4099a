"""The webhook itself: sessions, resume, repeats, malformed requests, end-of-session events."""

import pytest
from sqlalchemy import select

from tests.helpers import fund
from tests.ussd_helpers import CUSTOMER_MENU, CUSTOMER_MENU_ITEMS, Phone, options, screen
from ussd_app.extensions import db
from ussd_app.ussd.models import UssdEvent

PIN = "8642"


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and someone to send to."""
    fund(customer.account_id, 500_000)
    return customer


def post(client, **fields):
    return client.post("/ussd", data=fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"sessionId": "s1"},
        {"phoneNumber": "+254712000111", "text": ""},
        {"sessionId": "", "phoneNumber": "+254712000111"},
        {"sessionId": "s1", "phoneNumber": "not a phone"},
        {"sessionId": "s1", "phoneNumber": "+2547"},
        {"sessionId": "x" * 500, "phoneNumber": "+254712000111"},
    ],
)
def test_missing_or_malformed_fields_end_cleanly(client, fields):
    response = post(client, **fields)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == "END Sorry, this request could not be read. Please dial again."


def test_a_session_belongs_to_one_phone(client, juma):
    phone = Phone(client, "0712000111", session_id="shared")
    phone.dial()
    other = post(client, sessionId="shared", phoneNumber="+254712000222", text="2")
    assert other.get_data(as_text=True).startswith("END Sorry, this request could not be read.")


def test_newest_input_only_even_when_the_gateway_resends_everything(client, juma):
    phone = Phone(client, "0712000111")
    phone.dial()
    assert "recipient's phone number" in phone.post("1")
    # A network that resends the whole input: only the part after the last "*" counts.
    assert "Send to Wanjiru Kamau" in phone.post("1*0712000222")
    assert "Send to Wanjiru Kamau" in phone.post("1*0712000222")  # a repeat
    assert "Confirm" in phone.post("garbage*more*100")


def test_a_shortcut_dial_is_walked_to_the_first_screen_that_needs_an_answer(client, juma):
    # Issue 21 item 3 (tests/test_ussd_shortcut.py): no longer home, the amount screen.
    body = Phone(client, "0712000111").post("1*0712000222")
    assert screen(body) == "Send to Wanjiru Kamau\nEnter amount"


def test_dropped_session_is_offered_to_resume_and_continues_where_it_stopped(client, juma):
    dropped = Phone(client, "0712000111")
    dropped.walk("1", "0712000222")  # then the network drops it
    again = Phone(client, "0712000111")
    assert screen(again.dial()) == "Continue sending money to Wanjiru Kamau?\n1. Yes\n2. No, start again"
    assert screen(again.send("1")) == "Send to Wanjiru Kamau\nEnter amount"
    assert "Fee: KES 13.00" in again.send("1000")
    again.send("1")
    assert again.send(PIN).startswith("END Sending KES 1,000.00 to Wanjiru Kamau")
    # Finished: the next dial goes straight home.
    assert options(Phone(client, "0712000111").dial()) == CUSTOMER_MENU


def test_resumed_session_can_go_back_as_before(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222", "1000")  # dropped at the confirm screen
    again = Phone(client, "0712000111")
    again.dial()
    assert "Confirm" in again.send("1")
    assert "Enter amount" in again.send("0")


def test_declining_to_resume_starts_at_home_and_forgets_it(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222")
    again = Phone(client, "0712000111")
    again.dial()
    assert again.send("7").startswith("CON Invalid choice.\nContinue sending money to Wanjiru Kamau?")
    assert options(again.send("2")) == CUSTOMER_MENU
    again.send("2")  # now in My account; drops here: that is resumable in turn
    third = Phone(client, "0712000111")
    assert screen(third.dial()) == "Continue in My account?\n1. Yes\n2. No, start again"
    assert options(third.send("1")) == {
        "1": "Balance",
        "2": "Mini statement",
        "3": "Change PIN",
        "4": "Language",
        "5": "Reverse a transaction",
    }


def test_no_resume_at_a_pin_screen(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222", "1000", "1")  # dropped at the PIN
    assert options(Phone(client, "0712000111").dial()) == CUSTOMER_MENU
    Phone(client, "0712000111").walk("2", "1")  # dropped at the balance PIN
    assert options(Phone(client, "0712000111").dial()) == CUSTOMER_MENU


def test_no_resume_after_the_window(app, client, juma, redis):
    Phone(client, "0712000111").walk("1", "0712000222")
    [key] = redis.keys("tuma:ussd:resume:*")
    assert 0 < redis.ttl(key) <= app.config["USSD_RESUME_WINDOW_SECONDS"]
    [session_key, *_] = redis.keys("tuma:ussd:session:*")
    assert 0 < redis.ttl(session_key) <= 180
    redis.delete(key)  # what the TTL does when the window has passed
    assert options(Phone(client, "0712000111").dial()) == CUSTOMER_MENU


def test_registration_is_resumable_too_but_not_at_its_pin(client):
    Phone(client, "0712000444").walk("1", "Amina")
    again = Phone(client, "0712000444")
    again.dial()
    assert screen(again.send("1")) == "Enter your last name"
    again.send("Hassan")  # now at "choose a PIN": dropped there, no offer
    assert Phone(client, "0712000444").dial().startswith("CON Welcome to Tuma. Choose language")


def test_events_are_recorded_without_the_input(client):
    response = client.post(
        "/ussd/events",
        data={
            "sessionId": "ATUid_1",
            "phoneNumber": "+254712000111",
            "serviceCode": "*384*7#",
            "networkCode": "63902",
            "status": "Success",
            "cost": "KES 0.0000",
            "durationInMillis": "18034",
            "input": "1*0712000222*1000*1*8642",
            "errorMessage": "",
            "date": "2026-11-21 19:40:00",
        },
    )
    assert response.status_code == 200
    [event] = db.session.execute(select(UssdEvent)).scalars()
    assert (event.session_id, event.phone, event.status, event.duration_ms, event.hops) == (
        "ATUid_1",
        "+254712000111",
        "Success",
        18034,
        5,
    )
    assert PIN not in repr(vars(event))


def test_malformed_events_are_refused_or_kept_as_far_as_they_make_sense(client):
    assert client.post("/ussd/events", data={"status": "Success"}).status_code == 400
    response = client.post(
        "/ussd/events",
        data={
            "sessionId": "ATUid_2",
            "phoneNumber": "junk",
            "durationInMillis": "soon",
            "errorMessage": "x" * 999,
        },
    )
    assert response.status_code == 200
    [event] = db.session.execute(select(UssdEvent)).scalars()
    assert (event.phone, event.duration_ms, len(event.error_message)) == (None, None, 255)


@pytest.mark.parametrize("duration", ["1e300", "99999999999999999999", "-5", "inf", "nan"])
def test_an_event_with_an_impossible_duration_is_kept_without_it(client, duration):
    response = client.post("/ussd/events", data={"sessionId": "ATUid_3", "durationInMillis": duration})
    assert response.status_code == 200
    [event] = db.session.execute(select(UssdEvent)).scalars()
    assert event.duration_ms is None


def test_a_long_session_still_answers_each_new_input(client, juma):
    """Issue 15 item 12: past 2,000 characters of text every input was taken for a repeat (the
    text was cut before the newest input and the repeat check were read): the session froze."""
    phone = Phone(client, "0712000111")
    phone.dial()
    for _ in range(25):  # a wrong 100-digit answer at home, 25 times: 2,524 characters
        assert phone.send("9" * 100).startswith("CON ")
    assert 2_000 < len(phone.last_text) < 4_000
    assert "recipient's phone number" in phone.send("1")
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")
    assert "Send to Wanjiru Kamau" in phone.repeat()  # a repeat of the whole text is still one
    assert "Confirm" in phone.send("100")


def test_a_text_longer_than_any_gateway_sends_ends_cleanly(client, juma):
    phone = Phone(client, "0712000111")
    phone.dial()
    assert "recipient's phone number" in phone.send("1")
    too_long = phone.post("1*" + "0712000222*" * 400)  # 4,402 characters
    assert too_long == "END Sorry, this request could not be read. Please dial again."
    # Nothing was run or stored for it: the session's own next input is answered as before.
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")


def test_the_customer_menu_pages_with_98_and_every_item_is_on_it(client, juma):
    phone = Phone(client, "0712000111")
    first = options(phone.dial())
    rest = options(phone.send("98"))
    assert first == CUSTOMER_MENU and rest.pop("0") == "Back"
    assert {k: v for k, v in {**first, **rest}.items() if k != "98"} == CUSTOMER_MENU_ITEMS
