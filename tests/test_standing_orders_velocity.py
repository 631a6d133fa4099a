"""Standing orders against the velocity rule and the scheduler's clock (issue 18 item 5): a
payer may have 20 orders running (STANDING_ORDERS_PER_PAYER) but the velocity rule holds the
11th payment in an hour (VELOCITY_MAX_COUNT) for review; the runs of orders set up a day ago
or more are not held (their payer set payee and amount with the PIN), same-day orders are.
``run-due --at`` more than a day ahead pays runs not due yet: refused without ``--future``."""

from datetime import timedelta

from sqlalchemy import func, select

from tests.escrow_helpers import cash_in, ledger_ok
from tests.standing_order_helpers import instant, today, utc
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.payments import standing_orders as so
from ussd_app.payments.models import RequestStatus, TransferRequest
from worker import jobs

ORDERS = 12  # more than VELOCITY_MAX_COUNT (10), fewer than STANDING_ORDERS_PER_PAYER (20)


def orders_due_today(payer, payee, *, set_up_at) -> list[str]:
    made = []
    for _ in range(ORDERS):
        order = so.create(
            db.session,
            payer,
            order_id=so.mint_order_id(),
            kind="send",
            payee_account_id=payee.account_id,
            amount=10_00,
            frequency="daily",
            first_date=today(),
            runs_limit=5,
            now=set_up_at,
        )
        made.append(order.id)
    db.session.commit()
    return made


def statuses() -> dict[str, int]:
    db.session.expire_all()
    rows = db.session.execute(
        select(TransferRequest.status, func.count())
        .where(TransferRequest.id.like("so%"))
        .group_by(TransferRequest.status)
    ).all()
    db.session.commit()
    return dict(rows)


def run_all_due() -> None:
    jobs.run_standing_orders(now=utc(today(), 0, 5))
    while jobs.execute_transfers():
        pass
    db.session.commit()


def test_runs_of_orders_set_up_days_ago_are_not_held_by_the_velocity_rule(
    app, customer, second_customer, agent
):
    cash_in(customer, agent)
    orders_due_today(customer, second_customer, set_up_at=utcnow() - timedelta(days=3))
    run_all_due()
    assert statuses() == {RequestStatus.ACCEPTED.value: ORDERS}
    ledger_ok()


def test_runs_of_orders_set_up_today_are_held_like_any_payment(app, customer, second_customer, agent):
    cash_in(customer, agent)
    orders_due_today(customer, second_customer, set_up_at=utcnow() - timedelta(minutes=5))
    run_all_due()
    assert statuses() == {RequestStatus.ACCEPTED.value: 10, RequestStatus.REVIEW.value: ORDERS - 10}


def test_run_due_more_than_a_day_ahead_is_refused_unless_meant(runner):
    far = instant(today() + timedelta(days=3))
    refused = runner.invoke(args=["standing-orders", "run-due", "--at", far])
    assert refused.exit_code == 2
    assert "more than a day ahead of now" in refused.output and "--future" in refused.output
    assert runner.invoke(args=["standing-orders", "run-due", "--at", far, "--future"]).exit_code == 0
    soon = (utcnow() + timedelta(hours=20)).isoformat()
    assert runner.invoke(args=["standing-orders", "run-due", "--at", soon]).exit_code == 0
    assert runner.invoke(args=["standing-orders", "run-due"]).exit_code == 0
