"""The other USSD gateways (``POST /ussd/<gateway>``, ussd_app/ussd/gateways/): each reads its
documented requests and answers in its documented shape, a whole send through its protocol ends
in the same transfer request as through ``/ussd``, repeats and end notices behave, the webhook
guards hold, and odd input gets the gateway's own clean answer, never a 500."""

import importlib

import pytest
from sqlalchemy import select

from tests.gateway_helpers import END_NOTICES, GATEWAYS, NUMBERED, GatewayPhone, as_body
from tests.helpers import fund
from tests.ussd_helpers import CUSTOMER_MENU, Phone, available, options, screen
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments.models import RequestStatus, TransferRequest
from ussd_app.security import InsecureConfig, check_config
from ussd_app.ussd import gateways
from worker.jobs import execute_transfers

PIN = "8642"


def fixtures(gateway: str):
    return importlib.import_module(f"tests.gateway_fixtures.{gateway}")


def field(answer: dict, path: str):
    for part in path.split("."):
        answer = answer[part]
    return answer


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and Wanjiru to send to."""
    fund(customer.account_id, 500_000)
    return customer


# -- the documented fixtures ----------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_documented_requests_are_read_as_documented(gateway):
    module = gateways.GATEWAYS[gateway]
    for doc, expected in fixtures(gateway).REQUESTS:
        message = module.read(doc)
        assert (message.kind, message.session, message.text) == (
            expected["kind"],
            expected["session"],
            expected["text"],
        ), doc
        assert module.caller(doc) == expected["caller"]


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_documented_requests_get_the_documented_answer(client, config, gateway):
    """Posted as the gateway posts them (in its country), each request is answered in the
    documented shape: a begin or an input continues, an end notice ends."""
    fx = fixtures(gateway)
    config(COUNTRY=fx.COUNTRY)
    for doc, expected in fx.REQUESTS:
        response = client.post(f"/ussd/{gateway}", json=doc)
        assert response.status_code == 200
        answer = response.get_json()
        assert set(answer) == set(fx.ANSWER), answer
        assert all(isinstance(answer[name], kind) for name, kind in fx.ANSWER.items()), answer
        path, value = fx.ENDS if expected["kind"] == "end" else fx.CONTINUES
        if fx.COUNTRY != "CI":  # MTN's example number (+225 2312345) is no mobile number
            assert field(answer, path) == value, answer
    if gateway == "beem":
        assert set(answer["payload"]) == {"request_id", "request"}
    if gateway == "mtn":
        assert set(answer["data"]) == {
            "inboundResponse",
            "userInputRequired",
            "messageType",
            "serviceCode",
            "msisdn",
        }


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_the_first_message_walks_what_was_dialled_after_the_service_code(client, juma, gateway):
    # Issue 21 item 3 (tests/test_ussd_shortcut.py): a shortcut is walked, the code alone is home.
    assert options(GatewayPhone(client, gateway).dial("*384*7#")) == CUSTOMER_MENU
    assert "recipient's phone number" in GatewayPhone(client, gateway).dial("*384*7*1#")


# -- a whole conversation -------------------------------------------------------------------


def _sent_by(account_id):
    return (
        db.session.execute(
            select(TransferRequest)
            .where(TransferRequest.debit_account_id == account_id)
            .order_by(TransferRequest.created_at)
        )
        .scalars()
        .all()
    )


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_send_through_the_gateway_is_the_same_transfer_as_through_africas_talking(
    client, juma, second_customer, gateway
):
    phone = GatewayPhone(client, gateway)
    confirm = phone.walk("1", "0712000222", "500")
    assert "Send KES 500.00 to Wanjiru Kamau +254712000222?" in confirm
    phone.send("1")
    assert phone.send(PIN).startswith("END Sending KES 500.00 to Wanjiru Kamau.")
    assert phone.repeat().startswith("END Sending KES 500.00")  # a resend: nothing twice

    at = Phone(client, "0712000111")
    at.walk("1", "0712000222", "500", "1")
    assert at.send(PIN).startswith("END Sending KES 500.00 to Wanjiru Kamau.")

    execute_transfers()
    through_gateway, through_at = _sent_by(juma.account_id)
    same = ("kind", "debit_account_id", "credit_account_id", "amount", "fee")
    assert [getattr(through_gateway, f) for f in same] == [getattr(through_at, f) for f in same]
    assert through_gateway.status == through_at.status == RequestStatus.ACCEPTED.value
    assert available(second_customer.account_id) == 2 * 50_000
    assert available(juma.account_id) == 500_000 - 2 * (50_000 + through_at.fee)
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_resent_message_mid_session_gets_the_same_screen_and_moves_nothing(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    phone.dial()
    first = phone.send("1")
    assert phone.repeat() == first  # the gateway resent "1": still the number screen
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")
    assert "Confirm" in phone.send("500")
    phone.send("1")
    assert phone.repeat().startswith("CON Enter your PIN")  # the resent "1" costs no PIN try
    assert phone.send(PIN).startswith("END Sending KES 500.00")


@pytest.mark.parametrize("gateway", [g for g in GATEWAYS if g not in NUMBERED])
def test_without_message_numbers_the_same_key_typed_later_is_a_new_input(client, config, juma, gateway):
    """Arkesel, Nalo and MTN number no message: past the resend window, "2" then "2" is My
    account then Mini statement (with the window at 0, every message is past it)."""
    config(USSD_RESEND_WINDOW_SECONDS=0)
    phone = GatewayPhone(client, gateway)
    phone.dial()
    assert "My account" in phone.send("2")
    assert "Enter your PIN" in phone.send("2")


@pytest.mark.parametrize("gateway", NUMBERED)
def test_numbered_messages_tell_the_same_key_typed_again_from_a_resend_at_once(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    phone.dial()
    assert "My account" in phone.send("2")
    assert "Enter your PIN" in phone.send("2")


@pytest.mark.parametrize("gateway", END_NOTICES)
def test_a_timeout_notice_ends_the_session_and_the_next_dial_offers_to_resume(client, juma, gateway):
    phone = GatewayPhone(client, gateway)
    phone.walk("1", "0712000222")
    closed = phone.end()
    assert as_body(gateway, closed).startswith("END")
    # A late message of the closed session applies nothing.
    assert phone.send("500") == "END Your session has ended. Please dial again."
    again = GatewayPhone(client, gateway)
    assert screen(again.dial()) == "Continue sending money to Wanjiru Kamau?\n1. Yes\n2. No, start again"
    assert not _sent_by(juma.account_id)


def test_nalo_keys_the_session_on_the_number_and_a_new_dial_starts_a_new_one(client, juma):
    phone = GatewayPhone(client, "nalo")
    phone.walk("1")  # at the number screen
    assert "Send to Wanjiru Kamau" in phone.send("0712000222")
    # Another dial from the same number (MSGTYPE true): a new session, the old one offered back.
    assert screen(phone.dial()) == "Continue sending money to Wanjiru Kamau?\n1. Yes\n2. No, start again"
    assert screen(phone.send("1")) == "Send to Wanjiru Kamau\nEnter amount"
    # Someone else's number has its own session.
    other = GatewayPhone(client, "nalo", number="254712000222")
    assert "Wanjiru" not in other.dial()


def test_gateway_hops_are_counted_by_screen_like_africas_talkings(client, juma):
    from tests.test_ops_metrics import samples, value

    before = samples(client)
    GatewayPhone(client, "hubtel").walk("1")
    after = samples(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("tuma_ussd_requests_total", screen="home.customer_menu", outcome="con") == 1
    assert grew("tuma_ussd_requests_total", screen="send_money.recipient", outcome="con") == 1
    assert grew("tuma_http_request_duration_seconds_count", endpoint="ussd.gateway_hubtel") == 2


# -- guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_each_gateway_has_its_own_secret(client, config, juma, gateway):
    config(WEBHOOK_SECRET="global-secret", **{f"USSD_{gateway.upper()}_SECRET": "its-own"})
    for query in ("", "?key=global-secret", "?key=wrong"):
        response = client.post(f"/ussd/{gateway}{query}", json={})
        assert response.status_code == 403, query
    assert options(GatewayPhone(client, gateway, query="?key=its-own").dial()) == CUSTOMER_MENU
    # Another gateway without its own secret keeps the global one.
    other = next(g for g in GATEWAYS if g != gateway)
    assert client.post(f"/ussd/{other}?key=its-own", json={}).status_code == 403
    assert options(GatewayPhone(client, other, query="?key=global-secret").dial()) == CUSTOMER_MENU


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_each_gateway_has_its_own_allow_list(client, config, juma, gateway):
    config(**{f"USSD_{gateway.upper()}_ALLOWED_IPS": "10.1.2.0/24"})
    assert client.post(f"/ussd/{gateway}", json={}).status_code == 403  # the test client is 127.0.0.1
    assert client.post("/ussd", data={}).status_code == 200  # Africa's Talking's own is open
    config(**{f"USSD_{gateway.upper()}_ALLOWED_IPS": "127.0.0.1"})
    assert options(GatewayPhone(client, gateway).dial()) == CUSTOMER_MENU


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_body_over_the_cap_gets_the_gateways_own_end(client, config, juma, gateway):
    config(WEBHOOK_MAX_BODY_BYTES=2000)
    phone = GatewayPhone(client, gateway)
    doc = phone._request("begin", "*384*7#" + "1" * 3000)
    assert phone.post(doc) == "END Sorry, this request could not be read. Please dial again."


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_a_number_that_hammers_a_gateway_is_told_to_wait_whatever_its_spelling(client, config, juma, gateway):
    config(WEBHOOK_RATE_PER_MINUTE=3)
    for number in ("254712000111", "+254712000111", "0712000111"):
        assert GatewayPhone(client, gateway, number=number).dial().startswith("CON ")
    late = GatewayPhone(client, gateway, number="254 712 000 111").dial()
    assert late == "END Too many requests. Please wait a minute and dial again."


def test_production_refuses_a_gateway_allow_list_that_is_most_of_the_internet(app):
    from tests.test_security import refusal

    said = refusal(WEBHOOK_SECRET="a-long-webhook-secret", USSD_HUBTEL_ALLOWED_IPS="0.0.0.0/0")
    assert "TUMA_USSD_HUBTEL_ALLOWED_IPS has 0.0.0.0/0, wider than /8" in said
    with pytest.raises(InsecureConfig) as refused:  # a malformed one, in any environment
        check_config(
            {"TUMA_ENV": "development", "USSD_GATEWAYS": ("mtn",), "USSD_MTN_ALLOWED_IPS": "mtn.example"}
        )
    assert "TUMA_USSD_MTN_ALLOWED_IPS has an entry that is not an address or network" in str(refused.value)


# -- odd input ------------------------------------------------------------------------------

ODD = [
    "not json",
    "[1, 2]",
    "{}",
    '"a string"',
    "null",
]


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("raw", ODD)
def test_a_body_that_is_no_request_gets_the_gateways_clean_end(client, juma, gateway, raw):
    response = client.post(f"/ussd/{gateway}", data=raw, content_type="application/json")
    assert response.status_code == 200
    assert (
        as_body(gateway, response.get_json())
        == "END Sorry, this request could not be read. Please dial again."
    )


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_missing_fields_wrong_types_and_huge_strings_end_cleanly(client, juma, redis, gateway):
    phone = GatewayPhone(client, gateway)
    good = phone._request("begin", "*384*7#")
    unreadable = "END Sorry, this request could not be read. Please dial again."
    for name in good:
        for odd in (None, ["a"], {"a": 1}, True, 1.5, "x" * 5000, "\x00"):
            if name in (
                "Operator",
                "ClientState",
                "ServiceCode",
                "userID",
                "network",
                "USERID",
                "NETWORK",
                "operator",
                "serviceCode",
            ):
                continue  # fields we do not need: any value is taken or ignored
            if name in ("Message", "userData", "USERDATA", "ussdString") and odd is None:
                continue  # an empty first message is a dial
            if isinstance(good[name], bool) and isinstance(odd, bool):
                continue  # a yes/no flag given a yes/no
            doc = {**good, name: odd}
            if odd is None:
                del doc[name]
            body = phone.post(doc)
            assert body.startswith("END ") or options(body) == CUSTOMER_MENU, (name, odd, body)
            if name not in ("Message", "userData", "USERDATA", "ussdString", "payload", "Sequence"):
                assert body == unreadable, (name, odd, body)
    # A huge input mid-session ends it cleanly; nothing of it is kept.
    phone = GatewayPhone(client, gateway)
    phone.dial()
    assert phone.send("1" * 5000) == unreadable
