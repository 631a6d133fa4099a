"""Attacks on the micro changes (refused settlements tried again, ends_at, pauses, standing
orders against the velocity rule): each test is a way a shilling could be lost, doubled or
invented, or someone act as another, that the code now refuses."""

from datetime import timedelta

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
