"""An outsider's attacks on the country profiles (``TUMA_COUNTRY``, ussd_app/country.py), each
a test that failed before its fix: what a person, a merchant's system or an operator would
notice in Ghana, Tanzania or Kenya."""

import pytest

from tests.helpers import fund
from tests.test_country_profiles import PIN, _country_app, deliver, inbox
from tests.ussd_helpers import Phone, person, screen
from ussd_app.extensions import db
from ussd_app.users import find_by_phone


@pytest.fixture
def ghana():
    yield from _country_app("GH")


@pytest.fixture
def tanzania():
    yield from _country_app("TZ")


# -- a stored language the server does not offer -------------------------------------------


def test_a_kiswahili_speaker_carried_over_to_a_ghanaian_server_is_served_in_english(ghana):
    """A users table carried over (or a language set outside the menus) holds "sw"; Ghana offers
    English only, and its language menu offers no way back to Kiswahili: menus and SMS are in
    the country's language, never in one it does not offer."""
    app, gateway = ghana
    kwame = person("+233240000003", "Kwame Mensah", pin=PIN)
    person("+233240000004", "Efua Owusu", pin="2468")
    kwame.language = "sw"  # as the carried-over row holds it (create_user now refuses "sw" here)
    db.session.commit()
    fund(kwame.account_id, 100_00)
    phone = Phone(app.test_client(), "0240000003")
    home = phone.dial()
    assert screen(home).startswith("Tuma\n1. Send money\n"), home
    phone = Phone(app.test_client(), "0240000003")
    phone.walk("1", "0240000004", "20", "1")
    assert phone.send(PIN).startswith("END Sending GHS 20.00 to Efua Owusu.")
    deliver()
    [sent] = inbox(gateway, "+233240000003")
    assert "GHS 20.00 sent to EFUA OWUSU +233240000004" in sent, sent
    assert find_by_phone(db.session, "+233240000003").language == "sw"  # the row is left as it was


def test_a_language_the_country_does_not_offer_is_refused_when_an_account_is_opened(ghana):
    app, _gateway = ghana
    result = app.test_cli_runner().invoke(
        args=["accounts", "create", "--phone", "0240000005", "--name", "Ama Boateng"]
        + ["--role", "customer", "--pin", "1234", "--language", "sw"]
    )
    assert result.exit_code != 0
    assert "Ghana offers en, not sw" in result.output
    assert find_by_phone(db.session, "+233240000005") is None
