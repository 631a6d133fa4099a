"""Issue 15, items 8 and 11, through the real /ussd webhook: name harvesting (every screen that
shows a registered name is a counted look-up; leaving it with 0, 00 or a dropped session counts
like Cancel; Request money is behind the PIN and the look-up throttle) and invitations to numbers
not on Tuma capped per sender per day; Request money never takes an eleventh payer and no path
through it ends in "something went wrong"."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.escrow_helpers import FUNDS, PIN, at_once, sms_to
from tests.test_ussd_secrets import leaks_in_redis
from tests.ussd_helpers import Phone, fresh, is_resume_offer, local, person
from ussd_app import fraud
from ussd_app.extensions import db
from ussd_app.payments import payment_requests as pr
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from worker import jobs

SEND, REQUEST_MONEY, MY_REQUESTS = "1", "8", "9"
AMINA, BOB, CHRIS = "+254712000111", "+254712000222", "+254712000333"
AGENT, AGENT_PIN = "+254700000101", "1111"
WRONG = "END Sorry, something went wrong. Nothing was sent. Please try again later."
SENT_TEN = "END Requests sent: 10. You will get an SMS as each one pays or declines."


def stranger(n: int) -> str:
    return f"+2547220000{n:02d}"  # numbers that are not on Tuma


@pytest.fixture
def people(app):
    """Amina (funded), Bob and Chris (customers), an agent with float."""
    agent = person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")
    issue_float(db.session, agent, FUNDS, "BANK-1")
    amina = person(AMINA, "Amina Hassan", pin=PIN)
    person(BOB, "Bob Kamau", pin=PIN)
    person(CHRIS, "Chris Wanjiru", pin=PIN)
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.DEPOSIT.value,
        debit_account_id=agent.account_id,
        credit_account_id=amina.account_id,
        amount=FUNDS // 2,
    )
    db.session.commit()
    jobs.execute_transfers()


def payment_requests() -> list[pr.PaymentRequest]:
    db.session.expire_all()
    rows = list(db.session.execute(select(pr.PaymentRequest).order_by(pr.PaymentRequest.id)).scalars())
    db.session.commit()
    return rows


def transfer_requests(kind: str) -> int:
    db.session.expire_all()
    count = db.session.execute(
        select(func.count()).select_from(TransferRequest).where(TransferRequest.kind == kind)
    ).scalar_one()
    db.session.commit()
    return count


# -- item 11: an eleventh payer ----------------------------------------------------------------


def ten_numbers(phone: Phone) -> str:
    phone.walk(REQUEST_MONEY)
    for n in range(10):
        body = phone.send(local(stranger(n)))
    assert body == "CON Numbers entered: 10\n1. Amount each\n2. Total to split evenly"
    return body


def finish_request(phone: Phone, *, first: str = "1") -> str:
    """From "Numbers entered" to the end: KES 100 each, for tea, confirmed with the PIN."""
    assert phone.send(first).startswith("CON Enter the amount each")
    phone.send("100")
    assert phone.send("tea").startswith("CON Request KES 1,000.00 for tea: 10 x KES 100.00.")
    assert phone.send("1") == "CON Enter your PIN to send the requests"
    return phone.send(PIN)


def test_going_back_after_the_tenth_number_takes_it_back_and_never_adds_an_eleventh(client, people, config):
    config(INVITES_PER_DAY=20)
    phone = Phone(client, local(AMINA))
    ten_numbers(phone)
    # 0 goes back to the screen that asked for the tenth number, as it was: the tenth is
    # forgotten, so whatever is typed now is the tenth, never an eleventh.
    assert phone.send("0").startswith("CON Request money\nEnter number 10")
    entered = "CON Numbers entered: 10\n1. Amount each\n2. Total to split evenly"
    assert phone.send(local(stranger(10))) == entered
    assert finish_request(phone) == SENT_TEN
    asked = sorted(r.payer_phone for r in payment_requests())
    assert asked == sorted([stranger(n) for n in range(9)] + [stranger(10)])


def test_a_resumed_session_with_ten_numbers_never_adds_an_eleventh(client, people, config):
    config(INVITES_PER_DAY=20)
    ten_numbers(Phone(client, local(AMINA)))  # and the session drops
    phone = Phone(client, local(AMINA))
    assert is_resume_offer(phone.dial())
    assert phone.send("1") == "CON Numbers entered: 10\n1. Amount each\n2. Total to split evenly"
    assert phone.send("0").startswith("CON Request money\nEnter number 10")
    assert phone.send(local(stranger(10))).startswith("CON Numbers entered: 10")
    assert finish_request(phone) == SENT_TEN
    assert len(payment_requests()) == 10


DROP = "<the session drops; dial again and continue>"
CONTROLS = ["0", "00", "#", "1", "2", "98", "100", "7", "tea", PIN, "x", DROP, DROP]
KNOWN = [local(AMINA), local(BOB), local(CHRIS)]
# Bursts of distinct numbers not on Tuma (up to 12 of 13 at once), so that walks reach the
# tenth number and go past it, and the rest of a request in one go (each or split, with the
# PIN), mixed with single controls and known numbers.
BURST = st.sampled_from([1, 3, 9, 10, 11, 12]).flatmap(
    lambda k: st.permutations(range(13)).map(lambda order: [local(stranger(i)) for i in order[:k]])
)
FINISH = st.sampled_from(
    [
        ["#", "1", "100", "tea", "1", PIN],
        ["1", "100", "tea", "1", PIN],
        ["2", "1000", "tea", "1", PIN],
        ["0", "#", "2", "7", "tea", "1", PIN],
    ]
)
WALK = st.lists(
    st.one_of(
        BURST,
        BURST,
        FINISH,
        st.sampled_from([["0"], ["00"], [DROP]]),
        st.sampled_from(CONTROLS + KNOWN).map(lambda value: [value]),
    ),
    max_size=15,
).map(lambda segments: [value for segment in segments for value in segment])


def _request_money(client) -> tuple[Phone, str]:
    """Dial again: continue an unfinished session when offered, else start Request money."""
    phone = Phone(client, local(AMINA))
    body = phone.dial()
    body = phone.send("1" if is_resume_offer(body) else REQUEST_MONEY)
    return phone, body


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(WALK)
def test_no_walk_through_request_money_ends_wrong_or_asks_more_than_ten(app, client, config, people, inputs):
    """A state walk: from Request money, any mix of back, home, numbers, #, amounts, reasons,
    the PIN and dropped sessions resumed. No screen says something went wrong; no group ever
    holds more than ten payers."""
    config(  # put back after the test: the app (and its config) outlives it
        REQUESTS_PER_PAYER_PER_DAY=10_000,
        NAME_LOOKUP_LIMIT=10_000,
        NAME_CANCEL_LIMIT=10_000,
        INVITES_PER_DAY=10_000,
        WEBHOOK_RATE_PER_MINUTE=0,  # hundreds of hops a minute from one phone: the walk's own
    )
    app.extensions["redis"].flushdb()  # each walk from a clean slate of sessions and counters
    phone, body = fresh(client, local(AMINA), REQUEST_MONEY)
    for value in inputs:
        if value == DROP or body.startswith("END") or "8. Request money" in body:
            phone, body = _request_money(client)  # ended, dropped, or back at the home menu
            if value == DROP:
                continue
        body = phone.send(value)
        assert "something went wrong" not in body, (inputs, value)
        assert not body.startswith("END Too many requests")
    sizes: dict[str, int] = {}
    for row in payment_requests():
        sizes[row.group_id] = sizes.get(row.group_id, 0) + 1
    assert all(1 <= size <= pr.MAX_PAYERS for size in sizes.values()), sizes


# -- item 8: Request money behind the PIN --------------------------------------------------


def test_request_money_asks_for_the_pin_and_three_wrong_ones_lock(client, people):
    phone = Phone(client, local(AMINA))
    phone.walk(REQUEST_MONEY, local(BOB), "#", "1", "100", "tea")
    assert phone.send("1") == "CON Enter your PIN to send the requests"
    assert phone.send("0000") == "CON Wrong PIN. 2 tries left.\nEnter your PIN to send the requests"
    assert phone.send("1234") == "CON Wrong PIN. 1 try left.\nEnter your PIN to send the requests"
    assert phone.send("9999").startswith("END Your PIN is locked")
    assert payment_requests() == []
    assert sms_to(BOB) == []
    # Locked: the next try ends at the same screen, even with the right PIN.
    phone, _ = fresh(client, local(AMINA), REQUEST_MONEY, local(BOB), "#", "1", "100", "tea", "1")
    assert phone.send(PIN).startswith("END Your PIN is locked")
    assert payment_requests() == []


def test_a_session_dropped_at_the_request_pin_is_not_resumed_there(client, people, redis):
    phone = Phone(client, local(AMINA))
    phone.walk(REQUEST_MONEY, local(BOB), "#", "1", "100", "tea", "1")  # at the PIN; drops
    assert Phone(client, local(AMINA)).dial().startswith("CON Tuma\n1. Send money")  # no resume
    assert payment_requests() == []
    # The PIN typed in a session is never kept in Redis (standing on its own: "8642" can occur
    # inside a digest's hex or a clock, which is no leak).
    phone.send(PIN)
    assert leaks_in_redis(redis) == []


# -- item 8: look-ups and cancels ------------------------------------------------------------


def test_backing_out_of_a_name_screen_or_dropping_the_session_counts_as_a_cancel(client, people, config):
    config(NAME_CANCEL_LIMIT=2, NAME_DELAY_SECONDS=120)
    named = "CON Send to Bob Kamau\nEnter amount"
    _, body = fresh(client, local(AMINA), SEND, local(BOB))
    assert body == named
    fresh(client, local(AMINA), SEND, local(BOB), "0")  # back from the amount screen
    phone, _ = fresh(client, local(AMINA), SEND, local(BOB), "100")
    assert phone.send("00").startswith("CON ")  # home from the confirm screen
    phone, body = fresh(client, local(AMINA), SEND, local(BOB))  # the first session dropped
    assert body == "END Too many look-ups. Try again in 2 min."
    # Someone else is not slowed down.
    assert fresh(client, local(CHRIS), SEND, local(BOB))[1] == named


def test_sends_that_are_recorded_are_not_cancels(client, people, config):
    config(NAME_CANCEL_LIMIT=1, NAME_DELAY_SECONDS=120)
    for _ in range(3):  # back and the same number again: one look-up left, then recorded
        phone, body = fresh(client, local(AMINA), SEND, local(BOB), "0", local(BOB), "10", "1")
        assert phone.send(PIN).startswith("END Sending KES 10.00 to Bob Kamau")
    # Chris's name looked up, then left for Bob's: one cancel, though Bob's send is recorded.
    phone, _ = fresh(client, local(AMINA), SEND, local(CHRIS), "0", local(BOB), "10", "1")
    assert phone.send(PIN).startswith("END Sending")
    fresh(client, local(AMINA), SEND, local(BOB), "00")  # a second cancel
    assert fresh(client, local(AMINA), SEND, local(BOB))[1] == "END Too many look-ups. Try again in 2 min."


def test_request_money_counts_every_number_as_a_look_up(client, people, config):
    config(NAME_LOOKUP_LIMIT=5)
    phone, _ = fresh(
        client, local(AMINA), REQUEST_MONEY, local(BOB), local(CHRIS), "#", "1", "50", "tea", "1"
    )
    assert phone.send(PIN).startswith("END Requests sent: 2.")
    # My requests shows their registered names: that is why each number is a look-up.
    _, group = fresh(client, local(AMINA), MY_REQUESTS, "1")
    assert "Bob Kamau: not paid" in group and "Chris Wanjiru: not paid" in group
    assert fresh(client, local(AMINA), SEND, local(BOB))[1] == "CON Send to Bob Kamau\nEnter amount"  # 3
    phone, body = fresh(client, local(AMINA), REQUEST_MONEY, local(BOB))  # 4
    assert body.startswith("CON Request money\nEnter number 2")
    assert phone.send(local(CHRIS)).startswith("CON Request money\nEnter number 3")  # 5
    assert phone.send(local(stranger(0))).startswith("END Too many look-ups. Try again in")  # 6
    assert len(payment_requests()) == 2


def test_the_look_up_throttle_applies_after_the_pin_too(client, people, config):
    """Numbers typed while allowed, then look-ups used up in another session: the request is
    refused after the PIN, nothing recorded."""
    config(NAME_LOOKUP_LIMIT=2)
    phone, _ = fresh(
        client, local(AMINA), REQUEST_MONEY, local(BOB), local(CHRIS), "#", "1", "50", "tea", "1"
    )
    other = Phone(client, local(AMINA))
    assert other.walk(SEND, local(BOB)).startswith("CON Send to Bob Kamau")  # 1 + 2 > 2
    assert phone.send(PIN).startswith("END Too many look-ups.")
    assert payment_requests() == []
    assert sms_to(BOB) == []


def test_a_request_money_hop_that_fails_to_record_gives_its_look_ups_back(
    client, people, config, monkeypatch
):
    """The PIN hop counts a look-up per number, then the database refuses the record (here an
    id already taken; in life a failover or a timeout): "Sorry, something went wrong", nothing
    recorded, no name shown. The look-ups stayed spent: with 2 of 3 gone, Amina's next send
    said "Too many look-ups" for the hour. A hop that does not commit gives them back."""
    from ussd_app.clock import utcnow
    from ussd_app.ussd.flows import request_money

    config(NAME_LOOKUP_LIMIT=3)
    monkeypatch.setattr(request_money, "mint_request_id", lambda: "g-taken")
    from ussd_app.users import find_by_phone

    amina = find_by_phone(db.session, AMINA)
    now = utcnow()
    db.session.add(
        pr.PaymentRequest(
            id="g-taken.1",
            group_id="another group",
            kind=pr.Kind.PERSONAL.value,
            requester_account_id=amina.account_id,
            payer_phone=CHRIS,
            amount=1_00,
            reason="old",
            state=pr.State.OPEN.value,
            pay_attempts=0,
            reminders=0,
            payer_named=True,
            created_at=now,
            expires_at=now,
        )
    )
    db.session.commit()
    phone, _ = fresh(
        client, local(AMINA), REQUEST_MONEY, local(BOB), local(CHRIS), "#", "1", "50", "tea", "1"
    )
    assert phone.send(PIN).startswith("END Sorry, something went wrong.")
    assert [r.id for r in payment_requests()] == ["g-taken.1"]
    assert fraud.lookup_delay_or_block(AMINA, 3, 3) == 0  # all three left
    # A recorded request keeps its look-ups.
    monkeypatch.undo()
    phone, _ = fresh(
        client, local(AMINA), REQUEST_MONEY, local(BOB), local(CHRIS), "#", "1", "50", "tea", "1"
    )
    assert phone.send(PIN).startswith("END Requests sent: 2.")
    assert fraud.lookup_delay_or_block(AMINA, 1, 3) == 0
    assert fraud.lookup_delay_or_block(AMINA, 2, 3) > 0


def test_cancelling_requests_in_my_requests_counts_as_cancels(client, people, config):
    config(NAME_CANCEL_LIMIT=1, NAME_DELAY_SECONDS=300)
    phone, _ = fresh(
        client, local(AMINA), REQUEST_MONEY, local(BOB), local(CHRIS), "#", "1", "50", "tea", "1"
    )
    phone.send(PIN)
    phone, body = fresh(client, local(AMINA), MY_REQUESTS, "1", "2")
    assert phone.send("1") == "END Requests cancelled: 2."
    assert fresh(client, local(AMINA), SEND, local(BOB))[1] == "END Too many look-ups. Try again in 5 min."


def test_an_agent_looking_up_customers_is_counted_and_backing_out_is_a_cancel(client, people, config):
    config(NAME_LOOKUP_LIMIT_BUSINESS=3, NAME_CANCEL_LIMIT=5)
    agent = local(AGENT)
    assert fresh(client, agent, "1", local(BOB))[1] == "CON Deposit to Bob Kamau\nEnter amount"
    assert fresh(client, agent, "9", local(CHRIS))[1].startswith("CON Withdraw for Chris Wanjiru")
    assert fresh(client, agent, "1", "0799999999")[1].startswith("CON +254799999999 is not registered")
    assert fresh(client, agent, "1", local(BOB))[1] == "END Too many look-ups. Try again in 60 min."
    # Customers keep their own, smaller, allowance; the agent's does not touch theirs.
    assert fresh(client, local(AMINA), SEND, local(BOB))[1].startswith("CON Send to Bob Kamau")


def test_an_agent_who_deposits_is_not_slowed_down_by_cancels(client, people, config):
    config(NAME_CANCEL_LIMIT=0, NAME_DELAY_SECONDS=600)
    for _ in range(2):
        phone, body = fresh(client, local(AGENT), "1", local(BOB), "100", "1")
        assert phone.send(AGENT_PIN).startswith("END Depositing KES 100.00 to Bob Kamau")
    phone, _ = fresh(client, local(AGENT), "1", local(BOB), "00")  # backed out: one cancel
    assert fresh(client, local(AGENT), "1", local(CHRIS))[1] == "END Too many look-ups. Try again in 10 min."


def test_an_agent_registering_numbers_is_counted_as_looking_them_up(client, people, config):
    """ "Already registered" or the next screen tells the agent whether a number is on Tuma."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=2)
    agent = local(AGENT)
    assert fresh(client, agent, "5", local(BOB))[1].startswith("CON +254712000222 is already registered.")
    assert fresh(client, agent, "5", "0799999999")[1] == "CON Enter their first name"
    assert fresh(client, agent, "5", "0799999998")[1] == "END Too many look-ups. Try again in 60 min."
    assert fresh(client, agent, "1", local(BOB))[1] == "END Too many look-ups. Try again in 60 min."


# -- item 8: invitations to numbers not on Tuma -------------------------------------------------


def send_to_stranger(client, number: str, n: int) -> str:
    phone, body = fresh(client, number, SEND, local(stranger(n)))
    if body.startswith("END"):
        return body
    assert body.startswith("CON +2547220000"), body
    phone.send("1")  # send anyway
    phone.send("10")
    phone.send("1")
    return phone.send(PIN)


def test_invitations_are_capped_per_sender_per_day_across_spellings_and_flows(client, people, config):
    config(INVITES_PER_DAY=3)
    assert send_to_stranger(client, local(AMINA), 0).startswith("END Sending")
    assert send_to_stranger(client, "254712000111", 1).startswith("END Sending")  # other spelling
    phone, _ = fresh(client, "+254 712 000 111", REQUEST_MONEY, local(stranger(2)), local(stranger(3)), "#")
    phone.send("1"), phone.send("50"), phone.send("tea"), phone.send("1")
    refused = "END You can invite 3 numbers not on Tuma a day. Nothing was sent. Try tomorrow."
    assert phone.send(PIN) == refused  # 2 more would be 4
    assert payment_requests() == []
    assert sms_to(stranger(2)) == [] and sms_to(stranger(3)) == []
    # One more is allowed, with a registered payer alongside.
    phone, _ = fresh(client, local(AMINA), REQUEST_MONEY, local(BOB), local(stranger(2)), "#")
    phone.send("1"), phone.send("50"), phone.send("tea"), phone.send("1")
    assert phone.send(PIN).startswith("END Requests sent: 2.")
    # Now none are left: sending to a number not on Tuma says so before the amount.
    assert send_to_stranger(client, local(AMINA), 4) == refused
    assert transfer_requests("send_unregistered") == 2
    # Registered recipients are not affected, nor other senders.
    phone, _ = fresh(client, local(AMINA), SEND, local(BOB), "10", "1")
    assert phone.send(PIN).startswith("END Sending")
    assert fresh(client, local(CHRIS), SEND, local(stranger(5)))[1].startswith("CON +254722000005 is not on")


def test_a_merchant_request_to_a_number_not_on_tuma_takes_an_invitation(client, people, config):
    from ussd_app.users import create_user

    create_user(
        db.session, phone="+254700000002", name="Mama Mboga", role="merchant", pin="2222", till="123456"
    )
    db.session.commit()
    config(INVITES_PER_DAY=1)
    shop = Phone(client, "0700000002")
    shop.walk("5", local(stranger(0)), "250", "Goods", "1")
    assert shop.send("2222").startswith("END Request sent")
    shop = Phone(client, "0700000002")
    shop.walk("5", local(stranger(1)), "250", "Goods", "1")
    assert shop.send("2222").startswith("END You can invite 1 numbers not on Tuma a day.")
    assert [r.payer_phone for r in payment_requests()] == [stranger(0)]


def test_a_reminder_to_a_number_not_on_tuma_takes_an_invitation(client, people, config):
    config(INVITES_PER_DAY=2)
    phone, _ = fresh(client, local(AMINA), REQUEST_MONEY, local(BOB), local(stranger(0)), "#")
    phone.send("1"), phone.send("50"), phone.send("tea"), phone.send("1")
    assert phone.send(PIN).startswith("END Requests sent: 2.")  # one invitation
    phone, _ = fresh(client, local(AMINA), MY_REQUESTS, "1")
    assert phone.send("1") == "END Reminders sent: 2. Each person gets at most one a day."  # two
    assert len(sms_to(stranger(0))) == 2
    assert send_to_stranger(client, local(AMINA), 1).startswith("END You can invite 2 numbers")


def test_two_sessions_racing_for_the_last_invitation_get_one(backend_app):
    """Both sessions passed the screen that said one was left; after the PIN, INCRBY decides."""
    app = backend_app
    client = app.test_client()
    with app.app_context():
        app.config["INVITES_PER_DAY"] = 1
        amina = person(AMINA, "Amina Hassan", pin=PIN)
        agent = person(AGENT, "Ali Agent", pin=AGENT_PIN, role="agent")
        issue_float(db.session, agent, FUNDS, "BANK-1")
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.DEPOSIT.value,
            debit_account_id=agent.account_id,
            credit_account_id=amina.account_id,
            amount=FUNDS // 2,
        )
        db.session.commit()
        jobs.execute_transfers()
        phones = []
        for n in range(2):
            phone = Phone(client, local(AMINA))
            phone.walk(SEND, local(stranger(n)), "1", "10")
            assert phone.send("1").startswith("CON Enter your PIN")
            phones.append(phone)
        answers = at_once(app, *[lambda p=p: p.send(PIN) for p in phones])
        assert sorted(a.split(".")[0] for a in answers) == [
            "END Sending KES 10",
            "END You can invite 1 numbers not on Tuma a day",
        ], answers
        assert transfer_requests("send_unregistered") == 1
