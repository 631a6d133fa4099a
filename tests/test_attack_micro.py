"""Attacks on the micro changes (refused settlements tried again, ends_at, pauses, standing
orders against the velocity rule): each test is a way a shilling could be lost, doubled or
invented, or someone act as another, that the code now refuses."""

from datetime import timedelta

from sqlalchemy import update

from tests.api_helpers import execute_all
from tests.escrow_helpers import FUNDS, ledger_ok
from tests.test_allowances import approved, cast, charge, state, the  # noqa: F401
from tests.ussd_helpers import available
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.payments import allowances as al
from ussd_app.payments.models import TransferRequest
from worker import jobs


def ends_in(allowance_id: str, delta: timedelta):
    """The allowance's own end, ``delta`` from now (the merchant's ends_at)."""
    ends = utcnow() + delta
    db.session.execute(
        al.Allowance.__table__.update().where(al.Allowance.id == allowance_id).values(ends_at=ends)
    )
    db.session.commit()
    return ends


def merchant_locked(account_id: int, locked: bool) -> None:
    """The operator locks (or unlocks) the merchant: what would pay it is refused."""
    from ussd_app.users import OPERATOR_LOCK_UNTIL, User

    db.session.execute(
        update(User)
        .where(User.account_id == account_id)
        .values(locked_until=OPERATOR_LOCK_UNTIL if locked else None)
    )
    db.session.commit()


def test_no_charge_is_taken_after_the_allowance_has_ended(cast):  # noqa: F811
    """The customer agreed to charges *until* ends_at. Between that moment and the maintenance
    job's next run the allowance is still ``active`` in the table: a charge then must be
    refused, not added to the tab that the end settles (money the customer never agreed to)."""
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    assert charge(allowance_id, merchant, 5_00, 1).ok
    ends = ends_in(allowance_id, -timedelta(seconds=1))  # it ended a second ago
    late = charge(allowance_id, merchant, 5_00, 2)
    assert (late.ok, late.code) == (False, "allowance_not_active")
    assert jobs.settle_allowances(now=ends + timedelta(seconds=30)) == 1
    execute_all()
    assert state(allowance_id) == "expired"
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert (post.status, post.amount) == ("accepted", 5_00)
    assert available(customer.account_id) == FUNDS - 5_00
    ledger_ok()


def test_cancelling_while_a_settlement_is_refused_does_not_say_the_money_is_back(backend_app):
    """A settlement refused (the merchant locked by Tuma) leaves its charges owed on the hold.
    The customer cancels on USSD: the screen must not say "Nothing was charged; any money held
    is yours again" while KES 15.00 of it is still going to the merchant (it is, once the lock
    is lifted): it says what is owed, and the one SMS follows when it is paid."""
    from tests.escrow_helpers import sms_to
    from tests.test_allowances_refused import retry_due
    from tests.test_ussd_allowances import ALLOWANCES, JUMA, PIN, Cast, active, dial, work
    from tests.test_ussd_allowances import charge as ussd_charge

    juma = Cast(backend_app)
    allowance_id = active(juma)
    for n in range(1, 4):
        assert ussd_charge(allowance_id, juma.shop, 5_00, f"R{n}", n).ok
    merchant_locked(juma.shop, True)
    assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    work()
    assert (state(allowance_id), the(allowance_id).tab_amount) == ("settling", 15_00)
    phone = dial(juma.client)
    for value in (ALLOWANCES, "2", "1", "2", "1"):
        phone.send(value)
    done = phone.send(PIN)
    assert "any money held is yours again" not in done, done
    assert done == (
        "END Allowance to Mama Mboga cancelled. Settled now: KES 15.00 for 3 charges. You will get an SMS."
    )
    work()
    assert state(allowance_id) == "cancelled"
    merchant_locked(juma.shop, False)
    assert retry_due() == 1
    assert available(juma.account) == FUNDS - 15_00
    assert sms_to(JUMA)[-1].endswith("Allowance ended: the rest of its hold is released.")
    ledger_ok()


def maintenance(now=None) -> int:
    """The maintenance job's allowance step: settle what is due, then catch up what a batch
    left behind (``after_batch``, for a worker that died after its commit)."""
    return jobs.settle_allowances(now=now) + jobs.after_allowance_batch()


def holds_agree_with_the_ledger() -> None:
    """Every allowance hold's ``hold_state`` says what the ledger says of its PENDING transfer:
    ``pending`` exactly when no resolution of it is in the ledger."""
    from sqlalchemy import select

    from ussd_app.ledger import Transfer

    db.session.expire_all()
    resolved = set(
        db.session.execute(select(Transfer.pending_id).where(Transfer.pending_id.is_not(None))).scalars()
    )
    for hold in db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == "allowance")
    ).scalars():
        if hold.status != "accepted":
            continue
        assert (hold.hold_state == "pending") == (hold.id not in resolved), (hold.id, hold.hold_state)
    db.session.commit()


def test_worker_killed_after_the_refusal_then_cancel_and_end_the_charges_are_paid_once(cast):  # noqa: F811
    """The worker's batch refuses the settlement and commits, then the worker dies before its
    after-batch step (the hold still says ``posted``, the tab is 0). Meanwhile the customer
    cancels and the allowance's own end passes. The maintenance job's after-batch step puts the
    hold back and the tab; the later attempt pays the 10.00 once; the rest comes back once."""
    from ussd_app.payments.execute import execute_batch

    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    for n in range(2):
        assert charge(allowance_id, merchant, 5_00, n).ok
    merchant_locked(merchant.account_id, True)
    assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    assert execute_batch(db.session, 500) == 1  # refused; the worker dies before after_batch
    db.session.commit()
    assert al.cancel(db.session, customer, allowance_id)
    db.session.commit()
    ends_in(allowance_id, -timedelta(seconds=1))
    maintenance()
    execute_all()
    maintenance()
    execute_all()
    assert (state(allowance_id), the(allowance_id).tab_amount) == ("cancelled", 10_00)
    assert available(customer.account_id) == FUNDS - 200_00  # still held: 10.00 is owed
    holds_agree_with_the_ledger()
    merchant_locked(merchant.account_id, False)
    maintenance(utcnow() + timedelta(hours=2))
    execute_all()
    maintenance(utcnow() + timedelta(hours=4))
    execute_all()
    post = db.session.get(TransferRequest, f"{allowance_id}.h1.r2")
    assert (post.status, post.amount) == ("accepted", 10_00)
    assert db.session.get(TransferRequest, f"{allowance_id}.h1.r3") is None
    assert available(customer.account_id) == FUNDS - 10_00
    assert the(allowance_id).tab_amount == 0
    holds_agree_with_the_ledger()
    ledger_ok()


def test_a_retry_a_cancel_and_an_after_batch_racing_pay_the_owed_charges_once(cast):  # noqa: F811
    """Refused settlements (the merchant was locked, now unlocked): the maintenance job's retry,
    the customer's cancel and a worker's after-batch step run at the same moment, on several
    allowances. Whoever wins, each tab is posted once, the rest of each hold comes back once,
    and every hold agrees with the ledger."""
    from flask import current_app
    from sqlalchemy.exc import DBAPIError

    from tests.escrow_helpers import at_once
    from ussd_app.users import find_by_phone

    customer, merchant = cast
    ids = [approved(customer, merchant, n=n, limit=20_00) for n in range(1, 5)]
    for allowance_id in ids:
        assert charge(allowance_id, merchant, 5_00, allowance_id).ok
    merchant_locked(merchant.account_id, True)
    for allowance_id in ids:
        assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    execute_all()
    assert {(state(a), the(a).tab_amount) for a in ids} == {("settling", 5_00)}
    merchant_locked(merchant.account_id, False)
    later = utcnow() + timedelta(hours=2)
    phone = customer.phone

    def cancel_all():
        for allowance_id in ids:
            for _ in range(3):  # a deadlock victim tries again, as the customer would
                try:
                    al.cancel(db.session, find_by_phone(db.session, phone), allowance_id)
                    db.session.commit()
                    break
                except DBAPIError:
                    db.session.rollback()

    app = current_app._get_current_object()
    at_once(app, lambda: maintenance(later), cancel_all, jobs.after_allowance_batch)
    for _ in range(3):
        execute_all()
        maintenance(utcnow() + timedelta(hours=4))
    execute_all()
    for allowance_id in ids:
        post = db.session.get(TransferRequest, f"{allowance_id}.h1.r2")
        assert (post.status, post.amount) == ("accepted", 5_00), allowance_id
        assert db.session.get(TransferRequest, f"{allowance_id}.h1.r3") is None
        assert the(allowance_id).tab_amount == 0
    assert {state(a) for a in ids} == {"cancelled"}
    assert available(customer.account_id) == FUNDS - 4 * 5_00  # the rest of every hold back
    holds_agree_with_the_ledger()
    ledger_ok()
