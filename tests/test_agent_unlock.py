"""Agents unlock any customer's PIN with a one-time code sent to the locked phone, and raise a
customer whose ID card they checked to the full tier (issue 15 item 15).

The customer here registered alone over USSD: no ID number on record, which the old unlock
asked for. Everything goes through the real webhook; codes are read from the SMS the locked
phone received (the outbox)."""

import re

import pytest
from sqlalchemy import select

from tests.escrow_helpers import sms_to
from tests.ussd_helpers import Phone, person
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.users import find_by_phone

AGENT, AGENT_PIN = "+254700000101", "1111"
OTHER_AGENT, OTHER_PIN = "+254700000102", "2222"
AMINA, AMINA_PIN = "+254712000333", "2468"


@pytest.fixture
def locked(app):
    """Amina registered herself over USSD, then typed three wrong PINs."""
    person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")
    person(OTHER_AGENT, "Bora Agent", pin=OTHER_PIN, role="agent")
    phone = Phone(app.test_client(), "0712000333")
    phone.walk("1", "Amina", "Hassan", AMINA_PIN)
    assert phone.send(AMINA_PIN).startswith("END Welcome to Tuma")
    assert find_by_phone(db.session, AMINA).id_number is None
    Phone(app.test_client(), "0712000333").walk("2", "1", "0000", "0000", "0000")
    return app.test_client()


def is_locked(client) -> bool:
    return Phone(client, "0712000333").dial().startswith("END Your PIN is locked")


def agent_asks_for_a_code(
    client, number="0712000333", name="amina  hassan", agent="0700000101", pin=AGENT_PIN
):
    phone = Phone(client, agent)
    assert phone.walk("6", number) == "CON Enter the customer's first and last name as registered"
    assert phone.send(name) == "CON Enter your PIN to send Amina Hassan an unlock code by SMS"
    return phone, phone.send(pin)


def the_code() -> str:
    return re.search(r"Code (\d{6})", sms_to(AMINA)[-1]).group(1)


def test_an_agent_unlocks_a_self_registered_customer_with_the_code_from_her_phone(locked, redis):
    client = locked
    assert is_locked(client)
    phone, screen = agent_asks_for_a_code(client)
    assert screen == "CON Code sent by SMS to +254712000333. Ask the customer for it and enter it"
    message = sms_to(AMINA)[-1]
    assert message.startswith("Tuma: agent ALI AGENT +254700000101 asks to unlock your PIN. Code ")
    code = the_code()
    # Never in Redis in clear (nor the PIN): only its HMAC, with a TTL.
    for key in redis.keys("*"):
        if redis.type(key) == b"hash":
            assert all(code.encode() not in v for v in redis.hgetall(key).values())
        elif redis.type(key) == b"string":
            assert code.encode() not in redis.get(key)
    assert 0 < redis.ttl(f"tuma:unlock:code:{AMINA}") <= 600

    assert phone.send(code) == "END The PIN of Amina Hassan is unlocked. They can dial again."
    assert sms_to(AMINA)[-1].startswith("Tuma: your PIN was unlocked by agent ALI AGENT +254700000101 on ")
    assert Phone(client, "0712000333").walk("2", "1", AMINA_PIN) == "END Your balance is KES 0.00."
    # The code is spent: replaying it unlocks nothing again.
    assert redis.exists(f"tuma:unlock:code:{AMINA}") == 0


def test_a_wrong_name_sends_no_code_and_shows_no_name(locked):
    client = locked
    phone = Phone(client, "0700000101")
    assert phone.walk("6", "+254 712 000 333") == "CON Enter the customer's first and last name as registered"
    retry = phone.send("Amina Otieno")
    assert retry == (
        "CON The name does not match. Check it with the customer.\n"
        "Enter the customer's first and last name as registered"
    )
    assert "Hassan" not in retry
    assert not any("asks to unlock your PIN" in body for body in sms_to(AMINA))
    assert is_locked(client)


def test_three_wrong_codes_spend_it_and_the_pin_stays_locked(locked):
    client = locked
    phone, _ = agent_asks_for_a_code(client)
    code = the_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert phone.send(wrong).startswith("CON Wrong code. Tries left: 2.")
    assert phone.send(wrong).startswith("CON Wrong code. Tries left: 1.")
    assert phone.send(wrong) == "END That code is no longer valid. Start again to send a new one."
    assert is_locked(client)
    # The right code, typed again in a new session at the code screen, is refused too.
    assert phone.repeat() == "END That code is no longer valid. Start again to send a new one."
    assert is_locked(client)


def test_a_code_works_only_for_the_agent_it_was_sent_for(locked):
    client = locked
    first, _ = agent_asks_for_a_code(client)
    first_code = the_code()
    # Another agent asks meanwhile: a new code, bound to that agent, replaces the first.
    second, _ = agent_asks_for_a_code(client, agent="0700000102", pin=OTHER_PIN)
    second_code = the_code()
    assert first.send(second_code).startswith("CON Wrong code. Tries left: 2.")  # not the first's
    assert first.send(first_code).startswith("CON Wrong code. Tries left: 1.")  # replaced
    assert is_locked(client)
    # The agent it was sent for, on the last of the three tries the code allows in all.
    assert second.send(second_code) == "END The PIN of Amina Hassan is unlocked. They can dial again."
    assert not is_locked(client)


def test_codes_are_throttled_per_customer_whatever_the_spelling(locked, config):
    client = locked
    config(UNLOCK_CODES_PER_CUSTOMER_PER_HOUR=2)
    for number in ("0712000333", "254712000333"):
        _, screen = agent_asks_for_a_code(client, number=number)
        assert screen.startswith("CON Code sent by SMS")
    _, screen = agent_asks_for_a_code(client, number="+254712000333", agent="0700000102", pin=OTHER_PIN)
    assert screen == "END Too many unlock attempts. Try again in an hour."
    assert sum("asks to unlock your PIN" in body for body in sms_to(AMINA)) == 2


def test_name_guesses_are_throttled_per_agent(locked, config):
    client = locked
    config(UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR=3)
    phone = Phone(client, "0700000101")
    phone.walk("6", "0712000333")
    for guess in ("Amina Otieno", "Amina Mwangi"):
        assert phone.send(guess).startswith("CON The name does not match.")
    assert phone.send("Amina Kamau").startswith("CON The name does not match.")
    assert phone.send("Amina Hassan") == "END Too many unlock attempts. Try again in an hour."
    assert is_locked(client)


def test_an_agent_raises_a_customer_to_the_full_tier_after_checking_her_id(locked):
    client = locked
    assert find_by_phone(db.session, AMINA).tier == "basic"
    phone = Phone(client, "0700000101")
    phone.dial()
    assert phone.send("98").endswith("10. Verify customer ID\n0. Back")
    assert phone.send("10") == "CON Verify customer ID\nEnter the customer's phone number"
    assert phone.send("0712000333") == "CON Check the ID card of Amina Hassan\nEnter the ID number"
    assert phone.send("12345678") == (
        "CON Raise Amina Hassan +254712000333 ID 12345678 to the full tier?\n1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to confirm you checked the ID card"
    assert phone.send("0000").startswith("CON Wrong PIN. 2 tries left.")
    assert phone.send(AGENT_PIN) == "END Amina Hassan is now on the full tier."
    db.session.expire_all()
    amina = find_by_phone(db.session, AMINA)
    assert (amina.tier, amina.id_number) == ("full", "12345678")
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "tier.raise")).scalars()
    assert entry.target == AMINA
    assert entry.details == {"by_agent": AGENT, "was": "basic", "now": "full"}
    assert sms_to(AMINA)[-1].startswith("Tuma: agent ALI AGENT +254700000101 checked your ID on ")
    # Already full: nothing to raise.
    again = Phone(client, "0700000101")
    again.walk("98", "10")
    assert again.send("0712000333").startswith("CON +254712000333 is already on the full tier.")


def test_an_id_number_on_record_must_match(app, client):
    person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")
    Phone(client, "0700000101").walk("5", "0712000444", "Juma", "Otieno", "11112222", "1", AGENT_PIN)
    phone = Phone(client, "0700000101")
    phone.walk("98", "10", "0712000444")
    assert phone.send("99998888") == "END The ID number does not match our records. Nothing was changed."
    assert find_by_phone(db.session, "+254712000444").tier == "basic"
