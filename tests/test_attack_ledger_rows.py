"""An outsider's attacks on the worker's plain rows (``payments/execute.py``'s ``QueuedRequest``,
``users.HolderRow`` through ``sms.receipts.People``): values read before the batch's account
locks and used after them."""

import threading

import pytest
from sqlalchemy import select, text

from tests.conftest import PG_URL
from tests.helpers import wait_for
from tests.sms_helpers import agent_with_float, execute, outbox, person, send
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
