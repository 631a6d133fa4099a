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
