"""A settlement refused (the merchant locked by Tuma, or its account frozen in the ledger) is
not lost: the hold is pending again, the charges are owed again (the tab restored), and the
maintenance job tries it again later as ``<hold>.r2``, ``.r3``, ... until one posts: exactly one
posting, the customer's money right. Operators see it in ``flask review list`` after a few
refusals. Also: a pause is told once, and two workers after two batches do not read the same
rows (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

import threading
from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import select, update

from tests.api_helpers import execute_all
from tests.escrow_helpers import FUNDS, at_once, ledger_ok, sms_to
from tests.test_allowances import (
    LIMIT,
    approved,
    asked,
    cast,  # noqa: F401 (a fixture)
    charge,
    count,
    events,
    period_over,
    state,
    the,
)
from tests.ussd_helpers import CUSTOMER, MERCHANT, available, person
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.ledger import Transfer
from ussd_app.payments import allowances as al
from ussd_app.payments.models import HoldState, TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import OPERATOR_LOCK_UNTIL, User
from worker import jobs


def refuse_payments_to(merchant, how: str = "operator_lock") -> None:
    """The operator locks the merchant (fraud): the worker refuses what would pay it
    (``payee_locked``), a settlement included. (The ledger itself refuses no post of a pending
    transfer that the limits let through: freezing the merchant's account for credits is
    refused by the database while the hold credits it, ``ck_accounts_credits_within_debits``.)"""
    db.session.execute(update(User).where(User.id == merchant.id).values(locked_until=OPERATOR_LOCK_UNTIL))
    db.session.commit()


def take_payments_again(merchant) -> None:
    db.session.execute(update(User).where(User.id == merchant.id).values(locked_until=None))
    db.session.commit()


def request(request_id: str) -> TransferRequest | None:
    db.session.expire_all()
    found = db.session.get(TransferRequest, request_id)
    db.session.commit()
    return found


def postings_of(hold_id: str) -> int:
    db.session.expire_all()
    found = len(list(db.session.execute(select(Transfer.id).where(Transfer.pending_id == hold_id)).scalars()))
    db.session.commit()
    return found


def retry_due() -> int:
    """The maintenance job once the longest retry wait is over (ALLOWANCE_SETTLE_RETRY_MAX_SECONDS:
    the wait doubles with each refusal), then the worker."""
    longest = timedelta(seconds=current_app.config["ALLOWANCE_SETTLE_RETRY_MAX_SECONDS"])
    moved = jobs.settle_allowances(now=utcnow() + longest + timedelta(minutes=1))
    execute_all()
    return moved


def test_a_refused_settlement_stays_held_and_posts_once_on_a_later_attempt(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    hold_id = f"{allowance_id}.h1"
    for n in range(4):
        assert charge(allowance_id, merchant, 5_00, n).ok
    merchant_before = available(merchant.account_id)
    refuse_payments_to(merchant)
    assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    execute_all()

    first = request(f"{hold_id}.r")
    assert (first.status, first.result) == ("rejected", "payee_locked")
    # Nothing moved: the hold is pending again, its charges owed again, no SMS to anyone.
    assert request(hold_id).hold_state == HoldState.PENDING.value
    allowance = the(allowance_id)
    assert (allowance.state, allowance.tab_amount, allowance.tab_count) == ("settling", 20_00, 4)
    assert available(customer.account_id) == FUNDS - LIMIT
    assert not [m for m in sms_to(customer.phone) if first.code in m]
    assert charge(allowance_id, merchant, 1_00, 50).code == "allowance_not_active"
    # Not tried again before the wait is over; then attempts 2 and 3, refused as well.
    assert jobs.settle_allowances() == 0
    assert retry_due() == 1 and request(f"{hold_id}.r2").status == "rejected"
    assert retry_due() == 1 and request(f"{hold_id}.r3").status == "rejected"
    # Refused three times: the operator sees it among what waits for them.
    listed = current_app.test_cli_runner().invoke(args=["review", "list"]).output
    assert f"allowance {allowance_id}" in listed and "refused 3 times" in listed

    take_payments_again(merchant)
    assert retry_due() == 1
    post = request(f"{hold_id}.r4")
    assert (post.kind, post.status, post.amount) == ("allowance_post", "accepted", 20_00)
    assert postings_of(hold_id) == 1  # exactly one posting of the hold, ever
    assert retry_due() == 0 and request(f"{hold_id}.r5") is None
    # The customer paid the four charges once; the rest of the week is held again.
    assert available(customer.account_id) == FUNDS - 20_00 - (LIMIT - 20_00)
    assert available(merchant.account_id) == merchant_before + 20_00 - post.payee_fee
    [settled] = [m for m in sms_to(customer.phone) if "paid to MAMA MBOGA" in m]
    assert settled.startswith(f"{post.code} Confirmed. KES 20.00 paid to MAMA MBOGA for 4 charges")
    allowance = the(allowance_id)
    assert (allowance.state, allowance.tab_amount, allowance.charged) == ("active", 0, 20_00)
    assert [e["allowance"] for e in events("allowance.settled")] == [allowance_id]
    # The settlement's code checks by SMS as what it is, not "in progress" (its latest attempt).
    from ussd_app.sms_commands.inbound import answer

    assert "in progress" not in answer(db.session, customer.phone, request(hold_id).code, language="en")[3]
    ledger_ok()


def test_each_refusal_doubles_the_wait_before_the_next_attempt_up_to_a_day(cast):  # noqa: F811
    """A merchant locked for days is not asked every hour by each of its allowances: after the
    n-th refusal the next attempt waits ALLOWANCE_SETTLE_RETRY_SECONDS x 2^(n-1) (1 h, 2 h, 4 h,
    ...), at most ALLOWANCE_SETTLE_RETRY_MAX_SECONDS (a day)."""
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    hold_id = f"{allowance_id}.h1"
    assert charge(allowance_id, merchant, 5_00, 0).ok
    refuse_payments_to(merchant)
    assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    execute_all()
    assert request(f"{hold_id}.r").status == "rejected"

    def tries_after(minutes: int) -> int:
        moved = jobs.settle_allowances(now=utcnow() + timedelta(minutes=minutes))
        execute_all()
        return moved

    # (wait after the refusal, attempt made then): 1 h, 2 h, 4 h, 8 h, 16 h, then a day, a day.
    for attempt, hours in ((2, 1), (3, 2), (4, 4), (5, 8), (6, 16), (7, 24), (8, 24)):
        assert tries_after(hours * 60 - 2) == 0, (attempt, hours)
        assert request(f"{hold_id}.r{attempt}") is None
        assert tries_after(hours * 60 + 2) == 1, (attempt, hours)
        assert request(f"{hold_id}.r{attempt}").status == "rejected"
        # The refusal is recorded at the real clock's time (after_batch): its wait starts then.
    assert the(allowance_id).tab_amount == 5_00 and available(customer.account_id) == FUNDS - LIMIT
    ledger_ok()


def test_the_longest_due_is_tried_first_and_one_refused_again_waits_behind_the_others(cast):  # noqa: F811
    """A maintenance run tries at most its batch (``limit``; here 1) of the refused settlements
    whose wait is over, the one due the longest first (not the first by id); refused again, it
    waits its longer wait, so the next run reaches the next one: none is starved."""
    from ussd_app.payments.allowances.settlement import retry_wait

    customer, merchant = cast
    first, second = approved(customer, merchant, n=1), approved(customer, merchant, n=2)
    assert charge(first, merchant, 5_00, 1).ok and charge(second, merchant, 5_00, 2).ok
    refuse_payments_to(merchant)
    for allowance_id in (second, first):  # the second refused first: due again first
        assert al.settle(db.session, allowance_id, why="merchant") is not None
        db.session.commit()
        execute_all()
    later = utcnow() + retry_wait(1) + timedelta(minutes=1)  # both due by then

    def one_run() -> int:
        moved = al.settle_due(db.session, now=later, limit=1)
        db.session.commit()
        execute_all()
        return moved

    assert one_run() == 1
    assert request(f"{second}.h1.r2").status == "rejected" and request(f"{first}.h1.r2") is None
    assert one_run() == 1  # the second waits two hours now: the first's turn
    assert request(f"{first}.h1.r2").status == "rejected" and request(f"{second}.h1.r3") is None
    assert one_run() == 0  # both wait their doubled wait
    ledger_ok()


def test_cancelled_while_its_settlement_is_refused_the_charges_are_still_paid(cast):  # noqa: F811
    """Cancelling does not release a hold that charges are owed on: they are paid once the
    merchant takes payments again, the rest comes back then."""
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    for n in range(2):
        charge(allowance_id, merchant, 5_00, n)
    refuse_payments_to(merchant, "operator_lock")
    al.settle(db.session, allowance_id, why="merchant")
    db.session.commit()
    execute_all()
    assert al.cancel(db.session, customer, allowance_id)
    db.session.commit()
    assert jobs.settle_allowances() == 0  # not released: 10.00 is owed on it
    execute_all()
    assert state(allowance_id) == "cancelled"
    assert available(customer.account_id) == FUNDS - LIMIT
    take_payments_again(merchant)
    assert retry_due() == 1
    post = request(f"{allowance_id}.h1.r2")
    assert (post.status, post.amount) == ("accepted", 10_00)
    assert available(customer.account_id) == FUNDS - 10_00
    assert sms_to(customer.phone)[-1].endswith("Allowance ended: the rest of its hold is released.")
    assert count(TransferRequest, TransferRequest.kind == "allowance") == 1  # no next hold
    ledger_ok()


def test_two_maintenance_jobs_retrying_at_once_record_one_attempt(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    charge(allowance_id, merchant, 5_00, 1)
    refuse_payments_to(merchant, "operator_lock")
    al.settle(db.session, allowance_id, why="merchant")
    db.session.commit()
    execute_all()
    take_payments_again(merchant)
    later = utcnow() + timedelta(hours=2)
    moved = at_once(current_app._get_current_object(), *[lambda: jobs.settle_allowances(now=later)] * 2)
    assert sorted(moved) == [0, 1]
    execute_all()
    assert request(f"{allowance_id}.h1.r2").status == "accepted"
    assert request(f"{allowance_id}.h1.r3") is None
    assert postings_of(f"{allowance_id}.h1") == 1
    ledger_ok()


def test_a_paused_allowance_is_told_once_then_ends_after_three_periods(backend_app):
    """Paused for want of money: ONE SMS when it pauses, none at each period's silent try, and
    after ALLOWANCE_PAUSED_PERIODS (3) refused holds in a row it ends, with ONE more SMS."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "paused"
    sms_before = count(OutboxMessage)
    assert sms_to(customer.phone)[-1].startswith("Allowance for MAMA MBOGA paused")
    period_over(allowance_id)
    assert state(allowance_id) == "paused"
    assert count(OutboxMessage) == sms_before  # the second period's try: silent
    period_over(allowance_id)
    assert state(allowance_id) == "expired"
    assert count(OutboxMessage) == sms_before + 1
    assert sms_to(customer.phone)[-1] == (
        "Allowance for MAMA MBOGA has ended: its limit could not be held 3 times in a row. "
        "Nothing more will be held."
    )
    assert [e["allowance"] for e in events("allowance.expired")] == [allowance_id]
    assert period_over(allowance_id) == 0  # ended: nothing more
    assert count(TransferRequest, TransferRequest.kind == "allowance") == 3


def test_a_pause_after_money_came_back_is_a_new_pause_and_told(backend_app):
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    from tests.helpers import fund

    allowance_id = asked(customer, merchant)
    al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()  # paused: told
    fund(customer.account_id, LIMIT)
    period_over(allowance_id)
    assert state(allowance_id) == "active"
    for n in range(2):
        charge(allowance_id, merchant, 5_00, n)
    period_over(allowance_id)  # the tab paid; the next week's limit is not there: paused again
    assert state(allowance_id) == "paused"
    paused = [m for m in sms_to(customer.phone) if m.startswith("Allowance for MAMA MBOGA paused")]
    assert len(paused) == 2


def test_two_workers_after_their_batches_take_disjoint_rows(cast):  # noqa: F811
    """Worker A is telling the settlements of its batch (its transaction open); worker B, after
    its own batch, finds those rows taken and skips them (FOR UPDATE SKIP LOCKED) instead of
    reading the same rows and waiting on each one's lock."""
    from sqlalchemy import text

    from ussd_app.database import is_postgres
    from ussd_app.payments.execute import execute_batch

    if not is_postgres(db.session):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    customer, merchant = cast
    ids = [approved(customer, merchant, n=n) for n in (1, 2)]
    for n, allowance_id in enumerate(ids):
        charge(allowance_id, merchant, 5_00, n)
        assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    execute_batch(db.session, 500)  # the posts, without the worker's after-batch call
    app = current_app._get_current_object()
    assert al.after_batch(db.session) == 2  # worker A: told, not committed yet
    found = []

    def worker_b():
        with app.app_context():
            try:
                db.session.execute(text("SET LOCAL lock_timeout = '3s'"))
                found.append(al.after_batch(db.session))
                db.session.commit()
            except Exception as exc:  # a lock wait that timed out: the test fails on it below
                found.append(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    thread = threading.Thread(target=worker_b)
    thread.start()
    thread.join(timeout=30)
    db.session.commit()
    assert found == [0]
    assert count(OutboxMessage, OutboxMessage.phone == customer.phone) >= 2
    for allowance_id in ids:
        assert state(allowance_id) == "approving"  # the next hold, made once
    execute_all()
    assert {state(a) for a in ids} == {"active"}
    ledger_ok()
