"""An outsider's attacks on the worker's plain rows (``payments/execute.py``'s ``QueuedRequest``,
``users.HolderRow`` through ``sms.receipts.People``): values read before the batch's account
locks and used after them."""

import json
import threading
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update

from tests.conftest import PG_URL
from tests.helpers import wait_for
from tests.sms_helpers import Person, agent_with_float, execute, outbox, person, send
from tests.test_admin_review import (  # noqa: F401 (fixtures)
    PAYEE,
    PAYER,
    held,
    ledger_ok,
    legs_of,
    received,
    signed_in,
    the,
)
from tests.test_allowances import cast  # noqa: F401 (a fixture)
from tests.test_attack_review import lock_on_the_page, post
from ussd_app.extensions import db
from ussd_app.ledger import Account
from ussd_app.users import User, find_by_phone


def _while_the_batch_waits_for(app, account_id, meanwhile) -> dict:
    """Run the worker's batch in a thread while another transaction holds ``account_id`` (a
    busy wallet: another worker's batch); once the batch waits for it (it has taken its
    requests and read their holders), ``meanwhile()``, then let it go. The worker's outcome."""
    db.session.commit()
    busy = db.engine.connect()
    held_tx = busy.begin()
    busy.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    outcome = {}

    def worker():
        with app.app_context():  # the test's configuration, a session of its own
            try:
                outcome["done"] = execute()
            except BaseException as exc:  # noqa: BLE001 (reported by the caller's assertion)
                outcome["error"] = exc

    thread = threading.Thread(target=worker)
    try:
        thread.start()
        wait_for(
            lambda: db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one(),
            message="the worker's batch to wait for the busy account",
        )
        db.session.rollback()
        meanwhile()
    finally:
        held_tx.rollback()
        busy.close()
        thread.join(timeout=60)
    return outcome


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_payer_locked_while_the_batch_waits_for_his_account_is_not_paid_out_of(app, signed_in, held):  # noqa: F811
    """Cleared; the worker's batch takes it and reads the holders, then waits for Amina's account
    (another batch holds it: a busy wallet). Meanwhile an operator locks Amina (a stolen phone).
    The batch must not pay out of the locked wallet: the holders it read before the wait are
    stale, the lock was committed before the batch checked anything under its locks."""
    code = the(held).code
    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "payer called"})
    assert the(held).status == "queued"
    account_id = find_by_phone(db.session, PAYER).account_id
    before_payer, before_payee = received(PAYER), received(PAYEE)
    payer_texts = len(outbox(phone=PAYER))
    outcome = _while_the_batch_waits_for(app, account_id, lambda: lock_on_the_page(signed_in, PAYER))
    assert outcome.get("done") == 1, outcome
    assert (the(held).status, the(held).result) == ("rejected", "review_refused")
    assert (received(PAYER), received(PAYEE), legs_of(held)) == (before_payer, before_payee, 0)
    told = outbox(phone=PAYER)[payer_texts:]
    assert len(told) == 1 and "Stopped by a security check" in told[0].body
    ledger_ok()


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_merchant_locked_while_the_batch_waits_for_the_till_is_not_paid(app, signed_in, config):  # noqa: F811
    """A hot till: the batch paying it waits for its account behind another batch. An operator
    locks the merchant (a fraud report) meanwhile and sees "Locked"; the payment recorded
    before must still be refused (payee_locked), not posted to the locked merchant after the
    lock was committed."""
    config(VELOCITY_MAX_COUNT=0, VELOCITY_MAX_VALUE_MAJOR=0)
    agent = agent_with_float()
    buyer = person(PAYER, "Amina Wanjiku")
    shop = person(PAYEE, "Duka Bora", role="merchant", till="123456")
    send(agent, buyer, 5_000_00, kind="deposit")
    execute()
    paid = send(buyer, shop, 1_000_00, kind="buy_goods")
    before_buyer, before_shop = received(PAYER), received(PAYEE)

    outcome = _while_the_batch_waits_for(app, shop.account_id, lambda: lock_on_the_page(signed_in, PAYEE))
    assert outcome.get("done") == 1, outcome
    db.session.expire_all()
    assert db.session.execute(select(User.locked_until).where(User.phone == PAYEE)).scalar_one() is not None
    assert (the(paid).status, the(paid).result) == ("rejected", "payee_locked")
    assert (received(PAYER), received(PAYEE), legs_of(paid)) == (before_buyer, before_shop, 0)
    ledger_ok()


def test_a_batch_never_reads_a_pin_hash(app):
    """A worker's batch (receipts, limits, events) reads holders but never their PIN's hash:
    no statement of the batch names the column (the USSD side still checks PINs with it)."""
    from sqlalchemy import event

    agent = agent_with_float()
    amina = person(PAYER, "Amina Wanjiku")
    shop = person(PAYEE, "Duka Bora", role="merchant", till="123456")
    send(agent, amina, 5_000_00, kind="deposit")
    send(amina, shop, 1_000_00, kind="buy_goods")
    send(amina, shop, 999_999_999_00, kind="buy_goods")  # refused: the payer's failure SMS
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert execute() == 3
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert any("users" in s for s in statements)
    assert not [s for s in statements if "pin_hash" in s]
    assert len(outbox(phone=PAYER)) == 3 and len(outbox(phone=PAYEE)) == 1


# -- Plain rows against ORM objects: the same batch, every outcome ----------------------------

HOLDERS = ("amina", "baraka", "shop", "agent", "cause")
KINDS = {  # kind -> (payers, payees) it is recorded between
    "send": (("amina", "baraka"), ("amina", "baraka", "agent")),
    "deposit": (("agent",), ("amina", "baraka")),
    "withdrawal": (("amina", "baraka"), ("agent",)),
    "buy_goods": (("amina", "baraka"), ("shop",)),
    "tip": (("amina", "baraka"), ("cause",)),
}


@st.composite
def batches(draw):
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(sorted(KINDS)))
        payers, payees = KINDS[kind]
        amount = draw(st.sampled_from([1, 99, 5_000, 1_250_00, 20_000_00, 70_000_00, 400_000_00]))
        cleared = draw(st.booleans()) and draw(st.booleans())
        requests.append((kind, draw(st.sampled_from(payers)), draw(st.sampled_from(payees)), amount, cleared))
    locked = draw(st.sets(st.sampled_from(HOLDERS), max_size=2))
    return requests, locked


def test_a_batch_of_plain_rows_does_what_the_same_batch_of_orm_objects_did(app, runner, config, monkeypatch):
    """Random batches (each kind of payer and payee, both languages, payer = payee, the same
    holder many times, refusals by limits, funds and a locked payee, cleared transfers of
    locked payers, transfers held for review) executed from ``QueuedRequest`` rows and
    ``HolderRow`` holders and, rolled back in between, as main did (``TransferRequest`` and
    ``User`` objects, each receipt formatting its own facts): the same statuses, results,
    amounts, postings, balances, SMS (byte for byte) and events."""
    from tests.test_tips import create_cause
    from ussd_app import messages, users
    from ussd_app.events.models import Event
    from ussd_app.ledger import Transfer
    from ussd_app.messages import receipts as texts
    from ussd_app.payments import execute as ex
    from ussd_app.payments.models import TransferRequest
    from ussd_app.payments.submit import record_request
    from ussd_app.sms import receipts as sms_receipts
    from ussd_app.sms.outbox import OutboxMessage
    from ussd_app.tariffs import quote
    from ussd_app.users import OPERATOR_LOCK_UNTIL

    monkeypatch.setattr(ex, "utcnow", lambda: datetime(2026, 3, 31, 21, 5, 7))
    config(VELOCITY_MAX_COUNT=3)  # the fourth payment of a payer in the hour is held for review
    agent = agent_with_float(50_000_000_00)
    people = {
        "agent": agent,
        "amina": person("+254712000601", "Amina Hassan"),
        "baraka": person("+254712000602", "Baraka Otieno", language="sw"),
        "shop": person("+254712000604", "Duka Bora", role="merchant", till="123456", language="sw"),
    }
    cause = create_cause(runner, language="sw")
    people["cause"] = Person(cause.phone, cause.account_id)
    send(agent, people["amina"], 60_000_00, kind="deposit")
    send(agent, people["baraka"], 3_000_00, kind="deposit")
    execute()
    session = db.session

    def run(requests, locked, take) -> tuple:
        for who in locked:
            session.execute(
                update(User).where(User.phone == people[who].phone).values(locked_until=OPERATOR_LOCK_UNTIL)
            )
        ids = []
        for i, (kind, payer, payee, amount, cleared) in enumerate(requests):
            rid = f"atkledger{i:04d}".ljust(26, "0")
            record_request(
                session,
                request_id=rid,
                kind=kind,
                debit_account_id=people[payer].account_id,
                credit_account_id=people[payee].account_id,
                amount=amount,
                fee=quote(kind, amount),
            )
            session.flush()
            if cleared:
                session.execute(
                    update(TransferRequest).where(TransferRequest.id == rid).values(result="review_cleared")
                )
            ids.append(rid)
        first = session.execute(select(func.max(OutboxMessage.id))).scalar() or 0
        session.expire_all()
        ex.execute_requests(session, take())
        session.flush()
        t = TransferRequest
        outcome = (
            session.execute(
                select(t.id, t.status, t.result, t.amount, t.attempts, t.executed_at, t.hold_state)
                .where(t.id.in_(ids))
                .order_by(t.id)
            ).all(),
            session.execute(
                select(OutboxMessage.phone, OutboxMessage.body, OutboxMessage.transfer_request_id)
                .where(OutboxMessage.id > first)
                .order_by(OutboxMessage.id)
            ).all(),
            [
                (e.type, e.account_id, e.source_id, json.loads(e.payload)["data"])
                for e in session.execute(
                    select(Event).where(Event.source_id.in_(ids)).order_by(Event.id)
                ).scalars()
            ],
            session.execute(
                select(
                    Account.id, Account.debits_posted, Account.credits_posted, Account.debits_pending
                ).order_by(Account.id)
            ).all(),
            session.execute(
                select(Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount)
                .where(Transfer.user_data.in_(ids))
                .order_by(Transfer.id)
            ).all(),
        )
        session.rollback()
        return outcome

    def posted_before(request, party, reader, other, *, known=None, **fields):
        """``messages.receipts.posted`` as main had it (``known`` is this branch's)."""
        english = texts.template(request.kind, party)
        if english is None:
            return None
        figures = {name: messages.money(value) for name, value in fields.items()}
        return messages.tell(reader, english, **texts.facts(request), **texts.counterparty(other), **figures)

    def orm_objects():
        t = TransferRequest
        return list(
            session.execute(
                select(t).where(t.status == "queued").order_by(t.created_at, t.id).limit(500)
            ).scalars()
        )

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(batches())
    def same(batch):
        requests, locked = batch
        rows = run(requests, locked, lambda: ex._take_queued(session, 500))
        with monkeypatch.context() as before:  # as main had it: User objects, each receipt's facts
            before.setattr(sms_receipts, "holder_rows", users.holders)
            before.setattr(texts, "posted", posted_before)
            objects = run(requests, locked, orm_objects)
        assert rows[0] and len(rows[0]) == len(requests)
        for name, a, b in zip(
            ("requests", "sms", "events", "balances", "transfers"), rows, objects, strict=True
        ):
            assert a == b, name

    same()


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_tier_lowered_while_the_batch_waits_applies_to_it(app, signed_in, config):  # noqa: F811
    """Amina is on the full tier; her send of KES 5,000 (over the basic tier's KES 1,000 a
    transfer) waits behind another batch on her wallet while an operator lowers her to basic
    (the ID she showed was forged). The batch checks the limits after that commit."""
    config(
        VELOCITY_MAX_COUNT=0,
        VELOCITY_MAX_VALUE_MAJOR=0,
        LIMITS_BASIC_MAJOR="1000,5000,100000",
        LIMITS_FULL_MAJOR="100000,100000,100000",
    )
    agent = agent_with_float()
    amina, baraka = person(PAYER, "Amina Wanjiku"), person(PAYEE, "Baraka Otieno")
    db.session.execute(update(User).where(User.phone == PAYER).values(tier="full"))
    db.session.commit()
    send(agent, amina, 20_000_00, kind="deposit")
    execute()
    paid = send(amina, baraka, 5_000_00)
    user_id = find_by_phone(db.session, PAYER).id

    def lower():
        post(
            signed_in,
            f"/admin/accounts/{user_id}/tier",
            {"tier": "basic", "id_document": "forged ID reported by the agent"},
        )
        db.session.expire_all()
        assert find_by_phone(db.session, PAYER).tier == "basic"

    outcome = _while_the_batch_waits_for(app, amina.account_id, lower)
    assert outcome.get("done") == 1, outcome
    assert (the(paid).status, the(paid).result) == ("rejected", "limit_transaction_exceeded")


# -- Tiers changed around a batch: an outsider's attacks on the read under the locks ----------

TIERS = dict(
    VELOCITY_MAX_COUNT=0,
    VELOCITY_MAX_VALUE_MAJOR=0,
    LIMITS_BASIC_MAJOR="1000,5000,100000",
    LIMITS_FULL_MAJOR="100000,100000,100000",
)


def _set_tier(client, phone, tier):
    """An operator sets ``phone``'s tier on the back office's page (committed when it answers)."""
    user_id = find_by_phone(db.session, phone).id
    post(client, f"/admin/accounts/{user_id}/tier", {"tier": tier, "id_document": "checked at the desk"})
    db.session.expire_all()
    assert find_by_phone(db.session, phone).tier == tier


def _amina_and_baraka(tier):
    agent = agent_with_float()
    amina, baraka = person(PAYER, "Amina Wanjiku"), person(PAYEE, "Baraka Otieno")
    db.session.execute(update(User).where(User.phone == PAYER).values(tier=tier))
    db.session.commit()
    send(agent, amina, 20_000_00, kind="deposit")
    execute()
    return amina, baraka


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_tier_raised_while_the_batch_waits_applies_to_it(app, signed_in, config):  # noqa: F811
    """The other way: Amina on the basic tier, her KES 5,000 send waiting behind a busy wallet
    while an agent's ID check raises her to full. The batch checks the full tier's limits, and
    her receipt says what is left of the full tier's day, not the basic tier's."""
    from ussd_app import messages
    from ussd_app.limits import tier_limits

    config(**TIERS)
    amina, baraka = _amina_and_baraka("basic")
    paid = send(amina, baraka, 5_000_00)
    texts = len(outbox(phone=PAYER))
    outcome = _while_the_batch_waits_for(app, amina.account_id, lambda: _set_tier(signed_in, PAYER, "full"))
    assert outcome.get("done") == 1, outcome
    assert (the(paid).status, the(paid).result) == ("accepted", "ok")
    left = tier_limits("full").daily - 5_000_00 - the(paid).fee
    told = outbox(phone=PAYER)[texts:]
    assert len(told) == 1 and messages.money(left) in told[0].body, told[0].body
    ledger_ok()


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_tier_lowered_while_two_batches_wait_for_the_same_payer_applies_to_both(
    app,
    signed_in,  # noqa: F811
    config,
):
    """Amina (full tier) in two batches at once: the first waits for another wallet while it
    holds hers, the second waits for hers behind the first. An operator lowers her to basic
    meanwhile: both of her KES 5,000 sends are refused, neither batch using the tier it saw
    before its wait."""
    config(**TIERS, TRANSFER_BATCH_SIZE=1)
    amina, baraka = _amina_and_baraka("full")
    busy = person("+254712000903", "Chausiku Busy")  # a wallet after Amina's in the lock order
    assert busy.account_id > amina.account_id
    first, second = send(amina, busy, 5_000_00), send(amina, baraka, 5_000_00)
    before = received(PAYER)
    db.session.commit()
    holder = db.engine.connect()
    held_tx = holder.begin()
    holder.execute(select(Account.id).where(Account.id == busy.account_id).with_for_update())
    outcomes = [{}, {}]

    def worker(outcome):
        with app.app_context():
            try:
                outcome["done"] = execute()
            except BaseException as exc:  # noqa: BLE001 (reported by the assertions)
                outcome["error"] = exc

    def waiting() -> int:
        count = db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()
        db.session.rollback()
        return count

    threads = [threading.Thread(target=worker, args=(outcome,)) for outcome in outcomes]
    try:
        threads[0].start()
        wait_for(lambda: waiting() >= 1, message="the first batch to wait for the busy wallet")
        threads[1].start()
        wait_for(lambda: waiting() >= 2, message="the second batch to wait for Amina's wallet")
        _set_tier(signed_in, PAYER, "basic")
    finally:
        held_tx.rollback()
        holder.close()
        for thread in threads:
            thread.join(timeout=60)
    assert [o.get("done") for o in outcomes] == [1, 1], outcomes
    for request_id in (first, second):
        assert (the(request_id).status, the(request_id).result) == ("rejected", "limit_transaction_exceeded")
    assert received(PAYER) == before
    ledger_ok()


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_a_tier_lowered_after_the_batch_checked_it_applies_from_the_next_batch(
    app,
    signed_in,  # noqa: F811
    config,
):
    """The residual, as documented: the batch has checked Amina's KES 5,000 send under the full
    tier and posted it, and waits for fee revenue (locked last, held by another batch) to
    commit. An operator lowering her to basic now is not held up by the batch (the page answers
    at once) and does not undo its check: that send is posted, checked before the change,
    as one a moment earlier would have been. Her next KES 5,000 send is refused."""
    from ussd_app.ledger import AccountKind, house_account

    config(**TIERS)
    amina, baraka = _amina_and_baraka("full")
    paid = send(amina, baraka, 5_000_00)
    assert the(paid).fee > 0  # its fee leg credits fee revenue, locked last
    fees = house_account(db.session, AccountKind.FEES).id
    outcome = _while_the_batch_waits_for(app, fees, lambda: _set_tier(signed_in, PAYER, "basic"))
    assert outcome.get("done") == 1, outcome
    assert (the(paid).status, the(paid).result) == ("accepted", "ok")
    later = send(amina, baraka, 5_000_00)
    assert execute() == 1
    assert (the(later).status, the(later).result) == ("rejected", "limit_transaction_exceeded")
    ledger_ok()
