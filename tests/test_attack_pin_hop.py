"""An outsider's attacks on the PIN hop that reads the caller's row locked, joined to its wallet
(commits a484604, 11af40b): concurrent guesses on the send flow, a lock that ran out, an
operator's lock, the number moved between hops, the balance spent between the confirm screen
and the PIN (by the worker, by a second session, or while the hop waited for the row lock), and
the once-per-token take-back of a name look-up's cancel."""

import threading
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select, text

from tests.escrow_helpers import at_once
from tests.helpers import fund, wait_for, waiting_on_a_lock
from tests.ussd_helpers import Phone, available, person
from ussd_app import fraud
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import OPERATOR_LOCK_UNTIL, User, find_by_phone
from worker.jobs import execute_transfers

JUMA, WANJIRU = "+254712000111", "+254712000222"
PIN = "8642"
LOCKED = "END Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."
SHORT = "END Not enough money to send"
SENDING = "END Sending KES 4,000.00"


@pytest.fixture
def juma(customer, second_customer, config):
    config(NAME_CANCEL_LIMIT=100)  # many sessions left at the PIN screen are no look-up abuse here
    fund(customer.account_id, 500_000)  # KES 5,000
    db.session.commit()
    return customer


def at_send_pin(app, amount="4000", number="0712000111") -> Phone:
    phone = Phone(app.test_client(), number)
    assert "Enter your PIN" in phone.walk("1", "0712000222", amount, "1")
    return phone


def row(phone=JUMA) -> User:
    user = find_by_phone(db.session, phone)
    db.session.refresh(user)
    db.session.commit()
    return user


def posted_total() -> int:
    """What the accepted transfers took from the payer: amount plus fee."""
    rows = db.session.execute(
        select(TransferRequest.amount, TransferRequest.fee).where(TransferRequest.status == "accepted")
    ).all()
    db.session.commit()
    return sum(a + f for a, f in rows)


def statuses() -> list[str]:
    found = sorted(db.session.execute(select(TransferRequest.status)).scalars())
    db.session.commit()
    return found


def all_at_once(app, phones, inputs) -> list[str]:
    """Each phone sends its input in its own thread, all released together; their answers."""
    return at_once(app, *(partial(phone.send, text) for phone, text in zip(phones, inputs, strict=True)))


def test_guesses_sent_at_once_on_the_send_flow_get_exactly_the_allowed_tries(app, juma):
    n = 6
    phones = [at_send_pin(app) for _ in range(n)]
    answers = all_at_once(app, phones, ["1111", "2222", "3333", "4444", "5555", "6666"])
    tries = app.config["PIN_MAX_ATTEMPTS"]
    assert len([a for a in answers if a.startswith("CON Wrong PIN")]) == tries - 1, answers
    assert answers.count(LOCKED) == n - (tries - 1), answers
    user = row()
    assert (user.pin_failures, user.locked_until is not None) == (tries, True)
    assert statuses() == []


def test_guesses_at_once_under_other_spellings_of_the_number_share_the_same_tries(app, juma):
    spellings = ["0712000111", "+254712000111", "254712000111"] * 2
    phones = [at_send_pin(app, number=number) for number in spellings]
    answers = all_at_once(app, phones, ["1111", "2222", "3333", "4444", "5555", "6666"])
    tries = app.config["PIN_MAX_ATTEMPTS"]
    assert len([a for a in answers if a.startswith("CON Wrong PIN")]) == tries - 1, answers
    assert answers.count(LOCKED) == len(spellings) - (tries - 1), answers
    user = row()
    assert (user.pin_failures, user.locked_until is not None) == (tries, True)
    assert statuses() == []


def test_the_right_pin_at_once_from_many_sessions_after_wrong_ones_resets_the_count(app, juma):
    first = at_send_pin(app, "100")
    assert first.send("1111").startswith("CON Wrong PIN. 2 tries left.")
    assert first.send("2222").startswith("CON Wrong PIN. 1 try left.")
    phones = [at_send_pin(app, "100") for _ in range(4)]
    answers = all_at_once(app, phones, [PIN] * 4)
    assert all(a.startswith("END Sending KES 100.00") for a in answers), answers
    assert row().pin_failures == 0
    # The count really went back to zero: three fresh tries, not one.
    assert at_send_pin(app, "100").send("1111").startswith("CON Wrong PIN. 2 tries left.")


def test_a_lock_that_ran_out_gives_the_right_pin_and_clears_the_row(app, juma):
    phone = at_send_pin(app)
    user = row()
    user.pin_failures, user.locked_until = 3, datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    db.session.commit()
    assert phone.send(PIN).startswith(SENDING)
    user = row()
    assert (user.pin_failures, user.locked_until) == (0, None)
    assert at_send_pin(app).send("1111").startswith("CON Wrong PIN. 2 tries left.")


def test_an_operator_lock_set_while_at_the_pin_screen_refuses_the_right_pin(app, juma):
    phone = at_send_pin(app)
    user = row()
    user.locked_until = OPERATOR_LOCK_UNTIL
    db.session.commit()
    assert phone.send(PIN) == "END Your Tuma account is locked by Tuma. Please call customer care."
    assert statuses() == []
    assert row().locked_until == OPERATOR_LOCK_UNTIL  # not lifted, not counted over


@pytest.mark.parametrize("how", ["orm", "table"])
def test_the_number_moved_between_hops_checks_and_counts_the_new_holders_pin(app, juma, how):
    """Sessions at the PIN screen of the old holder; the number then moves to a new person. Their
    guesses all at once count on the new holder's row (locked: exactly the allowed tries) and
    never touch the old holder's row or money. ``table``: moved by statements on the users table,
    which leave the sessions' cached facts naming the old row (views._load_user's fallback)."""
    phones = [at_send_pin(app) for _ in range(5)]
    if how == "orm":
        old = row()
        old.phone = "+254712000999"
        db.session.commit()
        person(JUMA, "New Holder", pin="1357")
    else:
        newcomer = person("+254712000888", "New Holder", pin="1357").id
        move = text("UPDATE users SET phone = :phone WHERE id = :id")
        db.session.execute(move, {"phone": "+254712000999", "id": juma.id})
        db.session.execute(move, {"phone": JUMA, "id": newcomer})
        db.session.commit()
    answers = all_at_once(app, phones, [PIN, "0000", "1111", "2222", "3333"])
    assert not any(a.startswith("END Sending") for a in answers), answers
    new = row(JUMA)
    assert (new.pin_failures, new.locked_until is not None) == (app.config["PIN_MAX_ATTEMPTS"], True)
    moved = row("+254712000999")
    assert (moved.pin_failures, moved.locked_until) == (0, None)
    assert statuses() == []
    assert available(moved.account_id) == 500_000


def test_two_sessions_spending_the_whole_balance_at_once_post_only_once(app, juma):
    phones = [at_send_pin(app) for _ in range(2)]
    answers = all_at_once(app, phones, [PIN, PIN])
    assert all(a.startswith((SENDING, SHORT)) for a in answers), answers
    execute_transfers()
    assert statuses().count("accepted") == 1
    assert available(juma.account_id) == 500_000 - posted_total() >= 0


def test_money_posted_by_the_worker_after_the_confirm_screen_makes_the_pin_hop_say_short(app, juma):
    late = at_send_pin(app)
    assert at_send_pin(app).send(PIN).startswith(SENDING)
    execute_transfers()
    assert late.send(PIN).startswith(SHORT)
    assert statuses() == ["accepted"]


def _pin_hop_while_the_row_is_locked_and_the_worker_posts(app, juma) -> str:
    """A second session of Juma's holds his row (as a PIN hop of his does, through argon2) while
    this session's PIN hop waits for it; meanwhile the worker posts Juma's other transfer."""
    waiting = at_send_pin(app)
    assert at_send_pin(app).send(PIN).startswith(SENDING)  # queued, not posted yet
    db.session.commit()
    answer: list[str] = []

    def hop():
        with app.app_context():
            try:
                answer.append(waiting.send(PIN))
            finally:
                db.session.remove()

    with db.engine.connect() as holder:
        holder.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": juma.id})
        thread = threading.Thread(target=hop)
        thread.start()
        wait_for(lambda: waiting_on_a_lock() >= 1, message="the hop's statement waiting for the row lock")
        with app.app_context():
            execute_transfers()  # posts the first KES 4,000 (plus fee) and commits
        holder.rollback()
    thread.join(timeout=60)
    return answer[0]


def test_nothing_posts_more_than_the_balance_when_the_hop_waited_for_the_row(app, juma):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    _pin_hop_while_the_row_is_locked_and_the_worker_posts(app, juma)
    execute_transfers()
    assert statuses().count("accepted") == 1
    assert available(juma.account_id) == 500_000 - posted_total() >= 0


def test_a_pin_hop_that_waited_for_the_row_sees_the_money_posted_meanwhile(app, juma):
    """The balance checked after the PIN is the one after the wait for the caller's row (a
    second session of the number in its own PIN check) while the worker posted: "short", not
    "Sending" then refused (the wallet was read with the locked row once, 11af40b)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    assert _pin_hop_while_the_row_is_locked_and_the_worker_posts(app, juma).startswith(SHORT)


def test_a_replayed_name_used_note_takes_back_one_cancel_and_leaves_no_key_without_expiry(app, redis, config):
    config(NAME_WINDOW_SECONDS=600)
    fraud.note_cancel_at_name(JUMA, 2)
    cancels = "tuma:fraud:cancels:" + JUMA
    for _ in range(3):  # the original and two replays
        fraud.note_name_used("0712000111", "req-1")
    assert int(redis.get(cancels)) == 1
    fraud.note_name_used(JUMA, "req-2")
    fraud.note_name_used(JUMA, "req-3")  # nothing left to take back: never below zero
    assert int(redis.get(cancels)) == 0
    redis.delete(cancels)  # the window ran out
    fraud.note_name_used(JUMA, "req-4")
    assert redis.get(cancels) is None  # no counter started without expiry
    keys = redis.keys("tuma:fraud:*")
    assert keys and [k for k in keys if redis.ttl(k) < 0] == []
    assert 0 < redis.ttl(f"tuma:fraud:used:{JUMA}:req-1") <= 600


def test_two_sessions_buying_airtime_with_the_whole_balance_hold_it_once(app, customer, agent, config):
    """Airtime holds the money at the worker: two sessions of one number, each buying airtime
    for most of the balance with the PIN at once, hold it at most once; the wallet never goes
    below zero and the ledger's books balance."""
    from tests.escrow_helpers import FUNDS, cash_in, ledger_ok

    config(NAME_CANCEL_LIMIT=100)
    account_id = cash_in(customer, agent)
    db.session.commit()
    phones = []
    for _ in range(2):
        phone = Phone(app.test_client(), "0712000111")
        assert phone.walk("7", "1", "8000", "1").startswith("CON Enter your PIN to buy KES 8,000.00")
        phones.append(phone)
    answers = all_at_once(app, phones, [PIN, PIN])
    assert all(a.startswith(("END Buying KES 8,000.00", "END Not enough money")) for a in answers), answers
    execute_transfers()
    held = db.session.execute(
        select(TransferRequest.status).where(TransferRequest.kind == "airtime")
    ).scalars()
    assert sorted(held) in (["accepted", "rejected"], ["accepted"])
    db.session.commit()
    assert available(account_id) == FUNDS - 8_000_00
    ledger_ok()


def test_the_one_statement_record_writes_once_and_refuses_another_order_under_the_same_id(
    app, juma, second_customer
):
    """``record_request_row`` (the PIN hop's INSERT ... ON CONFLICT (id) DO NOTHING RETURNING):
    a replay of the same order writes nothing and says so; another order under the same id is
    refused; the row is the one ``record_request`` writes."""
    from ussd_app.payments.models import transaction_code
    from ussd_app.payments.submit import ConflictingRequest, mint_request_id, record_request_row

    request_id = mint_request_id()
    order = dict(
        request_id=request_id,
        kind="send",
        debit_account_id=juma.account_id,
        credit_account_id=second_customer.account_id,
        amount=100_00,
        fee=5_00,
    )
    assert record_request_row(db.session, **order) is True
    assert record_request_row(db.session, **order) is False
    with pytest.raises(ConflictingRequest):
        record_request_row(db.session, **{**order, "amount": 200_00})
    db.session.commit()
    assert record_request_row(db.session, **order) is False  # committed: still the one
    db.session.commit()
    [request] = db.session.execute(select(TransferRequest)).scalars()
    assert (request.id, request.code, request.status, request.amount, request.fee, request.attempts) == (
        request_id,
        transaction_code(request_id),
        "queued",
        100_00,
        5_00,
        0,
    )
    assert request.created_at is not None and request.hold_state is None and request.payee_named
    db.session.commit()


def test_a_record_rolled_back_remembers_no_trace_and_leaves_the_name_look_ups_cancel_counted(
    app, juma, second_customer, redis
):
    """What the PIN hop sends to Redis about its request (the trace id, the name look-up's cancel
    taken back) goes only after its commit: a rollback sends none of it."""
    from ussd_app.logging_setup import trace_id_var
    from ussd_app.payments.submit import mint_request_id, record_request_row

    fraud.note_cancel_at_name(JUMA, 1)
    cancels = "tuma:fraud:cancels:" + JUMA
    token = trace_id_var.set("trace-of-the-hop")
    try:
        ids = []
        for commit in (False, True):
            request_id = mint_request_id()
            ids.append(request_id)
            record_request_row(
                db.session,
                request_id=request_id,
                kind="send",
                debit_account_id=juma.account_id,
                credit_account_id=second_customer.account_id,
                amount=100_00,
            )
            fraud.note_name_used(JUMA, request_id, db.session)
            assert int(redis.get(cancels)) == 1 and not redis.exists(f"tuma:trace:{request_id}")
            if commit:
                db.session.commit()
            else:
                db.session.rollback()
    finally:
        trace_id_var.reset(token)
    assert not redis.exists(f"tuma:trace:{ids[0]}")
    assert redis.get(f"tuma:trace:{ids[1]}") == b"trace-of-the-hop"
    assert int(redis.get(cancels)) == 0
    assert statuses() == ["queued"]
