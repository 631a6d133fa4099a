"""Allowances (payments/allowances.py): approved once with the PIN, then many small charges with
no SMS and no ledger posting, each checked against what is left and against max_charge; the tab
settles as one posting and one SMS; the next period's hold, or a pause when the money is short.

Money moves here, so the tests run on both databases (``backend_app``); the cast is made in
each (ussd_helpers), funded at the cast's agent (escrow_helpers.cash_in: KES 10,000)."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.api_helpers import execute_all
from tests.escrow_helpers import FUNDS, at_once, cash_in, ledger_ok, sms_to
from tests.ussd_helpers import AGENT, CUSTOMER, MERCHANT, available, person
from ussd_app.events.models import Event
from ussd_app.extensions import db
from ussd_app.ledger import Transfer
from ussd_app.payments import allowances as al
from ussd_app.payments.models import HoldState, RequestKind, TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from worker import jobs

LIMIT, MAX_CHARGE = 200_00, 5_00


@pytest.fixture
def cast(backend_app):
    """(customer with KES 10,000, merchant), made in this test's database."""
    customer = person(**CUSTOMER)
    merchant = person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    return customer, merchant


def asked(customer, merchant, *, limit=LIMIT, max_charge=MAX_CHARGE, period="week", n=1) -> str:
    allowance = al.ask(
        db.session,
        merchant,
        customer.phone,
        limit=limit,
        max_charge=max_charge,
        period=period,
        description="Daily News",
        reference="READER-7",
        allowance_id=f"al_test{n}",
    )
    db.session.commit()
    return allowance.id


def approved(customer, merchant, **terms) -> str:
    """Asked, approved as My approvals does (after the PIN), and its hold made by the worker."""
    allowance_id = asked(customer, merchant, **terms)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "active"
    return allowance_id


def the(allowance_id) -> al.Allowance:
    db.session.expire_all()
    allowance = db.session.get(al.Allowance, allowance_id)
    db.session.commit()
    return allowance


def state(allowance_id) -> str:
    return the(allowance_id).state


def charge(allowance_id, merchant, amount, n) -> al.ChargeOutcome:
    outcome = al.charge(db.session, allowance_id, merchant.account_id, amount, f"ART-{n}", charge_id=f"c-{n}")
    db.session.commit()
    return outcome


def count(model, *where) -> int:
    db.session.expire_all()
    found = db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    db.session.commit()
    return found


def transfer_ids() -> set[str]:
    db.session.expire_all()
    ids = set(db.session.execute(select(Transfer.id)).scalars())
    db.session.commit()
    return ids


def events(event_type: str) -> list[dict]:
    db.session.expire_all()
    rows = db.session.execute(select(Event.payload).where(Event.type == event_type)).scalars()
    found = [json.loads(p)["data"] for p in rows]
    db.session.commit()
    return found


def period_over(allowance_id) -> int:
    """The maintenance job at the end of the allowance's period, then the worker."""
    moved = jobs.settle_allowances(now=the(allowance_id).period_ends_at + timedelta(seconds=1))
    execute_all()
    return moved


def test_200_one_shilling_charges_send_no_sms_and_post_nothing_then_settle_as_one(cast):
    customer, merchant = cast
    allowance_id = asked(customer, merchant)
    ask_sms = sms_to(customer.phone)[-1]
    assert ask_sms == (
        "MAMA MBOGA asks to charge you up to KES 200.00 a week, at most KES 5.00 a charge. "
        "Approve or decline: dial *384*7# > My approvals"
    )
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "active"
    assert events("allowance.approved")[0]["limit"] == LIMIT
    assert available(customer.account_id) == FUNDS - LIMIT  # the week's limit is held
    sms_before, transfers_before = count(OutboxMessage), transfer_ids()

    for n in range(200):
        assert charge(allowance_id, merchant, 1_00, n).ok
    assert count(OutboxMessage) == sms_before  # no SMS per charge
    assert transfer_ids() == transfers_before  # no ledger posting per charge
    assert count(al.AllowanceCharge) == 200
    allowance = the(allowance_id)
    assert (allowance.charged, allowance.charge_count, al.left(allowance)) == (LIMIT, 200, 0)

    past_limit = charge(allowance_id, merchant, 1_00, 200)
    over_max = charge(allowance_id, merchant, MAX_CHARGE + 1, 201)
    assert (past_limit.code, over_max.code) == ("exceeds_allowance_left", "exceeds_max_charge")
    assert count(al.AllowanceCharge) == 200

    merchant_before = available(merchant.account_id)
    assert period_over(allowance_id) == 1
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    next_hold = f"{allowance_id}.h2"
    # One posting (the tab's sum from the hold, its fee leg linked to it) and the next hold.
    assert transfer_ids() - transfers_before == {post.id, f"{post.id}.payee_fee", next_hold}
    assert (post.kind, post.amount, post.status) == ("allowance_post", LIMIT, "accepted")
    assert available(merchant.account_id) == merchant_before + LIMIT - post.payee_fee
    assert post.payee_fee == 1_00  # the tariff's 0.5% of KES 200
    # The customer paid the tab; the next week's limit is held.
    assert available(customer.account_id) == FUNDS - LIMIT - LIMIT
    [settled] = [m for m in sms_to(customer.phone) if post.code in m]
    assert settled.startswith(f"{post.code} Confirmed. KES 200.00 paid to MAMA MBOGA for 200 charges, ")
    assert "Allowance left: KES 200.00 until" in settled
    assert count(OutboxMessage) == sms_before + 1  # the one SMS, to the customer only
    assert sms_to(merchant.phone) == []
    [event] = events("allowance.settled")
    assert (event["transaction"], event["amount"], event["allowance"]) == (post.code, LIMIT, allowance_id)
    allowance = the(allowance_id)
    assert (allowance.state, allowance.period_no, allowance.charged, allowance.hold_request_id) == (
        "active",
        2,
        0,
        next_hold,
    )
    assert charge(allowance_id, merchant, 1_00, 300).ok  # the new week takes charges
    ledger_ok()


def test_settling_twice_settles_once(cast):
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    for n in range(3):
        charge(allowance_id, merchant, 2_00, n)
    first = al.settle(db.session, allowance_id, why="merchant")
    again = al.settle(db.session, allowance_id, why="merchant")
    db.session.commit()
    assert first is not None and again is None
    execute_all()
    jobs.after_allowance_batch()  # the worker's own call again: nothing more
    assert count(TransferRequest, TransferRequest.kind == "allowance_post") == 1
    assert len([m for m in sms_to(customer.phone) if first.code in m]) == 1
    # Settled mid-week: the next hold is what is left of the week, and the week goes on.
    allowance = the(allowance_id)
    assert (allowance.state, allowance.charged, allowance.tab_amount) == ("active", 6_00, 0)
    assert db.session.get(TransferRequest, allowance.hold_request_id).amount == LIMIT - 6_00
    assert available(customer.account_id) == FUNDS - LIMIT
    ledger_ok()


def test_a_period_with_no_charges_rolls_on_with_no_posting(cast):
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    before = transfer_ids()
    ends = the(allowance_id).period_ends_at
    assert period_over(allowance_id) == 1
    allowance = the(allowance_id)
    assert (allowance.state, allowance.period_no, allowance.period_starts_at) == ("active", 2, ends)
    assert transfer_ids() == before and sms_to(customer.phone)[-1].startswith("MAMA MBOGA asks")


def test_no_money_for_the_next_period_pauses_and_tells_the_customer(backend_app):
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    from tests.helpers import fund

    fund(customer.account_id, LIMIT + 10_00)
    allowance_id = approved(customer, merchant)
    for n in range(10):
        charge(allowance_id, merchant, 5_00, n)  # KES 50 charged: KES 160 left to hold again
    assert period_over(allowance_id) == 1
    jobs.after_allowance_batch()
    allowance = the(allowance_id)
    assert allowance.state == "paused"
    paused = sms_to(customer.phone)[-1]
    assert paused.startswith("Allowance for MAMA MBOGA paused: KES 200.00 could not be held")
    [event] = events("allowance.paused")
    assert (event["allowance"], event["failure"]) == (allowance_id, "exceeds_credits")
    assert charge(allowance_id, merchant, 1_00, 99).code == "allowance_not_active"
    assert available(customer.account_id) == LIMIT + 10_00 - 50_00  # the tab paid, nothing held
    ledger_ok_without_deposits()


def ledger_ok_without_deposits():
    from ussd_app.ledger.check import check

    failed = [f for f in check(db.session) if not f.ok]
    db.session.commit()
    assert not failed, failed


def test_approved_without_the_money_pauses_at_once(backend_app):
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "paused"
    assert sms_to(customer.phone)[-1].startswith("Allowance for MAMA MBOGA paused")


def test_cancel_settles_the_tab_and_releases_the_rest(cast):
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    for n in range(4):
        charge(allowance_id, merchant, 5_00, n)
    assert al.cancel(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    allowance = the(allowance_id)
    assert allowance.state == "cancelled"
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert (post.amount, post.status) == (20_00, "accepted")
    hold = db.session.get(TransferRequest, f"{allowance_id}.h1")
    assert hold.hold_state == HoldState.POSTED.value
    assert count(TransferRequest, TransferRequest.kind == "allowance") == 1  # no next period
    assert available(customer.account_id) == FUNDS - 20_00
    assert sms_to(customer.phone)[-1].endswith("Allowance ended: the rest of its hold is released.")
    assert events("allowance.cancelled")[0]["allowance"] == allowance_id
    # The mini statement: the week's limit left once, what came back as returned.
    from ussd_app.ussd.flows.my_account import statement_lines

    lines = statement_lines(db.session, customer, "en")
    hold = db.session.get(TransferRequest, f"{allowance_id}.h1")
    assert lines[0].endswith(f"{post.code} +KES 180.00 Mama Mboga (returned)")
    assert lines[1].endswith(f"{hold.code} -KES 200.00 Mama Mboga")
    assert charge(allowance_id, merchant, 1_00, 9).code == "allowance_not_active"
    assert not al.cancel(db.session, customer, allowance_id)  # once
    ledger_ok()


def test_a_hold_still_queued_when_cancelled_is_released_once_made(cast):
    customer, merchant = cast
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    assert al.cancel(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()  # the hold is made; the maintenance job then releases it
    assert jobs.settle_allowances() == 1
    execute_all()
    assert state(allowance_id) == "cancelled"
    assert db.session.get(TransferRequest, f"{allowance_id}.h1.r").kind == "allowance_void"
    assert available(customer.account_id) == FUNDS
    ledger_ok()


def test_decline_and_an_unanswered_ask_expires(cast):
    customer, merchant = cast
    declined = asked(customer, merchant, n=1)
    lapsing = asked(customer, merchant, n=2)
    assert [a.id for a in al.awaiting(db.session, customer)] == [declined, lapsing]
    assert al.decline(db.session, customer, declined)
    db.session.commit()
    assert not al.approve(db.session, customer, declined)
    assert events("allowance.declined")[0]["allowance"] == declined
    later = the(lapsing).created_at + timedelta(days=8)
    assert jobs.settle_allowances(now=later) == 1
    assert state(lapsing) == "expired" and events("allowance.expired")[0]["allowance"] == lapsing
    assert not al.approve(db.session, customer, lapsing)
    assert sms_to(merchant.phone) == []  # merchants hear through webhook events only


def test_a_customer_starts_one_on_ussd_terms(cast):
    customer, merchant = cast
    allowance = al.start(db.session, customer, merchant, limit=50_00, period="day", allowance_id=al.new_id())
    db.session.commit()
    execute_all()
    allowance = the(allowance.id)
    assert (allowance.state, allowance.max_charge) == ("active", 50_00)
    assert [a.id for a in al.of_customer(db.session, customer)] == [allowance.id]
    assert al.merchant_name(db.session, allowance) == "Mama Mboga"
    assert charge(allowance.id, merchant, 50_00, 1).ok
    assert [c.amount for c in al.recent_charges(db.session, allowance.id)] == [50_00]
    with pytest.raises(al.AllowanceError):
        al.start(db.session, customer, merchant, limit=0, period="day", allowance_id=al.new_id())


def test_a_charge_retried_is_one_tab_line_and_another_merchant_finds_nothing(cast):
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    first = charge(allowance_id, merchant, 3_00, 1)
    again = charge(allowance_id, merchant, 3_00, 1)
    assert first.ok and again.ok and the(allowance_id).charged == 3_00
    assert charge(allowance_id, merchant, 4_00, 1).code == "charge_id_reused"
    stranger = person("+254700000009", "Other Shop", role="merchant", till="654321")
    outcome = al.charge(db.session, allowance_id, stranger.account_id, 1_00, None, charge_id="x")
    assert outcome.code == "allowance_not_found"


def test_30_charges_racing_take_exactly_what_is_left(backend_app):
    """On PostgreSQL: the allowance's row lock queues them; never more than what is left."""
    if backend_app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("a race needs PostgreSQL's row locks (SQLite runs one writer at a time)")
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = approved(customer, merchant, limit=40_00, max_charge=5_00)
    for n in range(10):
        charge(allowance_id, merchant, 2_00, n)  # KES 20 left

    merchant_account_id = merchant.account_id  # read here: the threads have sessions of their own

    def one(n):
        def call():
            outcome = al.charge(db.session, allowance_id, merchant_account_id, 1_00, None, charge_id=f"r-{n}")
            db.session.commit()
            return outcome.code

        return call

    codes = at_once(backend_app, *(one(n) for n in range(30)))
    assert codes.count(None) == 20  # exactly the KES 20 left, one shilling each
    assert codes.count("exceeds_allowance_left") == 10
    allowance = the(allowance_id)
    assert allowance.charged == allowance.limit_amount == 40_00 and al.left(allowance) == 0
    lines = db.session.execute(
        select(func.sum(al.AllowanceCharge.amount)).where(al.AllowanceCharge.allowance_id == allowance_id)
    ).scalar_one()
    db.session.commit()
    assert lines == allowance.charged
    assert period_over(allowance_id) == 1
    assert db.session.get(TransferRequest, f"{allowance_id}.h1.r").amount == 40_00
    ledger_ok()


def test_kinds_are_silent_receipts_and_the_settlement_code_checks_like_a_receipt(cast):
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    charge(allowance_id, merchant, 5_00, 1)
    period_over(allowance_id)
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert post.kind == RequestKind.ALLOWANCE_POST.value
    # Only the allowance's own SMS after the cash-in receipt: the ask and the settlement (no
    # receipt for the holds, nor a second one for the post).
    told = sms_to(customer.phone)
    assert len(told) == 3 and told[1].startswith("MAMA MBOGA asks") and told[2].startswith(post.code)
    from ussd_app.sms_commands.inbound import answer

    reply = answer(db.session, customer.phone, post.code, language="en")[3]
    assert post.code in reply and "completed" in reply and "MAMA MBOGA" in reply.upper()


def test_the_maintenance_job_settles_a_period_that_ended(cast):
    """``python -m worker``'s periodic job (``maintain``) settles what fell due; the batch that
    posts it is followed by the customer's SMS and the next hold (``after_allowance_batch``)."""
    from sqlalchemy import update

    from ussd_app.clock import utcnow

    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    charge(allowance_id, merchant, 5_00, 1)
    db.session.execute(
        update(al.Allowance)
        .where(al.Allowance.id == allowance_id)
        .values(period_ends_at=utcnow() - timedelta(minutes=1))
    )
    db.session.commit()
    assert jobs.maintain()["allowances"] == 1
    execute_all()
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert (post.amount, post.status) == (5_00, "accepted")
    assert sms_to(customer.phone)[-1].startswith(f"{post.code} Confirmed. KES 5.00 paid to MAMA MBOGA")
    allowance = the(allowance_id)
    assert (allowance.state, allowance.period_no, allowance.hold_request_id) == (
        "active",
        2,
        f"{allowance_id}.h2",
    )
    assert jobs.maintain()["allowances"] == 0  # nothing more is due
    ledger_ok()


def test_a_kiswahili_customer_reads_the_ask_and_the_settlement_in_kiswahili(backend_app):
    customer = person(**CUSTOMER, language="sw")
    merchant = person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant)
    assert sms_to(customer.phone)[-1] == (
        "MAMA MBOGA anaomba kukutoza hadi KES 200.00 kwa wiki, isizidi KES 5.00 kila malipo. "
        "Kubali au kataa: piga *384*7# > Idhini zangu"
    )
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    charge(allowance_id, merchant, 5_00, 1)
    assert al.cancel(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert sms_to(customer.phone)[-1].startswith(
        f"{post.code} Imethibitishwa. KES 5.00 zimelipwa kwa MAMA MBOGA kwa malipo 1, "
    )
