"""Attacks on tips and standing orders (issue 18 items 2 and 3) from outside, through the
webhooks, the CLI and the jobs the workers run; each test is a hole found and closed."""

from datetime import timedelta

import pytest

from tests import sms_helpers
from tests.escrow_helpers import cash_in, ledger_ok, sms_to
from tests.standing_order_helpers import (
    STANDING_ORDERS,
    orders,
    requests_from,
    runs,
    set_up_to_person,
    today,
    utc,
)
from tests.test_tips import create_cause
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, available, local
from ussd_app.extensions import db
from ussd_app.payments import standing_orders as so
from worker import jobs

PAYEE = SECOND_CUSTOMER["phone"]
PIN = CUSTOMER["pin"]


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


def set_up_and_cancel(client, payer_phone: str, pin: str, payee_phone: str) -> str:
    """One order set up by USSD, then cancelled at once (My standing orders, its PIN); the END
    screen of the set-up (or what refused it)."""
    body = Phone(client, local(payer_phone)).walk(STANDING_ORDERS, "1")
    if body.startswith("END"):
        return body
    body = set_up_to_person(client, payer_phone, pin, payee_phone, 5, runs=1)
    phone = Phone(client, local(payer_phone))
    assert phone.walk(STANDING_ORDERS, "2", "1", "2").startswith("CON Cancel the standing order")
    phone.send("1")
    assert phone.send(pin) == "END Standing order cancelled. The payee is told by SMS."
    return body


def test_setting_up_and_cancelling_orders_in_a_loop_cannot_spam_a_stranger(
    client, config, redis, customer, second_customer
):
    """Each order set up and each one cancelled sends its payee an SMS. The cap on orders
    running stopped nothing once each was cancelled: setting up and cancelling in a loop sent
    a stranger two SMS a loop, without a shilling moving. A payer sets up at most
    STANDING_ORDERS_PER_PAYER orders a day, cancelled or not."""
    config(STANDING_ORDERS_PER_PAYER=3, WEBHOOK_RATE_PER_MINUTE=10_000)
    for _ in range(3):
        redis.delete(*redis.keys("tuma:fraud:*") or ["none"])  # the look-up cool-down: not this test's
        body = set_up_and_cancel(client, CUSTOMER["phone"], PIN, PAYEE)
        assert body.startswith("END Standing order set up.")
    told = len(sms_to(PAYEE))
    assert told == 6
    assert set_up_and_cancel(client, CUSTOMER["phone"], PIN, PAYEE) == (
        "END You have set up 3 standing orders today, the most allowed. Try again tomorrow."
    )
    assert len(sms_to(PAYEE)) == told and len(orders()) == 3


def cancel_by_ussd(client, payer_phone: str, pin: str) -> str:
    phone = Phone(client, local(payer_phone))
    assert phone.walk(STANDING_ORDERS, "2", "1", "2").startswith("CON Cancel the standing order")
    phone.send("1")
    return phone.send(pin)


def pause_by_ussd(client, payer_phone: str) -> str:
    return Phone(client, local(payer_phone)).walk(STANDING_ORDERS, "2", "1", "1")


@pytest.mark.parametrize("stop", ["cancel", "pause"])
def test_a_run_still_queued_when_the_payer_stops_the_order_is_not_paid(
    client, stop, customer, agent, second_customer
):
    """The scheduler recorded today's run; before a worker took it (a backlog at midnight),
    the payer cancelled ("No more payments will be made") or paused the order. The queued run
    is refused by the worker: nothing moves, no fee, no "not paid" SMS (they stopped it)."""
    cash_in(customer, agent)
    d1 = today() + timedelta(days=1)
    order = daily_order(customer, second_customer, d1)
    [recorded] = jobs.run_standing_orders(now=utc(d1, 0, 1))
    if stop == "cancel":
        assert cancel_by_ussd(client, CUSTOMER["phone"], PIN) == (
            "END Standing order cancelled. The payee is told by SMS."
        )
    else:
        assert pause_by_ussd(client, CUSTOMER["phone"]) == "END Paused. No payments until you resume it."
    before, told = available(customer.account_id), len(sms_to(CUSTOMER["phone"]))
    execute()
    [request] = requests_from(customer.account_id)[-1:]
    assert (request.id, request.status) == (recorded, "rejected")
    assert available(customer.account_id) == before and available(second_customer.account_id) == 0
    assert [(r.state, r.attempt) for r in runs()] == [("skipped", 1)]
    assert sms_to(CUSTOMER["phone"])[told:] == []  # they stopped it themselves: nothing to tell
    assert orders()[0].state == ("cancelled" if stop == "cancel" else "paused")
    assert order.id in recorded
    ledger_ok()


def test_an_order_the_tariff_in_force_does_not_price_stops_neither_the_others_nor_the_job(
    runner, customer, agent, second_customer, merchant
):
    """An operator stores a tariff with no entry for buy goods (as one stored before tips has
    none for tips). The scheduler's run then raised for the till's order, rolling back every
    other order's run and failing the whole maintenance job each time (no digests, no stale
    requests re-announced, no SMS retries). That order now waits, unpaid and unmoved, until
    the operator prices it; the others run."""
    from datetime import datetime

    from ussd_app import tariffs

    cash_in(customer, agent)
    d1 = today() + timedelta(days=1)
    till = so.create(
        db.session,
        customer,
        order_id=so.mint_order_id(),
        kind="buy_goods",
        payee_account_id=merchant.account_id,
        amount=100_00,
        frequency="daily",
        first_date=d1,
        runs_limit=2,
    )
    person = daily_order(customer, second_customer, d1)
    document = tariffs.default_document()
    del document["buy_goods"]
    tariffs.add_version(db.session, document, effective_from=datetime(2000, 1, 1), note="no buy goods")
    db.session.commit()

    assert jobs.run_standing_orders(now=utc(d1, 6)) == [f"{person.id}.{d1:%Y%m%d}.a1"]
    assert jobs.maintain()["standing_orders"] == 0  # the job goes on, nothing more to run
    execute()
    assert available(second_customer.account_id) == 150_00 and available(merchant.account_id) == 0
    assert [o.next_date for o in orders() if o.id == till.id] == [d1]  # waits, not skipped

    tariffs.add_version(db.session, tariffs.default_document(), effective_from=datetime(2001, 1, 1))
    db.session.commit()
    assert jobs.run_standing_orders(now=utc(d1, 7)) == [f"{till.id}.{d1:%Y%m%d}.a1"]
    execute()
    assert available(merchant.account_id) > 0
    ledger_ok()


def test_a_refusal_settled_after_midnight_is_skipped_at_once_not_promised_for_a_time_past(
    customer, second_customer
):
    """The worker had a backlog: a run refused on its day is settled only after midnight. The
    payer was promised "we will try again at 23:59" (a time already past, on a day that is
    over), then told it was skipped. One SMS now: skipped."""
    from ussd_app.payments.execute import execute_batch

    d1 = today() + timedelta(days=1)
    d2 = d1 + timedelta(days=1)
    daily_order(customer, second_customer, d1)  # no money: refused
    jobs.run_standing_orders(now=utc(d1, 23, 30))
    execute_batch(db.session, 100)  # the batch; its settle comes after midnight
    told = len(sms_to(CUSTOMER["phone"]))
    assert jobs.settle_standing_orders(now=utc(d2, 0, 5)) == 1
    assert [r.state for r in runs()] == ["skipped"]
    [body] = sms_to(CUSTOMER["phone"])[told:]
    assert body.endswith(
        f"due {d1:%d/%m/%y} not paid. Not enough money. Skipped; next payment {d2:%d/%m/%y}."
    )
    assert jobs.run_standing_orders(now=utc(d2, 0, 6)) == [runs()[0].order_id + f".{d2:%Y%m%d}.a1"]


def test_total_typed_without_a_space_is_answered_as_total_not_as_a_fake_receipt(client, runner):
    """``TOTAL55555`` is ten characters of A-Z and 2-7: the shape of a transaction code. It was
    read as a receipt check and answered "not a Tuma transaction of yours. Do not hand over
    goods or cash...", to someone asking what a cause has received."""
    create_cause(runner)
    asked = "+254712000909"
    for i, text in enumerate(("TOTAL55555", "total55555", "TOTAL 55555")):
        fields = {"from": asked, "to": "22384", "text": text, "id": f"at-attack-total-{i}"}
        assert client.post("/sms/inbound", data=fields).status_code == 200
        assert sms_to(asked)[-1].startswith("Tips and donations to MTOTO FUND (code 55555) since "), text


def test_resuming_a_paused_order_takes_the_pin(client, customer, second_customer):
    """Pausing stops money; resuming starts it again. Anyone holding the payer's phone for a
    minute resumed a paused order (to themselves, say) without the PIN, though setting one up
    and cancelling one both take it."""
    set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 150, runs=3)
    assert pause_by_ussd(client, CUSTOMER["phone"]) == "END Paused. No payments until you resume it."
    phone = Phone(client, local(CUSTOMER["phone"]))
    assert phone.walk(STANDING_ORDERS, "2", "1", "1") == (
        f"CON Resume the standing order to Wanjiru Kamau {PAYEE}? Payments start again.\n"
        "1. Confirm\n2. Cancel"
    )
    assert orders()[0].state == "paused"
    assert phone.send("1") == "CON Enter your PIN to resume the standing order"
    assert phone.send("0000") == "CON Wrong PIN. 2 tries left.\nEnter your PIN to resume the standing order"
    assert orders()[0].state == "paused"
    tomorrow = today() + timedelta(days=1)
    assert phone.send(PIN) == f"END Resumed. Next payment on {tomorrow:%d/%m/%y}."
    assert orders()[0].state == "active"
    # Keeping it paused at the question changes nothing.
    pause_by_ussd(client, CUSTOMER["phone"])
    assert Phone(client, local(CUSTOMER["phone"])).walk(STANDING_ORDERS, "2", "1", "1", "2") == (
        "END Nothing was changed."
    )
    assert orders()[0].state == "paused"


gateway = sms_helpers.gateway  # the fixture: a local Africa's Talking, the SDK pointed at it

BLOCKED = (
    "END For your safety this transfer is blocked: your SIM card was changed recently. "
    "Nothing was sent. Visit a Tuma agent with your ID."
)


def test_a_recent_sim_swap_blocks_an_order_whose_payments_add_up_to_a_large_sum(
    client, gateway, customer, second_customer
):
    """Whoever took over the payer's number (a SIM swap) and learnt the PIN could not send
    more than KES 10,000 at once, but set up KES 9,000 a day for 30 days to themselves: each
    payment under the threshold, none asked about, and the order went on paying long after
    the owner had their number back. The gate now weighs what the order will pay in all."""
    gateway.sim_swaps.swap(CUSTOMER["phone"], days_ago=1)
    assert set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 9000, runs=30) == BLOCKED
    assert orders() == [] and not [b for b in sms_to(PAYEE) if "standing order" in b]
    # A small order (three of KES 150: KES 450 in all) is not asked about.
    assert set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 150, runs=3).startswith(
        "END Standing order set up."
    )
    assert gateway.sim_swaps.checks == 1


def test_an_old_sim_swap_lets_a_large_order_be_set_up(client, gateway, customer, second_customer):
    gateway.sim_swaps.swap(CUSTOMER["phone"], days_ago=5)  # the window is 72 hours
    assert set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 9000, runs=30).startswith(
        "END Standing order set up."
    )
    assert gateway.sim_swaps.checks == 1


def test_what_an_order_pays_in_all_counts_its_runs_or_its_dates(app):
    from datetime import date

    assert so.total("daily", date(2027, 1, 1), 100, runs_limit=999) == 99_900
    assert so.total("daily", date(2027, 1, 1), 100, ends_on=date(2027, 1, 3)) == 300
    assert so.total("weekly", date(2027, 1, 1), 100, ends_on=date(2027, 1, 14)) == 200
    # The 31st, on the last day of shorter months: 31/01, 28/02, 31/03, 30/04.
    assert so.total("monthly", date(2027, 1, 31), 100, ends_on=date(2027, 4, 30)) == 400
    assert so.total("daily", date(2027, 1, 1), 100, ends_on=date(2028, 12, 31)) == 100 * 731


def test_run_due_at_the_ends_of_the_calendar_is_a_clear_error(runner):
    """An instant the time zone pushes past year 9999 (or before year 1) crashed with an
    OverflowError traceback; it is refused like any instant that cannot be read."""
    for at in ("9999-12-31T23:59:59", "0001-01-01T00:00:00+05:00"):
        result = runner.invoke(args=["standing-orders", "run-due", "--at", at])
        assert result.exit_code == 2, (at, result.output)
        assert f"out of the calendar's range: {at}" in result.output


def test_the_silent_tip_threshold_is_inclusive_and_its_end_screen_says_so(client, runner, customer, agent):
    """Exactly KES 100 (the default TIP_SILENT_MAX_MAJOR) is silent for both sides and its END
    screen says no SMS comes; KES 101 gets its receipts and a screen that promises one: the
    screen and the worker never disagree at the edge."""
    from tests.test_tips import CAUSE_PHONE, tip

    cash_in(customer, agent)
    create_cause(runner)
    assert tip(client, "100").endswith("No SMS for small tips: see My account.")
    jobs.execute_transfers()
    assert sms_to(CAUSE_PHONE) == [] and not [b for b in sms_to(CUSTOMER["phone"]) if "MTOTO" in b]
    assert tip(client, "101").endswith("You will receive an SMS confirmation shortly.")
    jobs.execute_transfers()
    assert len(sms_to(CAUSE_PHONE)) == 1 and len([b for b in sms_to(CUSTOMER["phone"]) if "MTOTO" in b]) == 1
    ledger_ok()


def test_orders_the_tariff_does_not_price_never_crowd_out_the_others(
    customer, agent, second_customer, merchant
):
    """The scheduler takes the due orders oldest first, a batch at a time: orders that wait for
    a price must not fill every batch, or no other order would ever run."""
    from datetime import datetime

    from ussd_app import tariffs

    cash_in(customer, agent)
    d1 = today() + timedelta(days=1)
    d2 = d1 + timedelta(days=1)
    so.create(
        db.session,
        customer,
        order_id=so.mint_order_id(),
        kind="buy_goods",
        payee_account_id=merchant.account_id,
        amount=100_00,
        frequency="daily",
        first_date=d1,  # older: first in the batch
        runs_limit=2,
    )
    person = daily_order(customer, second_customer, d2)
    document = tariffs.default_document()
    del document["buy_goods"]
    tariffs.add_version(db.session, document, effective_from=datetime(2000, 1, 1), note="no buy goods")
    db.session.commit()
    recorded = so.run_due(db.session, now=utc(d2, 6), limit=1)  # a batch of one
    db.session.commit()
    assert [r.id for r in recorded] == [f"{person.id}.{d2:%Y%m%d}.a1"]


def test_two_set_ups_at_once_never_pass_the_cap_together(backend_app):
    """Two sessions of one payer confirm their PIN at the same instant with room for one more
    order: each counted the orders running before the other wrote its own, and both were set
    up (on PostgreSQL). The payer's row is locked while counting: one is set up."""
    from tests.escrow_helpers import at_once
    from tests.ussd_helpers import person

    most = backend_app.config["STANDING_ORDERS_PER_PAYER"]
    backend_app.config["STANDING_ORDERS_PER_PAYER"] = 1  # the app is shared: put back below
    payer = person(**CUSTOMER)
    payee = person(**SECOND_CUSTOMER)
    payer_id, payee_account = payer.id, payee.account_id
    first = today() + timedelta(days=1)

    def set_up():
        from ussd_app.users import User

        try:
            so.create(
                db.session,
                db.session.get(User, payer_id),
                order_id=so.mint_order_id(),
                kind="send",
                payee_account_id=payee_account,
                amount=150_00,
                frequency="daily",
                first_date=first,
                runs_limit=3,
            )
            db.session.commit()
            return "set up"
        except so.OrderError:
            db.session.rollback()
            return "refused"

    try:
        outcomes = at_once(backend_app, set_up, set_up, set_up)
    finally:
        backend_app.config["STANDING_ORDERS_PER_PAYER"] = most
    assert sorted(outcomes) == ["refused", "refused", "set up"]
    assert len(orders()) == 1
