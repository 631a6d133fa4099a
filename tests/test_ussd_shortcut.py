"""Shortcut dialling (issue 21 item 3): the first hop already carries inputs (Africa's Talking's
``text=1*0711000002*500`` for ``*384*7*1*0711000002*500#``; another gateway's first message
holds the whole dialled string). The engine walks the menus with them and shows the first
screen that still needs the person: never past a confirm screen, never onto a PIN screen, a PIN
typed in the dial string never used, kept or logged."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.gateway_helpers import GATEWAYS, GatewayPhone
from tests.helpers import fund
from tests.ussd_helpers import CUSTOMER_MENU, Phone, options, person, screen
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import find_by_phone
from ussd_app.ussd import sessions
from ussd_app.ussd.engine import Screen
from ussd_app.ussd.flows import engine
from worker.jobs import execute_transfers

PIN = "8642"  # Juma's
CONFIRM_50 = "CON Send KES 50.00 to Wanjiru Kamau +254712000222?\nFee: KES 0.00\n1. Confirm\n2. Cancel"
PIN_SCREEN = "CON Enter your PIN to send KES 50.00 to Wanjiru Kamau"
HOME_OPTIONS = CUSTOMER_MENU


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and Wanjiru to send to."""
    fund(customer.account_id, 500_000)
    return customer


def transfers() -> int:
    return db.session.scalar(select(func.count()).select_from(TransferRequest))


def first_hop(client, dialled: str, number: str = "0712000111") -> tuple[Phone, str]:
    """A new Africa's Talking session whose first hop carries ``dialled`` (the inputs after the
    service code); the phone then types on as AT relays it (every input so far joined)."""
    phone = Phone(client, number)
    body = phone.post(dialled)
    phone.inputs = dialled.split("*")
    return phone, body


def walks(client) -> bool:
    """Whether a shortcut from Wanjiru is walked (the contrast for the cases that are not)."""
    return screen(first_hop(client, "2", number="0712000222")[1]).startswith("My account")


def stored_without_digest(session_id: str) -> str:
    """All a session keeps in Redis, but the keyed digest of the last text."""
    stored = sessions.load(session_id)
    return json.dumps(
        {"conversation": stored.conversation.to_json(), "data": stored.data, "reply": stored.last_reply}
    )


# -- through POST /ussd (Africa's Talking) ---------------------------------------------------


def test_the_issues_check_a_first_hop_carrying_a_send_shows_its_confirm_screen(client, juma):
    phone, body = first_hop(client, "1*0712000222*50")
    assert body == CONFIRM_50
    assert phone.send("1") == PIN_SCREEN
    assert phone.send(PIN).startswith("END Sending KES 50.00 to Wanjiru Kamau.")
    execute_transfers()
    assert transfers() == 1
    # "0" after a walk goes back through the screens it walked, as if typed.
    again, _ = first_hop(client, "1*0712000222*50")
    assert screen(again.send("0")) == "Send to Wanjiru Kamau\nEnter amount"


def test_a_pin_in_the_dial_string_is_never_taken(client, juma, redis, caplog):
    caplog.set_level(logging.DEBUG)
    phone, body = first_hop(client, f"1*0712000222*50*1*{PIN}")
    # The confirm screen, not the PIN screen and not a send: "1" and the PIN were dropped.
    assert body == CONFIRM_50
    assert transfers() == 0
    assert find_by_phone(db.session, "+254712000111").pin_failures == 0
    # Kept nowhere: not in the session's state, the resume snapshot or any other Redis value
    # (the session's keyed digest of the text aside), and never logged.
    assert PIN not in stored_without_digest(phone.session_id)
    for key in redis.scan_iter("tuma:ussd:*"):
        if key.startswith(b"tuma:ussd:session:") or redis.type(key) != b"string":
            continue
        assert PIN.encode() not in (redis.get(key) or b""), key
    assert not [r for r in caplog.records if PIN in r.getMessage()]
    # The person goes on as ever: confirm, then asked for the PIN, which is then checked.
    assert phone.send("1") == PIN_SCREEN
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert transfers() == 1


def test_a_wrong_pin_in_the_dial_string_costs_no_try(client, juma):
    _, body = first_hop(client, "1*0712000222*50*1*0000")
    assert body == CONFIRM_50
    user = find_by_phone(db.session, "+254712000111")
    assert (user.pin_failures, user.locked_until) == (0, None)


def test_the_walk_never_lands_on_a_pin_screen(client, juma):
    """A flow that asks the PIN before anything else (the balance): the walk stops on the
    screen before it, so a PIN is only ever typed on a screen the person saw coming."""
    phone, body = first_hop(client, f"2*1*{PIN}")
    assert screen(body).startswith("My account\n1. Balance")
    assert find_by_phone(db.session, "+254712000111").pin_failures == 0
    assert phone.send("1") == "CON Enter your PIN to see your balance"
    assert phone.send(PIN) == "END Your balance is KES 5,000.00."


@pytest.mark.parametrize(
    "dialled",
    [
        "1*0712000222*50*1",  # Confirm
        "1*0712000222*50*2",  # Cancel: the confirm screen is still shown, nothing ended
        "1*0712000222*50*1*1*1*1",
    ],
)
def test_the_confirm_screen_is_never_skipped(client, juma, dialled):
    _, body = first_hop(client, dialled)
    assert body == CONFIRM_50


def test_every_confirm_screen_stops_a_walk():
    """Structural: each screen that confirms something (every flow's), and each screen one
    input from a PIN screen that offers to end, is where a walk stops."""
    from ussd_app.ussd.conversation import Conversation

    confirms = [
        name
        for name, state in engine.states.items()
        if isinstance(state, Screen) and state.about.startswith("confirm ")
    ]
    assert len(confirms) >= 20
    for name in confirms:
        assert engine.stops_at(Conversation(state=name)), name


@pytest.mark.parametrize(
    "dialled, shown",
    [
        ("1*07*50", "Not a valid phone number.\nSend money\nEnter the recipient"),
        ("1*0712000111*50", "You cannot send money to yourself.\nSend money\nEnter the recipient"),
        ("1*0712000222*5000000*1", "Over your limit of"),
        ("42*1", "Invalid choice.\n1. Send money"),
    ],
)
def test_an_invalid_input_stops_the_walk_on_its_screen_with_its_reason(client, juma, dialled, shown):
    _, body = first_hop(client, dialled)
    assert screen(body).startswith(shown), body
    assert transfers() == 0


def test_a_resent_first_hop_is_not_walked_twice(client, juma):
    phone, body = first_hop(client, "1*0712000222*50")
    minted = sessions.load(phone.session_id).data["transfer_id"]
    assert phone.repeat() == body
    assert sessions.load(phone.session_id).data["transfer_id"] == minted  # nothing walked again
    assert phone.send("1") == PIN_SCREEN
    assert phone.send(PIN).startswith("END Sending")
    assert phone.repeat().startswith("END Sending")
    assert transfers() == 1


def test_an_unregistered_caller_lands_on_registration(client, juma):
    assert walks(client)
    phone, body = first_hop(client, "1*0712000222*50", number="0712000999")
    assert screen(body).startswith("Welcome to Tuma. Choose language")
    # Registration as ever from there; no PIN is chosen from a dial string.
    _, body = first_hop(client, "1*1234*1234", number="0712000998")
    assert screen(body).startswith("Welcome to Tuma. Choose language")
    assert find_by_phone(db.session, "+254712000998") is None
    assert screen(phone.send("1")) == "Register\nEnter your first name"


def test_a_customer_an_agent_registered_chooses_the_pin_on_screen_not_in_the_dial_string(client, juma):
    assert walks(client)
    newcomer = person("+254712000333", "Akinyi Odhiambo", pin=None)
    _, body = first_hop(client, "1234*1234", number="0712000333")
    assert body == "CON Welcome to Tuma, Akinyi. Choose a 4-digit PIN"
    db.session.refresh(newcomer)
    assert newcomer.pin_hash is None


def test_a_locked_caller_is_told_so_whatever_was_dialled(client, juma):
    assert walks(client)
    juma.pin_failures, juma.locked_until = 3, datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=5)
    db.session.commit()
    _, body = first_hop(client, "1*0712000222*50")
    assert body.startswith("END Your PIN is locked")


def test_menus_paged_and_back_walk_as_typed(client, juma):
    assert screen(first_hop(client, "98*11*1")[1]).startswith("New standing order")
    assert screen(first_hop(client, "11*1")[1]).startswith("New standing order")
    assert screen(first_hop(client, "1*0*2")[1]).startswith("My account")


def test_the_walk_stops_where_the_person_must_choose(client, juma):
    # The language screen: choosing there changes the language and ends; done on screen only.
    _, body = first_hop(client, "2*4*2")
    assert screen(body) == "Choose language\n1. English\n2. Kiswahili"
    assert find_by_phone(db.session, "+254712000111").language == "en"
    # A number not on Tuma: the offer to hold the money is shown, not answered by "50".
    _, body = first_hop(client, "1*0712999999*50")
    assert screen(body).startswith("+254712999999 is not on Tuma. Send anyway?")


@pytest.mark.parametrize(
    "dialled",
    [
        "1*0712000222*5O",  # a letter
        "1**50",  # an empty input
        "1*0712000222*50#*1",  # a "#" inside
        "*".join(["1"] * 17),  # more inputs than any walk
        "1*" + "0" * 200,  # longer than a USSD string
        "1*0712000222*50\x00",
    ],
)
def test_an_odd_or_long_dial_string_is_not_walked(client, juma, dialled):
    assert walks(client)
    assert options(first_hop(client, dialled)[1]) == HOME_OPTIONS


def test_a_shortcut_is_a_fresh_start_not_an_answer_to_the_resume_offer(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222")  # dropped: offered on the next dial
    # "1" would be "Yes, continue" on the offer: a shortcut never answers it, it starts afresh.
    _, body = first_hop(client, "1*0712000222*50")
    assert body == CONFIRM_50


def test_a_walk_that_stops_where_nothing_resumes_leaves_the_earlier_offer(client, juma):
    Phone(client, "0712000111").walk("1", "0712000222")  # dropped at the amount screen
    _, body = first_hop(client, "42")
    assert screen(body).startswith("Invalid choice.\n1. Send money")
    assert screen(Phone(client, "0712000111").dial()).startswith("Continue sending money to Wanjiru Kamau?")


# -- through the other gateways --------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_gateways_first_message_with_a_shortcut_shows_the_confirm_screen(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    assert phone.dial("*384*7*1*0712000222*50#") == CONFIRM_50
    assert phone.send("1") == PIN_SCREEN
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert transfers() == 1


@pytest.mark.parametrize("gateway", ["hubtel", "arkesel"])
def test_a_pin_dialled_through_a_gateway_is_never_taken(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    assert phone.dial(f"*384*7*1*0712000222*50*1*{PIN}#") == CONFIRM_50
    assert transfers() == 0
    assert phone.send("1") == PIN_SCREEN
    assert phone.send(PIN).startswith("END Sending")
    assert transfers() == 1


@pytest.mark.parametrize("gateway", ["hubtel", "arkesel"])
def test_a_resent_first_message_is_answered_from_the_store(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    body = phone.dial("*384*7*1*0712000222*50#")
    minted = sessions.load(f"{gateway}:{phone.session}").data["transfer_id"]
    assert phone.repeat() == body
    assert sessions.load(f"{gateway}:{phone.session}").data["transfer_id"] == minted


@pytest.mark.parametrize(
    "dialled, service_code",
    [
        ("*384*7#", "384"),  # the service code alone: home
        ("*999*1*0712000222*50#", "999"),  # another code than ours: not a shortcut of ours
        ("*3847*1*0712000222*50#", "3847"),  # a code that only begins like ours
        ("", "b230733cd56b4a0fad820e39f66bc27c"),  # Hubtel's app channel: nothing dialled
        # A bare short code is never taken for ours: cut after "*384" this would be a send.
        ("*384*1*0712000222*50#", "384"),
    ],
)
def test_hubtel_only_walks_what_follows_our_service_code(client, juma, dialled, service_code):
    wanjiru = GatewayPhone(client, "hubtel", number="254712000222")
    assert screen(wanjiru.dial("*384*7*2#")).startswith("My account")
    phone = GatewayPhone(client, "hubtel")
    doc = phone._request("begin", dialled)
    doc["ServiceCode"] = service_code
    assert options(phone.post(doc)) == HOME_OPTIONS


def test_hubtel_service_code_field_gives_the_base_when_it_is_a_whole_code(client, config, juma):
    """Our code may be set for another market; a ServiceCode field with its extension is the
    base the gateway dialled. A bare short code is never a base: "*713*7*1#" cut after "*713"
    would walk "7" as a menu choice."""
    config(SERVICE_CODE="*713*7#")
    phone = GatewayPhone(client, "hubtel")
    doc = phone._request("begin", "*500*3*1*0712000222*50#")
    doc["ServiceCode"] = "*500*3#"
    assert phone.post(doc) == CONFIRM_50
    phone = GatewayPhone(client, "hubtel")
    doc = phone._request("begin", "*713*7*1*0712000222*50#")
    doc["ServiceCode"] = "713"
    assert phone.post(doc) == CONFIRM_50


def test_mtn_strips_the_service_code_too(client, juma):
    phone = GatewayPhone(client, "mtn")
    doc = phone._request("begin", "*384*7*2#")
    assert screen(phone.post(doc)).startswith("My account")


def test_nalo_sending_the_first_message_again_at_once_keeps_the_session(client, juma, redis):
    """Nalo has no session id: its retry of the first message must not be a second dial (a
    second walk, a second look-up of the name); a new dial after typing is a new session."""
    phone = GatewayPhone(client, "nalo")
    body = phone.dial("*384*7*1*0712000222*50#")
    assert body == CONFIRM_50
    session = redis.get("tuma:ussd:nalo:+254712000111")
    minted = sessions.load(session.decode()).data["transfer_id"]
    assert phone.repeat() == body
    assert redis.get("tuma:ussd:nalo:+254712000111") == session
    assert sessions.load(session.decode()).data["transfer_id"] == minted  # not walked again
    assert phone.send("1") == PIN_SCREEN  # the one session goes on
    assert phone.send(PIN).startswith("END Sending KES 50.00")
    assert transfers() == 1
    assert options(phone.dial()) == HOME_OPTIONS  # dialled again later: a new session


def test_an_agents_shortcut_walks_the_agents_menu(client, agent, customer):
    fund(agent.account_id, 500_000)
    _, body = first_hop(client, "1*0712000111*500", number="0700000101")
    assert screen(body).startswith("Deposit KES 500.00 to Juma Otieno"), body
    assert body.endswith("1. Confirm\n2. Cancel")
    # The float balance asks the PIN first: the walk stays on the menu.
    _, body = first_hop(client, "2*1111", number="0700000101")
    assert screen(body).startswith("Tuma Agent\n1. Deposit")
