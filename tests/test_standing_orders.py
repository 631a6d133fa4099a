"""Standing orders pay on a schedule with the PIN given once (issue 18 item 3): each run is an
ordinary transfer (fee, limits, receipts) whose id derives from the order and the run's date,
so running the scheduler twice for one instant pays once; a run the money is not there for
costs nothing, is tried once more later that day, then skipped, the payer told once each time;
the payee hears when an order to them starts and ends. ``ledger check`` passes throughout."""

from datetime import date, timedelta

import pytest

from tests.escrow_helpers import at_once, cash_in, house, ledger_ok, merchant, posted_send, sms_to
from tests.standing_order_helpers import (
    instant,
    orders,
    requests_from,
    runs,
    set_up_to_person,
    today,
    utc,
)
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, available
from tests.worker_helpers import run_burst_worker
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind
from ussd_app.messages import standing_orders as texts
from ussd_app.payments import standing_orders as so
from ussd_app.payments.models import RequestStatus
from ussd_app.users import OPERATOR_LOCK_UNTIL
from worker import jobs

PIN = CUSTOMER["pin"]
PAYEE = SECOND_CUSTOMER["phone"]
AMOUNT = 150_00  # KES 150: the send tariff's fee is KES 7
FEE = 7_00


@pytest.fixture
def payer(customer, agent):
    cash_in(customer, agent)  # KES 10,000
    return customer


def run_due(runner, at: str) -> str:
    """The scheduler at ``at`` (days ahead: ``--future``, as the clock cannot be moved)."""
    result = runner.invoke(args=["standing-orders", "run-due", "--at", at, "--future"])
    assert result.exit_code == 0, result.output
    return result.output


def execute() -> None:
    """The worker's job: the batch, then the standing orders' runs settled (worker/jobs.py)."""
    jobs.execute_transfers()
    db.session.expire_all()


def fees() -> int:
    return house(AccountKind.FEES).credits_posted


def test_a_daily_order_run_twice_at_one_instant_pays_once(client, runner, payer, second_customer):
    assert set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 150, runs=3).startswith(
        "END Standing order set up."
    )
    [order] = orders()
    day = today() + timedelta(days=1)
    assert (order.state, order.next_date, order.runs_limit) == ("active", day, 3)
    before = available(payer.account_id)

    first = run_due(runner, instant(day))
    assert f"recorded {order.id}.{day:%Y%m%d}.a1 " in first
    assert first.endswith("1 standing order run(s) recorded\n")
    assert run_due(runner, instant(day)) == "0 standing order run(s) recorded\n"
    assert jobs.run_standing_orders(now=utc(day)) == []  # the maintenance job's call: nothing more
    assert run_due(runner, instant(day, 23, 59)) == "0 standing order run(s) recorded\n"  # same day

    run_burst_worker()  # the real worker: maintenance (nothing due today), then the batch

    [request] = requests_from(payer.account_id)
    assert (request.id, request.kind, request.status) == (f"{order.id}.{day:%Y%m%d}.a1", "send", "accepted")
    assert (request.amount, request.fee) == (AMOUNT, FEE)
    assert available(payer.account_id) == before - AMOUNT - FEE
    assert available(second_customer.account_id) == AMOUNT
    [run] = runs()
    assert (run.state, run.attempt) == ("paid", 1)
    # The ordinary receipts, one per party, as if typed by hand.
    assert sms_to(CUSTOMER["phone"])[-1].endswith(
        "Transaction cost, KES 7.00. Amount you can transact within the day is KES 149,843.00."
    )
    assert "You have received KES 150.00 from JUMA OTIENO" in sms_to(PAYEE)[-1]
    ledger_ok()
    check = runner.invoke(args=["ledger", "check"])
    assert check.exit_code == 0 and "ledger check passed" in check.output


def test_two_schedulers_at_one_instant_record_one_run(app, payer, second_customer):
    first = today() + timedelta(days=1)
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="daily",
        first_date=first,
        runs_limit=5,
    )
    db.session.commit()
    now = utc(first, 6)
    recorded = at_once(app, *[lambda: jobs.run_standing_orders(now=now)] * 3)
    assert sorted(len(r) for r in recorded) == [0, 0, 1]
    execute()
    assert [r.id for r in requests_from(payer.account_id)] == [f"{order.id}.{first:%Y%m%d}.a1"]
    assert available(second_customer.account_id) == AMOUNT
    ledger_ok()


def test_daily_runs_over_several_days_then_it_ends_and_the_payee_is_told(
    client, runner, payer, second_customer
):
    set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 150, runs=3)
    [order] = orders()
    first = today() + timedelta(days=1)
    started = sms_to(PAYEE)
    assert started == [
        f"JUMA OTIENO {CUSTOMER['phone']} set up a standing order to pay you KES 150.00 every day, "
        f"first on {first:%d/%m/%y}."
    ]
    assert sms_to(CUSTOMER["phone"])[-1] == (
        f"Standing order set up: KES 150.00 every day to WANJIRU KAMAU, first on {first:%d/%m/%y}, "
        "3 payments. Fee KES 7.00 each. Dial *384*7# to change it."
    )
    for n in range(4):
        run_due(runner, instant(first + timedelta(days=n), 7))
        execute()
    assert available(second_customer.account_id) == 3 * AMOUNT
    assert [r.run_date for r in runs()] == [first + timedelta(days=n) for n in range(3)]
    assert all(r.state == "paid" for r in runs())
    [order] = orders()
    assert (order.state, order.next_date, order.runs_made) == ("finished", None, 3)
    last = first + timedelta(days=2)
    assert (
        f"The standing order from JUMA OTIENO {CUSTOMER['phone']} paying you KES 150.00 every day has "
        f"ended; its last date was {last:%d/%m/%y}."
    ) in sms_to(PAYEE)
    assert (
        f"Your standing order of KES 150.00 every day to WANJIRU KAMAU has ended; its last date was "
        f"{last:%d/%m/%y}."
    ) in sms_to(CUSTOMER["phone"])
    ledger_ok()


def _next_31st(start: date) -> date:
    day = start
    while day.day != 31:
        day += timedelta(days=1)
    return day


def test_monthly_on_the_31st_pays_on_the_last_day_of_shorter_months(app, payer, second_customer):
    assert so.following("monthly", date(2027, 1, 31), date(2027, 1, 31)) == date(2027, 2, 28)
    assert so.following("monthly", date(2027, 1, 31), date(2027, 2, 28)) == date(2027, 3, 31)
    assert so.following("monthly", date(2027, 1, 31), date(2027, 3, 31)) == date(2027, 4, 30)
    assert so.following("monthly", date(2028, 1, 31), date(2028, 1, 31)) == date(2028, 2, 29)  # leap
    assert so.following("monthly", date(2027, 12, 31), date(2027, 12, 31)) == date(2028, 1, 31)
    assert so.on_or_after("weekly", date(2027, 1, 6), date(2027, 1, 7)) == date(2027, 1, 13)

    first = _next_31st(today())
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="monthly",
        first_date=first,
        runs_limit=4,
    )
    db.session.commit()
    paid_on = []
    day = first
    while len(paid_on) < 4:
        assert jobs.run_standing_orders(now=utc(day - timedelta(days=1), 23)) == []  # not yet: the eve
        [recorded] = jobs.run_standing_orders(now=utc(day, 0, 1))  # due from midnight, Nairobi time
        paid_on.append(recorded.rsplit(".", 2)[1])
        execute()
        day = so.following("monthly", first, day)
    assert paid_on == [f"{d:%Y%m%d}" for d in (r.run_date for r in runs())]
    assert runs()[0].run_date.day == 31 and {r.run_date.day for r in runs()} & {28, 29, 30}
    for run in runs():  # each on the last day of its month, or the 31st
        last = (run.run_date.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert run.run_date == last
    assert available(second_customer.account_id) == 4 * AMOUNT
    assert orders()[0].state == "finished" and order.id == orders()[0].id
    ledger_ok()


def test_no_money_costs_nothing_is_tried_once_more_that_day_then_skipped(
    client, runner, customer, agent, second_customer
):
    cash_in(customer, agent)  # KES 10,000: the first day's KES 6,000 is paid, the second's is not
    set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 6000, runs=3)
    [order] = orders()
    d1, d2, d3 = (today() + timedelta(days=n) for n in (1, 2, 3))
    run_due(runner, instant(d1, 6))
    execute()
    assert available(second_customer.account_id) == 6000_00
    before, fees_before, told = available(customer.account_id), fees(), len(sms_to(CUSTOMER["phone"]))

    # The second day: not enough money. Nothing posts (no fee), one SMS, a retry at 10:00.
    run_due(runner, instant(d2, 6))
    execute()
    [request] = [r for r in requests_from(customer.account_id) if r.id.endswith(f"{d2:%Y%m%d}.a1")]
    assert (request.status, request.result) == (RequestStatus.REJECTED.value, "exceeds_credits")
    assert available(customer.account_id) == before and fees() == fees_before
    assert sms_to(CUSTOMER["phone"])[told:] == [
        f"{request.code} Standing order: KES 6,000.00 to WANJIRU KAMAU due {d2:%d/%m/%y} not paid. "
        "Not enough money. We will try again at 10:00. No fee."
    ]
    assert runs()[-1].state == "retry"
    assert run_due(runner, instant(d2, 9, 59)) == "0 standing order run(s) recorded\n"

    # The retry: refused again, so the run is skipped and the payer told, once.
    assert f"{order.id}.{d2:%Y%m%d}.a2" in run_due(runner, instant(d2, 10))
    assert run_due(runner, instant(d2, 10)) == "0 standing order run(s) recorded\n"
    execute()
    retried = requests_from(customer.account_id)[-1]
    assert (retried.id, retried.status) == (f"{order.id}.{d2:%Y%m%d}.a2", "rejected")
    assert available(customer.account_id) == before and fees() == fees_before
    assert sms_to(CUSTOMER["phone"])[told + 1 :] == [
        f"{retried.code} Standing order: KES 6,000.00 to WANJIRU KAMAU due {d2:%d/%m/%y} not paid. "
        f"Not enough money. Skipped; next payment {d3:%d/%m/%y}."
    ]
    assert [r.state for r in runs()] == ["paid", "skipped"]
    assert run_due(runner, instant(d2, 23)) == "0 standing order run(s) recorded\n"  # never a third try
    assert not [body for body in sms_to(CUSTOMER["phone"]) if "Failed" in body]  # no second SMS each
    ledger_ok()

    # Money comes back; the third day is paid as scheduled.
    posted_send(second_customer.account_id, customer.account_id, 5900_00)
    run_due(runner, instant(d3))
    execute()
    assert [r.state for r in runs()] == ["paid", "skipped", "paid"]
    assert orders()[0].state == "finished"
    ledger_ok()


def test_a_limit_refusal_is_told_once_and_costs_nothing(client, runner, config, payer, second_customer):
    set_up_to_person(client, CUSTOMER["phone"], PIN, PAYEE, 150, runs=2)
    config(LIMITS_BASIC_MAJOR="70000,100,100000")  # a daily limit of KES 100 from now on
    d1 = today() + timedelta(days=1)
    told, fees_before = len(sms_to(CUSTOMER["phone"])), fees()
    run_due(runner, instant(d1, 21))
    execute()
    [request] = requests_from(payer.account_id)
    assert (request.status, request.result) == ("rejected", "limit_daily_exceeded")
    assert sms_to(CUSTOMER["phone"])[told:] == [
        f"{request.code} Standing order: KES 150.00 to WANJIRU KAMAU due {d1:%d/%m/%y} not paid. "
        "Over your daily limit. We will try again at 23:59. No fee."
    ]
    assert fees() == fees_before
    ledger_ok()


def test_the_retry_waits_the_setting_but_never_past_the_days_end(app, config):
    day = date(2027, 3, 1)
    assert so.retry_at(utc(day, 6)) == utc(day, 10)  # four hours by default
    config(STANDING_ORDER_RETRY_SECONDS=3600)
    assert so.retry_at(utc(day, 6)) == utc(day, 7)
    assert so.retry_at(utc(day, 23, 30)) == utc(day, 23, 59)
    assert so.retry_at(utc(day, 23, 59)) is None  # no time left that day: skipped at once


def test_pause_skips_the_dates_that_pass_and_resume_goes_on(app, payer, second_customer):
    first = today() + timedelta(days=1)
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="daily",
        first_date=first,
        ends_on=first + timedelta(days=10),
    )
    assert so.pause(db.session, payer, order.id) and not so.pause(db.session, payer, order.id)
    db.session.commit()
    assert jobs.run_standing_orders(now=utc(first + timedelta(days=2))) == []  # paused: nothing
    assert so.resume(db.session, payer, order.id, now=utc(first + timedelta(days=2)))
    db.session.commit()
    [recorded] = jobs.run_standing_orders(now=utc(first + timedelta(days=2)))
    assert recorded.endswith(f"{first + timedelta(days=2):%Y%m%d}.a1")  # the days paused are not paid
    assert so.cancel(db.session, payer, order.id) and not so.cancel(db.session, payer, order.id)
    db.session.commit()
    assert jobs.run_standing_orders(now=utc(first + timedelta(days=3))) == []
    assert sms_to(PAYEE)[-1] == (
        f"JUMA OTIENO {CUSTOMER['phone']} cancelled the standing order paying you KES 150.00 every day."
    )


def test_a_payer_locked_by_tuma_pays_nothing_and_a_pin_lock_stops_nothing(app, payer, second_customer):
    first = today() + timedelta(days=1)
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="daily",
        first_date=first,
        runs_limit=2,
    )
    payer.locked_until = OPERATOR_LOCK_UNTIL
    db.session.commit()
    assert jobs.run_standing_orders(now=utc(first)) == []
    assert [(r.state, r.result, r.transfer_request_id) for r in runs()] == [("skipped", "payer_locked", None)]
    payer.locked_until = utc(first, 12)  # wrong PINs: a day's lock
    db.session.commit()
    [recorded] = jobs.run_standing_orders(now=utc(first + timedelta(days=1)))
    execute()
    assert recorded == f"{order.id}.{first + timedelta(days=1):%Y%m%d}.a1"
    assert available(second_customer.account_id) == AMOUNT
    ledger_ok()


# Whose lock stops a standing order is ``pin_guard.is_operator_locked``'s answer, the one rule
# every other place asks (the USSD menus, SMS commands, the worker's check_batch): Tuma's lock
# (OPERATOR_LOCK_UNTIL, never reached by wrong PINs) and nothing short of it.
LOCKS = {
    "none": (None, False),
    "wrong PINs": (timedelta(hours=6), False),
    "a second short of Tuma's lock": (OPERATOR_LOCK_UNTIL - timedelta(seconds=1), False),
    "Tuma's lock": (OPERATOR_LOCK_UNTIL, True),
}


def lock(user, how, day: date) -> None:
    until = LOCKS[how][0]
    user.locked_until = utc(day) + until if isinstance(until, timedelta) else until
    db.session.commit()


@pytest.mark.parametrize("how", LOCKS)
def test_only_tumas_lock_skips_a_run(app, payer, second_customer, how):
    first = today() + timedelta(days=1)
    so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="daily",
        first_date=first,
        runs_limit=1,
    )
    lock(payer, how, first)
    recorded = jobs.run_standing_orders(now=utc(first))
    execute()
    if LOCKS[how][1]:
        assert recorded == [] and [(r.state, r.result) for r in runs()] == [("skipped", "payer_locked")]
    else:
        assert len(recorded) == 1 and [r.state for r in runs()] == ["paid"]
        assert available(second_customer.account_id) == AMOUNT


@pytest.mark.parametrize("how", LOCKS)
def test_only_tumas_lock_skips_the_retry_of_a_refused_run(app, customer, second_customer, how):
    first = today() + timedelta(days=1)
    order = so.create(
        db.session,
        customer,  # no money: the first attempt is refused, the retry is at 10:00
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="daily",
        first_date=first,
        runs_limit=1,
    )
    db.session.commit()
    assert len(jobs.run_standing_orders(now=utc(first))) == 1
    execute()
    assert [r.state for r in runs()] == ["retry"]
    lock(customer, how, first)
    recorded = jobs.run_standing_orders(now=utc(first, 10))
    if LOCKS[how][1]:
        assert recorded == [] and [r.state for r in runs()] == ["skipped"]
    else:
        assert recorded == [f"{order.id}.{first:%Y%m%d}.a2"]


def test_a_till_order_pays_as_buy_goods_with_its_receipts(app, payer):
    shop = merchant()
    first = today()
    so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="buy_goods",
        payee_account_id=shop,
        amount=AMOUNT,
        frequency="weekly",
        first_date=first,
        runs_limit=1,
    )
    db.session.commit()
    [recorded] = jobs.run_standing_orders()  # the maintenance job's call, with now
    execute()
    [request] = requests_from(payer.account_id)
    assert (request.id, request.kind, request.status, request.fee) == (recorded, "buy_goods", "accepted", 0)
    assert request.payee_fee == 75  # the merchant's own fee, as for a payment typed by hand
    assert available(shop) == AMOUNT - 75
    told = sms_to("+254700000002")
    assert "set up a standing order to pay you KES 150.00 every week" in told[0]
    assert any("KES 150.00 from JUMA OTIENO" in body and "Fee KES 0.75" in body for body in told)
    ledger_ok()


def test_run_due_refuses_what_is_not_an_instant(runner, app):
    result = runner.invoke(args=["standing-orders", "run-due", "--at", "tomorrow"])
    assert result.exit_code != 0 and "not an ISO-8601 instant" in result.output


def test_an_order_is_not_set_up_for_the_past_nor_to_oneself(app, payer, second_customer):
    base = dict(order_id=so.mint_order_id(), kind="send", amount=AMOUNT, frequency="daily", runs_limit=2)
    with pytest.raises(so.OrderError):
        so.create(
            db.session,
            payer,
            payee_account_id=second_customer.account_id,
            first_date=today() - timedelta(days=1),
            **base,
        )
    with pytest.raises(so.OrderError):
        so.create(db.session, payer, payee_account_id=payer.account_id, first_date=today(), **base)
    with pytest.raises(so.OrderError):
        so.create(
            db.session,
            payer,
            payee_account_id=second_customer.account_id,
            first_date=today(),
            **{**base, "frequency": "hourly"},
        )


def test_every_word_the_sms_fill_in_has_its_kiswahili_and_fits(app):
    from ussd_app.i18n import catalog

    sw = catalog("sw", "sms")
    for english in [*texts.OFTEN.values(), *texts.WHY.values(), texts.WHY_OTHER]:
        assert english in sw, english
    assert max(len(w) for w in [*texts.OFTEN.values(), *(sw[w] for w in texts.OFTEN.values())]) <= 11
    words = [*texts.WHY.values(), texts.WHY_OTHER]
    assert max(len(w) for w in [*words, *(sw[w] for w in words)]) <= 30


def test_a_last_run_refused_at_the_days_end_is_skipped_at_once_and_the_order_ends(
    app, payer, second_customer
):
    first = today() + timedelta(days=1)
    so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=20_000_00,  # more than the payer's KES 10,000
        frequency="weekly",
        first_date=first,
        runs_limit=1,
    )
    db.session.commit()
    told = len(sms_to(CUSTOMER["phone"]))
    [recorded] = jobs.run_standing_orders(now=utc(first, 23, 59))  # no time left that day to retry
    execute()
    [request] = requests_from(payer.account_id)
    assert sms_to(CUSTOMER["phone"])[told:] == [  # one SMS: it says it was the last
        f"{request.code} Standing order: KES 20,000.00 to WANJIRU KAMAU due {first:%d/%m/%y} not paid. "
        "Not enough money. Skipped; it was the last."
    ]
    assert sms_to(PAYEE)[-1] == (
        f"The standing order from JUMA OTIENO {CUSTOMER['phone']} paying you KES 20,000.00 every week has "
        f"ended; its last date was {first:%d/%m/%y}."
    )
    assert [(r.state, r.attempt) for r in runs()] == [("skipped", 1)] and recorded == request.id
    assert jobs.run_standing_orders(now=utc(first + timedelta(days=7))) == []
    ledger_ok()


def test_an_order_whose_end_date_passed_while_paused_ends_when_resumed(app, payer, second_customer):
    first = today() + timedelta(days=1)
    order = so.create(
        db.session,
        payer,
        order_id=so.mint_order_id(),
        kind="send",
        payee_account_id=second_customer.account_id,
        amount=AMOUNT,
        frequency="weekly",
        first_date=first,
        ends_on=first + timedelta(days=3),
    )
    assert so.pause(db.session, payer, order.id)
    db.session.commit()
    assert so.resume(db.session, payer, order.id, now=utc(first + timedelta(days=4)))
    db.session.commit()
    [order] = orders()
    assert (order.state, order.next_date) == ("finished", None)
    assert sms_to(PAYEE)[-1] == (
        f"The standing order from JUMA OTIENO {CUSTOMER['phone']} paying you KES 150.00 every week has "
        f"ended; its last date was {first + timedelta(days=3):%d/%m/%y}."
    )
    assert jobs.run_standing_orders(now=utc(first + timedelta(days=7))) == []
