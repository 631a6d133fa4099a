"""Attacks on tips and standing orders (issue 18 items 2 and 3) from outside, through the
webhooks, the CLI and the jobs the workers run; each test is a hole found and closed."""

from datetime import timedelta

from tests.escrow_helpers import cash_in, ledger_ok, sms_to
from tests.standing_order_helpers import requests_from, runs, today, utc
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, available
from ussd_app.extensions import db
from ussd_app.payments import standing_orders as so
from worker import jobs

PAYEE = SECOND_CUSTOMER["phone"]


def execute() -> None:
    """The worker's job: the batch, then the standing orders' runs settled (worker/jobs.py)."""
    jobs.execute_transfers()
    db.session.expire_all()


def daily_order(payer, payee, first, *, amount=150_00, runs_limit=3) -> so.StandingOrder:
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=payee.account_id,
        amount=amount,
        frequency="daily",
        first_date=first,
        runs_limit=runs_limit,
    )
    db.session.commit()
    return order


def test_a_retry_the_scheduler_missed_is_skipped_on_the_next_day_not_paid_twice(
    runner, customer, agent, second_customer
):
    """A run refused late in the day is told "we will try again at 23:59". When the scheduler
    only comes back the next morning, that day is over: the run is skipped (and the payer
    told), never paid beside the next day's run."""
    d1 = today() + timedelta(days=1)
    d2, d3 = d1 + timedelta(days=1), d1 + timedelta(days=2)
    order = daily_order(customer, second_customer, d1)
    assert jobs.run_standing_orders(now=utc(d1, 23, 30))  # no money yet: refused
    execute()
    assert [(r.state, r.retry_at) for r in runs()] == [("retry", utc(d1, 23, 59))]
    assert sms_to(CUSTOMER["phone"])[-1].endswith("We will try again at 23:59. No fee.")

    cash_in(customer, agent)  # the money comes in the night; the scheduler was down at 23:59
    recorded = jobs.run_standing_orders(now=utc(d2, 6))
    execute()
    assert recorded == [f"{order.id}.{d2:%Y%m%d}.a1"]  # the day before is not tried again
    assert [(r.run_date, r.state) for r in runs()] == [(d1, "skipped"), (d2, "paid")]
    assert available(second_customer.account_id) == 150_00  # one payment, not two
    assert [r.status for r in requests_from(customer.account_id) if r.kind == "send"] == [
        "rejected",
        "accepted",
    ]
    told = [body for body in sms_to(CUSTOMER["phone"]) if "Standing order" in body]
    assert told[-1].endswith(
        f"due {d1:%d/%m/%y} not paid. Not enough money. Skipped; next payment {d3:%d/%m/%y}."
    )
    ledger_ok()
