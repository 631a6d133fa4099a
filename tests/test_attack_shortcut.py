"""An outsider's attack on shortcut dialling (issue 21 item 3): each test is one way found to
make a dial string do what a walk must never do, or to make a walk cost more than once, and
shows it does not any more. See docs/threat-model.md, "A PIN typed in a shortcut"."""

import logging

import pytest

from tests.gateway_helpers import GATEWAYS, GatewayPhone
from tests.helpers import fund
from tests.test_ussd_shortcut import CONFIRM_50, PIN, PIN_SCREEN, first_hop, transfers
from tests.ussd_helpers import person, screen
from ussd_app.extensions import db
from ussd_app.users import find_by_phone


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and Wanjiru to send to."""
    fund(customer.account_id, 500_000)
    return customer


def juma_now():
    return find_by_phone(db.session, "+254712000111")


# -- a copy of the first hop delivered late --------------------------------------------------


def test_a_late_copy_of_the_first_hop_never_enters_the_pin_it_carries(client, juma):
    """Africa's Talking tells a repeat only by the last text. A copy of the first hop that
    arrives after the person's next input was taken as a new input, its last part (the PIN in
    the dial string) typed on the PIN screen: the money went without the PIN ever typed there."""
    phone, body = first_hop(client, f"1*0712000222*50*1*{PIN}")
    assert body == CONFIRM_50
    assert phone.send("1") == PIN_SCREEN
    assert phone.post(f"1*0712000222*50*1*{PIN}") == PIN_SCREEN  # the late copy: nothing applied
    assert transfers() == 0
    assert juma_now().pin_failures == 0
    # The person goes on from the PIN screen, as AT relays it.
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert transfers() == 1


def test_a_late_copy_of_the_first_hop_never_chooses_a_pin(client, juma):
    """A customer an agent registered is asked to choose a PIN on the first screen; a late copy
    of a first hop "1234*1234" must not choose 1234 for them."""
    person("+254712000333", "Akinyi Odhiambo", pin=None)
    phone, body = first_hop(client, "1234*1234", number="0712000333")
    assert body == "CON Welcome to Tuma, Akinyi. Choose a 4-digit PIN"
    shown = phone.send("12")  # too short: the screen again, saying so
    assert shown.endswith("Choose a 4-digit PIN")
    assert phone.post("1234*1234") == shown  # the late copy: "1234" is not chosen
    assert "again" in screen(phone.send("7391"))  # chosen on screen, then asked again


@pytest.mark.parametrize("gateway", [g for g in GATEWAYS if g != "nalo"])
def test_a_gateways_late_first_message_is_not_taken_for_an_input(client, juma, gateway):
    """The first message of a session arriving again after the person typed (the gateway's late
    retry) was applied as an empty input on the screen the person stands on."""
    phone = GatewayPhone(client, gateway)
    phone.dial(f"*384*7*1*0712000222*50*1*{PIN}#")
    first = phone.last
    assert phone.send("1") == PIN_SCREEN
    assert phone.post(first) == PIN_SCREEN  # not "A PIN is 4 digits."
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert transfers() == 1


# -- Nalo: its retry of a first message whose walk was slow -----------------------------------


@pytest.fixture
def slow_water(app):
    """Kisumu Water, pay bill 888880, whose validation server answers 200 and then trickles the
    body: every question about an account waits out PAYBILL_VALIDATION_TIMEOUT_SECONDS."""
    from tests.events_helpers import TricklingServer
    from ussd_app.events.endpoints import configure
    from ussd_app.users import create_user

    server = TricklingServer(every=0.2)
    user = create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
    )
    configure(db.session, user.account_id, url=f"{server.url}/hooks", validation_url=f"{server.url}/validate")
    db.session.commit()
    try:
        yield server
    finally:
        server.stop()


def test_nalos_retry_of_a_slow_first_message_is_not_walked_again(client, config, juma, slow_water, redis):
    """Nalo's resend window was counted from the first message's arrival, not from our answer:
    a walk slower than the window (a pay bill asks the business's validation URL, up to its
    timeout) was walked again by Nalo's retry, in a new session: the business asked twice, a
    second transfer id minted, the person's session swapped under them."""
    config(USSD_RESEND_WINDOW_SECONDS=0.5, PAYBILL_VALIDATION_TIMEOUT_SECONDS=0.8)
    config(PAYBILL_VALIDATION_DEFAULT="accept")
    phone = GatewayPhone(client, "nalo")
    body = phone.dial("*384*7*6*888880*4455*1200#")
    assert screen(body).startswith("Pay KES 1,200.00 to Kisumu Water"), body
    session = redis.get("tuma:ussd:nalo:+254712000111")
    from ussd_app.ussd import sessions

    minted = sessions.load(session.decode()).data["transfer_id"]
    assert phone.repeat() == body  # Nalo's retry, at once after our answer
    assert redis.get("tuma:ussd:nalo:+254712000111") == session
    assert sessions.load(session.decode()).data["transfer_id"] == minted


def test_nalos_session_id_does_not_put_the_callers_number_in_the_logs(client, juma, caplog):
    """Every hop's log line masks the number (+2547***111); Nalo's session id, logged beside
    it (the hop, the walk), was "nalo:+254712000111:<random>", the whole number in clear."""
    caplog.set_level(logging.DEBUG)
    phone = GatewayPhone(client, "nalo")
    assert phone.dial("*384*7*1*0712000222*50#") == CONFIRM_50
    assert phone.send("1") == PIN_SCREEN
    logged = [r.getMessage() for r in caplog.records]
    assert any("ussd shortcut session=" in line for line in logged)
    assert not [line for line in logged if "712000111" in line]
