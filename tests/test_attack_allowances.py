"""Allowances attacked from outside (the API with real keys, USSD, the worker's jobs): each test
here once showed a lost promise (money, an event, an identity) and now holds."""

from tests.api_helpers import execute_all
from tests.test_allowances import asked, charge, events, period_over, state
from tests.ussd_helpers import CUSTOMER, MERCHANT, person
from ussd_app.extensions import db
from ussd_app.payments import allowances as al

TERMS = {"phone": "0712000111", "limit": 200_00, "max_charge": 5_00, "period": "week", "description": "News"}


def test_a_merchant_hears_approved_when_the_first_hold_is_made_in_a_later_period(backend_app):
    """Approved with no money: paused. The money comes, the next period's hold is made and
    charges are taken: the merchant, who waits for ``allowance.approved`` to start charging,
    must hear it then (it was sent only for hold number 1, which was refused)."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "paused"
    from tests.helpers import fund

    fund(customer.account_id, 500_00)
    period_over(allowance_id)
    from worker import jobs

    jobs.after_allowance_batch()
    assert state(allowance_id) == "active"
    assert charge(allowance_id, merchant, 1_00, 1).ok
    approved = events("allowance.approved")
    assert [e["allowance"] for e in approved] == [allowance_id]
