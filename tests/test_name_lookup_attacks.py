"""An outsider's attacks on the look-up throttle (branch ``lookups``), through the real /ussd
webhook and the real Redis: the caller's number spelt otherwise, a gateway's retry of the hop
that shows a name (alone and racing its original), a session dropped at a name and resumed, and
the agent's own number on Register customer."""

import json

from tests.escrow_helpers import at_once
from tests.ussd_helpers import Phone, fresh, local, person
from ussd_app import fraud
from ussd_app.extensions import db

AMINA, BOB, CHRIS = "+254712000111", "+254712000222", "+254712000333"
AGENT = "+254700000101"
PIN, AGENT_PIN = "8642", "1111"
STANDING_ORDER_TO_A_PERSON = ("11", "1", "1")
THROTTLED = "END Too many look-ups. Try again in 60 min."


def cast():
    person(AMINA, "Amina Hassan", pin=PIN)
    person(BOB, "Bob Kamau", pin=PIN)
    person(CHRIS, "Chris Wanjiru", pin=PIN)
    person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")


def test_every_spelling_of_the_callers_number_shares_one_allowance(app, client, config):
    """The gateway may send 07..., 254..., +254... or spaces: one counter, not four."""
    cast()
    config(NAME_LOOKUP_LIMIT=3)
    spellings = ["0712000111", "254712000111", "+254712000111", "0712 000 111"]
    for spelling in spellings[:3]:
        assert fresh(client, spelling, *STANDING_ORDER_TO_A_PERSON, local(BOB))[1].startswith("CON ")
    assert fresh(client, spellings[3], *STANDING_ORDER_TO_A_PERSON, local(BOB))[1] == THROTTLED
    assert fresh(client, spellings[1], "1", local(CHRIS))[1] == THROTTLED


def test_a_gateway_retry_of_the_hop_that_shows_a_name_counts_it_once(app, client, config):
    cast()
    config(NAME_LOOKUP_LIMIT=2, NAME_LOOKUP_LIMIT_BUSINESS=2, NAME_CANCEL_LIMIT=100)
    for caller, inputs, shown in (
        (AMINA, (*STANDING_ORDER_TO_A_PERSON, local(BOB)), "Bob Kamau"),
        (AGENT, ("1", local(BOB)), "Deposit to Bob Kamau"),
        (AGENT, ("5", "0799999999"), "Enter their first name"),
    ):
        phone, body = fresh(client, local(caller), *inputs)
        assert shown in body
        assert phone.repeat() == body  # the same screen, nothing counted again
        assert phone.repeat() == body
    assert fraud.lookup_delay_or_block(AMINA, 1, 2) == 0  # one of two used
    assert fraud.lookup_delay_or_block(AGENT, 1, 2) > 0  # two of two used, not four
    assert fresh(client, local(AMINA), "1", local(CHRIS))[1].startswith("CON Send to Chris")


def test_a_retry_racing_its_original_counts_the_look_up_once(backend_app):
    app = backend_app
    client = app.test_client()
    with app.app_context():
        saved = dict(app.config)
        app.config.update(NAME_LOOKUP_LIMIT_BUSINESS=2)
        try:
            cast()
            phone = Phone(client, local(AGENT))
            phone.walk("5")
            text = "5*0799999999"
            answers = at_once(app, *[lambda: phone.post(text) for _ in range(6)])
            assert all(a.startswith("CON ") for a in answers), answers
            assert "CON Enter their first name" in answers
            assert fraud.lookup_delay_or_block(AGENT, 1, 2) == 0  # one counted, one left
        finally:
            app.config.clear()
            app.config.update(saved)


def test_a_session_dropped_at_a_payees_name_is_a_cancel_and_resuming_it_to_the_end_is_not(
    app, client, config
):
    cast()
    config(NAME_CANCEL_LIMIT=0, NAME_DELAY_SECONDS=600)
    phone, body = fresh(client, local(AMINA), *STANDING_ORDER_TO_A_PERSON, local(BOB))
    assert "Bob Kamau" in body  # then the session drops
    assert 9 <= fraud.lookup_delay_or_block(AMINA) / 60 <= 10  # a cancel: the next waits
    # The dropped session resumed shows the name it already counted, and records nothing new.
    again = Phone(client, local(AMINA))
    offer = again.dial()
    assert offer.endswith("1. Yes\n2. No, start again"), offer
    assert "Bob Kamau" in again.send("1")


def test_the_agents_own_number_on_register_customer_is_no_look_up(app, client, config):
    """Every other agent look-up answers "your own number" without counting it (nothing about
    anyone else is told); Register customer counted it, and refused it once throttled."""
    cast()
    config(NAME_LOOKUP_LIMIT_BUSINESS=1)
    for _ in range(3):
        assert fresh(client, local(AGENT), "5", local(AGENT))[1].startswith(
            "CON +254700000101 is already registered."
        )
    assert fresh(client, local(AGENT), "5", "0799999999")[1] == "CON Enter their first name"


def test_invitations_given_back_after_their_day_ended_leave_no_key_without_expiry(app, redis, config):
    """The day's key gone (the day rolled over mid-hop, or Redis evicted it) when a request that
    took an invitation is not recorded after all: a DECRBY there made a key of -1 with no expiry,
    kept forever (memory) and an extra invitation for its day."""
    config(INVITES_PER_DAY=2)
    assert fraud.take_invites(AMINA, 1)
    for key in redis.keys("tuma:fraud:invites:*"):
        redis.delete(key)  # the day's key is gone
    fraud.give_back_invites(AMINA, 1)
    assert [(key, redis.ttl(key)) for key in redis.keys("tuma:fraud:invites:*") if redis.ttl(key) < 0] == []
    assert fraud.invites_left(AMINA) == 2  # not 3


def test_a_merchants_system_never_hears_the_name_of_a_customer_who_did_not_pay_or_approve(
    app, client, config, merchant, customer, second_customer
):
    """A merchant's key asks any number for money (or an allowance) with the shortest expiry:
    "payer_not_found" says who is on Tuma (documented, at the key's rate limit), but a declined
    or expired ask named the customer in its webhook event: a registered name for every number
    on Tuma, counted nowhere. Names only once money moved or the customer approved, as the
    refused payout's event and the API's transactions already do."""
    from datetime import datetime, timedelta

    from sqlalchemy import select

    from tests.api_helpers import make_key, post
    from ussd_app.events.models import Event
    from ussd_app.payments import payment_requests as pr
    from ussd_app.payments.allowances import customer as allowances
    from worker import jobs

    config(API_RATE_PER_MINUTE=1_000_000)
    key = make_key(merchant)
    ask = {"amount": 100, "description": "x", "expires_in": 60}
    declined = post(client, "/payment-requests", key, {**ask, "phone": customer.phone}).json["id"]
    post(client, "/payment-requests", key, {**ask, "phone": second_customer.phone})
    terms = {"limit": 200_00, "max_charge": 5_00, "period": "week", "description": "Daily News"}
    refused = post(client, "/allowances", key, {**terms, "phone": customer.phone}).json["id"]
    post(client, "/allowances", key, {**terms, "phone": second_customer.phone})
    assert pr.decline(db.session, customer, declined)
    assert allowances.decline(db.session, customer, refused)
    db.session.commit()
    jobs.settle_payment_requests(expire=True, now=datetime(2100, 1, 1))
    jobs.settle_allowances(now=datetime.utcnow() + timedelta(days=30))
    db.session.expire_all()
    told = {row.type: json.loads(row.payload)["data"] for row in db.session.execute(select(Event)).scalars()}
    assert set(told) == {
        "payment_request.declined",
        "payment_request.expired",
        "allowance.declined",
        "allowance.expired",
    }
    for event_type, data in told.items():
        who = data.get("payer") or data.get("customer")
        assert who["name"] is None and who["phone"].startswith("+2547120"), (event_type, who)


def test_a_payout_of_one_cent_is_no_way_round_the_look_up_throttle(
    app, client, config, merchant, agent, customer
):
    """A merchant's key pays KES 0.01 (no fee) to each number it wants named: up to 10,000 a
    batch. The USSD send that shows the same name is a counted look-up: so is the payout now,
    and beyond the allowance it is paid and names nobody (tests/test_name_lookup_payouts.py)."""
    from sqlalchemy import select

    from tests.api_helpers import execute_all, fund_merchant, get, make_key, post
    from ussd_app.events.models import Event

    config(API_RATE_PER_MINUTE=1_000_000, NAME_LOOKUP_LIMIT_BUSINESS=0)
    fund_merchant(merchant.phone, 100_00)
    key = make_key(merchant)
    made = post(client, "/payouts", key, {"phone": local(customer.phone), "amount": 1, "reference": "x"})
    assert made.status_code == 202, made.json
    assert made.json["fee"] == 0
    execute_all()
    db.session.expire_all()
    [posted] = db.session.execute(select(Event).where(Event.type == "payout.posted")).scalars()
    assert json.loads(posted.payload)["data"]["recipient"]["name"] is None  # named: Juma Otieno
    seen = get(client, f"/transactions/{made.json['transaction']}", key).json
    assert seen["status"] == "posted" and seen["counterparty"] == {"name": None, "phone": "+2547120***11"}
    [listed] = [t for t in get(client, "/transactions", key).json["data"] if t["type"] == "payout"]
    assert listed["counterparty"]["name"] is None
