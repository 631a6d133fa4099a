"""The caller's facts kept in the USSD session (ussd/caller.py): a menu hop reads no database,
and whatever changes the caller elsewhere (the back office, wrong PINs in another session, a
language changed in another session) is seen at the open session's very next hop. Every test
that is about behaviour runs with the cache on and off: the answers are the same."""

import json

import pytest

from tests.admin_helpers import login, operator, post
from tests.ussd_helpers import CUSTOMER_MENU, Phone, options, put_session_doc, session_doc, statements_sent
from ussd_app import security
from ussd_app.extensions import db
from ussd_app.users import find_by_phone
from ussd_app.ussd import caller

JUMA, PIN = "0712000111", "8642"
BY_TUMA = "END Your Tuma account is locked by Tuma. Please call customer care."
PIN_LOCKED = "END Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."


@pytest.fixture(params=["cache on", "cache off"])
def cached(request, config):
    config(USSD_CALLER_CACHE=request.param == "cache on")
    return request.param == "cache on"


def lock_in_back_office(client, phone: str) -> None:
    operator()
    login(client)
    user = find_by_phone(db.session, phone)
    assert post(client, f"/admin/accounts/{user.id}/lock", {"reason": "reported stolen"}).status_code == 302


@pytest.mark.parametrize("typed", ["1", "0712000222", "00", "0"])
def test_locked_in_the_back_office_mid_session_the_next_hop_is_refused(app, cached, customer, typed):
    client = app.test_client()
    phone = Phone(client, JUMA)
    assert phone.walk("1") == "CON Send money\nEnter the recipient's phone number"
    lock_in_back_office(app.test_client(), "+254712000111")
    assert phone.send(typed) == BY_TUMA
    assert phone.repeat() == BY_TUMA  # a retry of it: the same answer
    assert Phone(client, JUMA).dial() == BY_TUMA  # and so is the next session


def test_locked_by_wrong_pins_in_another_session_the_open_one_is_refused_at_its_next_hop(
    app, cached, customer
):
    client = app.test_client()
    open_session = Phone(client, JUMA)
    assert options(open_session.dial()) == CUSTOMER_MENU
    other = Phone(client, JUMA)
    other.walk("2", "1")  # My account, balance: asks for the PIN
    other.send("0000"), other.send("0000")
    assert other.send("0000") == PIN_LOCKED
    assert open_session.send("1") == PIN_LOCKED


def test_a_language_changed_in_another_session_is_spoken_at_the_next_hop(app, cached, customer):
    client = app.test_client()
    open_session = Phone(client, JUMA)
    assert options(open_session.dial()) == CUSTOMER_MENU
    assert open_session.send("2").startswith("CON My account")
    assert options(open_session.send("0")) == CUSTOMER_MENU
    # My account, Language, Kiswahili: the answer is already in Kiswahili.
    assert Phone(client, JUMA).walk("2", "4", "2").startswith("END Lugha")
    assert open_session.send("2").startswith("CON Akaunti yangu")


def test_a_menu_hop_reads_no_database_once_the_session_knows_its_caller(app, customer):
    with statements_sent() as statements:
        phone = Phone(app.test_client(), JUMA)
        phone.dial()
        assert statements  # the first hop reads the caller
        for typed in ("2", "0", "1", "0", "98", "0"):
            statements.clear()
            assert phone.send(typed).startswith("CON ")
            assert statements == [], typed


def test_without_the_cache_every_hop_reads_the_caller(app, customer, config):
    config(USSD_CALLER_CACHE=False)
    with statements_sent() as statements:
        phone = Phone(app.test_client(), JUMA)
        phone.dial()
        statements.clear()
        phone.send("2")
        assert any("FROM users" in s for s in statements)


def test_the_session_keeps_who_and_how_never_the_pin_or_its_hash(app, customer, redis):
    phone = Phone(app.test_client(), JUMA)
    phone.walk("2")
    doc = session_doc(redis, phone.session_id)
    assert set(doc["caller"]) == {
        "user_id",
        "account_id",
        "role",
        "language",
        "locked_until",
        "seen",
        "at",
        "tier",
        "has_pin",  # whether a PIN is set: a boolean, never the hash
    }
    assert doc["caller"]["has_pin"] is True
    assert doc["caller"]["user_id"] == customer.id and doc["caller"]["role"] == "customer"
    assert doc["caller"]["account_id"] == customer.account_id
    assert customer.pin_hash not in json.dumps(doc)


def test_facts_past_their_age_are_read_again_even_when_nothing_said_they_changed(app, customer, redis):
    """A change the tokens cannot see (made with SQL, outside the app): seen once the facts
    are older than FACTS_MAX_AGE_SECONDS."""
    client = app.test_client()
    phone = Phone(client, JUMA)
    assert phone.walk("2").startswith("CON My account")
    db.session.execute(db.text("UPDATE users SET language = 'sw' WHERE phone = '+254712000111'"))
    db.session.commit()
    assert options(phone.send("0")) == CUSTOMER_MENU  # the open session's facts still hold
    assert options(Phone(client, JUMA).dial())["2"] == "Akaunti yangu"  # a new one reads the row
    doc = session_doc(redis, phone.session_id)
    doc["caller"]["at"] -= caller.FACTS_MAX_AGE_SECONDS + 1  # what a minute's wait does
    put_session_doc(redis, phone.session_id, doc)
    assert phone.send("2").startswith("CON Akaunti yangu")


def test_a_registration_is_seen_at_the_next_hop(app, cached):
    phone = Phone(app.test_client(), "0712000444")
    assert phone.dial().startswith("CON Welcome to Tuma. Choose language")
    for typed in ("1", "Amina", "Hassan", "1357"):
        phone.send(typed)
    assert phone.send("1357").startswith("END ")
    assert options(Phone(app.test_client(), "0712000444").dial()) == CUSTOMER_MENU


def test_a_hop_that_ends_before_its_session_still_counts_against_the_number(app, client, config):
    """The hop counts itself in the round trip that takes its session; one that never takes
    it (a text too long to be a hop) is counted all the same."""
    config(WEBHOOK_RATE_PER_MINUTE=3)
    long_text = "1*" * 2_500
    answers = [Phone(client, JUMA).post(long_text) for _ in range(6)]
    assert answers.count("END " + security.USSD_TOO_MANY) >= 2
    assert Phone(client, "0712000111").dial() == "END " + security.USSD_TOO_MANY
