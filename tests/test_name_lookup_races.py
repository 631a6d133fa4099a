"""Look-ups of registered names racing each other, on real Redis and the real database: parallel
sessions of one number (or a repeated hop racing its original) never pass more look-ups than the
limit, nor more than one look-up past the cancel that starts the delay, in any flow that tells
a caller whose a number is or whether it is on Tuma. The rule's one copy is ``fraud._LOOKUP``;
every flow reaches it through ``fraud_checks`` (check and count in one atomic step).

Each racer is a session of its own (its own ``Context``, as two dialled sessions have), all
released together by a barrier (``escrow_helpers.at_once``)."""

import pytest

from tests.escrow_helpers import at_once
from tests.ussd_helpers import Phone, local, person
from ussd_app import fraud
from ussd_app.extensions import db
from ussd_app.payments.submit import mint_request_id
from ussd_app.users import find_by_phone
from ussd_app.ussd.engine import Context
from ussd_app.ussd.flows import agent_deposit, agent_register, request_common, send_money, standing_orders

AMINA, BOB, CHRIS = "+254712000111", "+254712000222", "+254712000333"
AGENT, SHOP = "+254700000101", "+254700000002"
PIN = "8642"
RACERS = 12
THROTTLED = "throttled"


@pytest.fixture
def people(app):
    person(AMINA, "Amina Hassan", pin=PIN)
    person(BOB, "Bob Kamau", pin=PIN)
    person(CHRIS, "Chris Wanjiru", pin=PIN)
    person(AGENT, "Ali Agent", pin="1111", role="agent")
    person(SHOP, "Mama Mboga", pin="2222", role="merchant", till="123456")


def session_of(phone: str, **data) -> Context:
    """A session of ``phone`` (its user read in this thread's database session)."""
    user = find_by_phone(db.session, phone)
    return Context(phone, "en", "home", data=data, user=user, role=user.role, account_id=user.account_id)


def race(app, step, phone: str, **data) -> list:
    """``step(ctx)`` in ``RACERS`` sessions of ``phone`` at once; their outcomes."""
    return at_once(app, *[lambda: step(session_of(phone, **data)) for _ in range(RACERS)])


def passed(outcomes: list) -> int:
    return sum(outcome != THROTTLED for outcome in outcomes)


def test_the_rule_itself_never_lets_more_than_the_limit_through(app, config):
    config(NAME_LOOKUP_LIMIT=5)
    waits = at_once(app, *[lambda: fraud.look_up_names(AMINA, 2) for _ in range(RACERS)])
    assert sum(w == 0 for w in waits) == 2  # 2 x 2 names of 5
    assert fraud.lookup_delay_or_block(AMINA) == 0  # the fifth is left
    assert fraud.look_up_name("0712 000 111") == 0  # the same number, spelt otherwise
    assert fraud.lookup_delay_or_block(AMINA) > 0


# -- send money ----------------------------------------------------------------------------------


def test_send_money_sessions_racing_past_the_cancels_show_one_name(app, people, config):
    config(NAME_CANCEL_LIMIT=0, NAME_DELAY_SECONDS=600)
    outcomes = race(app, send_money.find_recipient, AMINA, recipient_phone=BOB)
    assert sorted(outcomes) == ["ok"] + [THROTTLED] * (RACERS - 1)


def test_send_money_sessions_racing_at_the_limit_pass_the_limit(app, people, config):
    config(NAME_LOOKUP_LIMIT=3, NAME_CANCEL_LIMIT=100)
    assert passed(race(app, send_money.find_recipient, AMINA, recipient_phone=BOB)) == 3


# -- an agent's customer (deposit, withdraw for a customer, unlock, verify ID) -------------------


def test_agent_sessions_racing_past_the_cancels_show_one_name(app, people, config):
    """The customer's name about to be shown is a cancel: counted in the look-up's own step, so
    the first racer's cancel starts the delay for every other."""
    config(NAME_CANCEL_LIMIT=0, NAME_DELAY_SECONDS=600)
    outcomes = race(app, agent_deposit.find_depositor, AGENT, customer_phone=BOB)
    assert sorted(outcomes) == ["ok"] + [THROTTLED] * (RACERS - 1)
    assert 9 <= fraud.lookup_delay_or_block(AGENT) / 60 <= 10


def test_agent_sessions_racing_at_the_limit_pass_the_limit(app, people, config):
    config(NAME_LOOKUP_LIMIT_BUSINESS=4, NAME_CANCEL_LIMIT=100)
    assert passed(race(app, agent_deposit.find_depositor, AGENT, customer_phone=BOB)) == 4


def test_agent_registering_a_number_is_a_counted_look_up_even_when_racing(app, people, config):
    """ "Already registered" or not tells the agent whether the number is on Tuma."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=4)
    outcomes = race(app, agent_register.check_new_number, AGENT, new_phone=BOB)
    assert sorted(outcomes) == ["taken"] * 4 + [THROTTLED] * (RACERS - 4)
    assert agent_register.check_new_number(session_of(AGENT, new_phone="+254799999999")) == THROTTLED


# -- standing orders ---------------------------------------------------------------------------


def test_standing_order_sessions_racing_past_the_cancels_show_one_name(app, people, config):
    config(NAME_CANCEL_LIMIT=0, NAME_DELAY_SECONDS=600)
    outcomes = race(app, standing_orders.find_person, AMINA, so_phone=BOB)
    assert sorted(outcomes) == ["ok"] + [THROTTLED] * (RACERS - 1)


def test_standing_order_sessions_racing_at_the_limit_pass_the_limit(app, people, config):
    config(NAME_LOOKUP_LIMIT=3, NAME_CANCEL_LIMIT=100)
    assert passed(race(app, standing_orders.find_person, AMINA, so_phone=BOB)) == 3


# -- request money, request payment (My requests then shows the payers' names) ------------------


def names(phones: list[str]):
    def step(ctx):
        ctx.data["group_id"] = mint_request_id()  # each session's own request
        outcome = request_common.names_and_invites(ctx, phones) or "ok"
        db.session.commit()  # as the hop does: one that never commits gives its look-ups back
        return outcome

    return step


def test_request_money_sessions_racing_at_the_limit_pass_the_limit(app, people, config):
    config(NAME_LOOKUP_LIMIT=5)
    assert passed(race(app, names([BOB, CHRIS]), AMINA)) == 2  # 2 x 2 payers of 5
    assert passed(race(app, names([BOB]), AMINA)) == 1  # the fifth


def test_request_payment_sessions_racing_at_the_limit_pass_the_limit(app, people, config):
    config(NAME_LOOKUP_LIMIT_BUSINESS=3)
    assert passed(race(app, names([BOB]), SHOP)) == 3


def test_two_dialled_sessions_at_the_request_pin_with_one_look_up_left_send_one(backend_app):
    """Both sessions typed Bob while a look-up was left; after the PIN, one step decides."""
    app = backend_app
    client = app.test_client()
    with app.app_context():
        saved = app.config["NAME_LOOKUP_LIMIT"]
        app.config.update(NAME_LOOKUP_LIMIT=1)
        try:
            person(AMINA, "Amina Hassan", pin=PIN)
            person(BOB, "Bob Kamau", pin=PIN)
            phones = []
            for _ in range(2):
                phone = Phone(client, local(AMINA))
                phone.walk("8", local(BOB), "#", "1", "50", "tea")
                assert phone.send("1") == "CON Enter your PIN to send the requests"
                phones.append(phone)
            answers = at_once(app, *[lambda p=p: p.send(PIN) for p in phones])
            assert sorted(a.split(".")[0] for a in answers) == [
                "END Requests sent: 1",
                "END Too many look-ups",
            ], answers
        finally:
            app.config.update(NAME_LOOKUP_LIMIT=saved)
