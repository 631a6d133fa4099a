"""Registration of an unknown number, through the real webhook."""

from sqlalchemy import func, select

from tests.ussd_helpers import CUSTOMER_MENU, Phone, options, screen
from ussd_app import pins
from ussd_app.extensions import db
from ussd_app.users import User, find_by_phone

NUMBER = "0712000444"
E164 = "+254712000444"


def users() -> int:
    return db.session.execute(select(func.count()).select_from(User)).scalar_one()


def test_unknown_number_registers_with_names_pin_twice_and_language(client):
    phone = Phone(client, NUMBER)
    assert screen(phone.dial()) == (
        "Welcome to Tuma. Choose language\nKaribu Tuma. Chagua lugha\n1. English\n2. Kiswahili"
    )
    assert screen(phone.send("1")) == "Register\nEnter your first name"
    assert screen(phone.send("amina")) == "Enter your last name"
    assert screen(phone.send("Hassan")) == "Choose a 4-digit PIN"
    assert screen(phone.send("8642")) == "Enter the PIN again to confirm"
    assert users() == 0  # nothing exists until the PIN is confirmed
    done = phone.send("8642")
    assert done == "END Welcome to Tuma, Amina! Your account is ready. Dial again to send money."
    user = find_by_phone(db.session, E164)
    assert (user.first_name, user.last_name, user.role, user.language) == (
        "Amina",
        "Hassan",
        "customer",
        "en",
    )
    assert pins.verify_pin(user.pin_hash, "8642")
    assert user.account.available == 0
    # Dialling again now gives the customer menu.
    assert options(Phone(client, NUMBER).dial()) == CUSTOMER_MENU


def test_a_pin_mismatch_starts_the_pin_again_and_creates_nothing(client):
    phone = Phone(client, NUMBER)
    phone.walk("1", "Amina", "Hassan", "8642")
    assert screen(phone.send("8643")) == "The PINs did not match. Choose a PIN again.\nChoose a 4-digit PIN"
    assert users() == 0
    phone.send("1357")
    assert phone.send("1357").startswith("END Welcome to Tuma")
    assert pins.verify_pin(find_by_phone(db.session, E164).pin_hash, "1357")


def test_kiswahili_registration_is_in_kiswahili_and_stored(client):
    phone = Phone(client, NUMBER)
    phone.dial()
    assert screen(phone.send("2")) == "Jisajili\nWeka jina lako la kwanza"
    assert screen(phone.send("Baraka")) == "Weka jina lako la mwisho"
    assert screen(phone.send("Mwangi")) == "Chagua PIN ya tarakimu 4"
    phone.send("2468")
    assert phone.send("2468").startswith("END Karibu Tuma, Baraka!")
    assert find_by_phone(db.session, E164).language == "sw"
    assert options(Phone(client, NUMBER).dial())["1"] == "Tuma pesa"


def test_bad_names_and_bad_pins_are_asked_again(client):
    phone = Phone(client, NUMBER)
    phone.walk("1")
    assert phone.send("J0hn").startswith("CON Use letters only, up to 20.\nRegister")
    assert phone.send("x" * 21).startswith("CON Use letters only, up to 20.")
    assert phone.send("").startswith("CON Use letters only, up to 20.")
    phone.send("Juma")
    phone.send("O'Neil-Otieno")
    assert phone.send("123").startswith("CON A PIN is 4 digits.\nChoose a 4-digit PIN")
    assert phone.send("12a4").startswith("CON A PIN is 4 digits.")
    phone.send("4826")
    assert phone.send("4826").startswith("END Welcome to Tuma, Juma!")
    assert find_by_phone(db.session, E164).last_name == "O'Neil-Otieno"


def test_back_and_home_during_registration(client):
    phone = Phone(client, NUMBER)
    phone.walk("1", "Amina")
    assert screen(phone.send("0")) == "Register\nEnter your first name"
    phone.send("Amina")
    phone.send("Hassan")
    assert screen(phone.send("00")).startswith("Welcome to Tuma. Choose language")
    assert users() == 0
