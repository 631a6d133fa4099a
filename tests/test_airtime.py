"""Airtime: the money is held (PENDING to the airtime clearing account), a worker job asks
Africa's Talking through the SDK (against the local gateway's airtime endpoint), posts the
hold when the airtime was sent, voids it with an SMS when it was refused; a failed call is
asked again later with the same idempotency key; each purchase resolves once."""

import pytest
from sqlalchemy import select

from tests.escrow_helpers import (
    FUNDS,
    PIN,
    at_once,
    cash_in,
    house,
    ledger_ok,
    resolutions,
    sms_to,
    the_request,
)
from tests.sms_helpers import gateway  # noqa: F401  (a fixture)
from tests.ussd_helpers import SECOND_CUSTOMER, Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind
from ussd_app.payments.holds import resolution_id
from ussd_app.payments.models import HoldState, RequestKind, TransferRequest, transaction_code
from worker import jobs

JUMA = "+254712000111"


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def buy(client, *, other: str | None = None, amount="100") -> TransferRequest:
    phone = Phone(client, "0712000111")
    phone.dial()
    assert phone.send("7") == "CON Buy airtime\n1. For my number\n2. For another number"
    if other:
        assert phone.send("2") == "CON Enter the phone number to top up"
        target = phone.send(other)
    else:
        target = phone.send("1")
    number = other and "+254" + other[1:] or JUMA
    assert target == f"CON Airtime for {number}\nEnter amount"
    assert phone.send(amount) == f"CON Buy KES {amount}.00 of airtime for {number}?\n1. Confirm\n2. Cancel"
    assert phone.send("1") == f"CON Enter your PIN to buy KES {amount}.00 of airtime"
    done = phone.send(PIN)
    assert done == f"END Buying KES {amount}.00 of airtime for {number}. You will receive an SMS."
    assert phone.repeat() == done
    assert jobs.execute_transfers() == 1
    return the_request(RequestKind.AIRTIME)


def test_airtime_for_myself_is_held_then_posted_when_sent(client, juma, gateway):  # noqa: F811
    hold = buy(client)
    assert available(juma) == FUNDS - 100_00
    assert house(AccountKind.AIRTIME_CLEARING).credits_pending == 100_00
    assert jobs.buy_airtime() == {"sent": 1, "failed": 0, "retry": 0}
    assert [(s["phoneNumber"], s["amount"], s["key"]) for s in gateway.airtime.sent] == [
        (JUMA, "KES 100", hold.id)
    ]
    clearing = house(AccountKind.AIRTIME_CLEARING)
    assert (clearing.credits_pending, clearing.credits_posted) == (0, 100_00)
    assert available(juma) == FUNDS - 100_00
    code = transaction_code(resolution_id(hold.id))  # the resolution's receipt
    assert sms_to(JUMA)[-1].startswith(f"{code} Confirmed. You bought KES 100.00 of airtime for {JUMA} on ")
    # Safe to run again: nothing is asked twice.
    assert jobs.buy_airtime() == {"sent": 0, "failed": 0, "retry": 0}
    assert gateway.airtime.calls == 1 and resolutions(hold.id) == 1
    ledger_ok()


def test_a_refused_top_up_is_voided_and_the_customer_told(client, juma, gateway):  # noqa: F811
    gateway.airtime.fail("+254799000111")
    hold = buy(client, other="0799000111", amount="250")
    assert jobs.buy_airtime() == {"sent": 0, "failed": 1, "retry": 0}
    assert available(juma) == FUNDS
    assert house(AccountKind.AIRTIME_CLEARING).credits_posted == 0
    assert sms_to(JUMA)[-1].startswith(
        f"{transaction_code(resolution_id(hold.id))} Failed: KES 250.00 airtime for +254799000111 "
        "not bought; the money is back on "
    )
    db.session.expire_all()
    assert db.session.get(TransferRequest, hold.id).hold_state == HoldState.VOIDED.value
    ledger_ok()


def test_a_gateway_error_is_asked_again_later_with_the_same_key(app, client, juma, gateway):  # noqa: F811
    gateway.airtime.fail_next(1, http_status=500)
    hold = buy(client)
    assert jobs.buy_airtime() == {"sent": 0, "failed": 0, "retry": 1}
    assert available(juma) == FUNDS - 100_00  # still held
    assert jobs.buy_airtime() == {"sent": 0, "failed": 0, "retry": 0}  # not yet due again
    app.config["AIRTIME_RETRY_SECONDS"] = 0
    try:
        assert jobs.buy_airtime() == {"sent": 1, "failed": 0, "retry": 0}
    finally:
        app.config["AIRTIME_RETRY_SECONDS"] = 60
    assert len(gateway.airtime.sent) == 1 and resolutions(hold.id) == 1
    ledger_ok()


def test_two_jobs_at_once_buy_it_once(app, client, juma, gateway):  # noqa: F811
    hold = buy(client)
    app.config["AIRTIME_RETRY_SECONDS"] = 0  # the second job even retries the first's claim
    try:
        results = at_once(app, jobs.buy_airtime, jobs.buy_airtime)
    finally:
        app.config["AIRTIME_RETRY_SECONDS"] = 60
    assert sum(r["sent"] for r in results) == 1
    assert len(gateway.airtime.sent) == 1  # the idempotency key: sent once however often asked
    assert resolutions(hold.id) == 1
    assert available(juma) == FUNDS - 100_00
    ledger_ok()


def test_amounts_outside_the_range_and_more_than_the_balance(client, second_customer):
    phone = Phone(client, "0712000222")  # nothing in her wallet
    assert phone.walk("7", "1", "5").startswith("CON You can buy airtime from KES 10.00 to KES 10,000.00.")
    phone.send("50")
    phone.send("1")
    assert phone.send(SECOND_CUSTOMER["pin"]) == (
        "END Not enough money to buy KES 50.00 of airtime. Your balance is KES 0.00."
    )
    assert jobs.execute_transfers() == 0


def test_airtime_spends_from_the_daily_limit(app, client, juma, gateway):  # noqa: F811
    from ussd_app import limits

    saved = app.config["LIMITS_BASIC_MAJOR"]
    app.config["LIMITS_BASIC_MAJOR"] = "70000,150,100000"  # a daily limit of KES 150
    try:
        first = buy(client, amount="100")
        assert first.status == "accepted"
        assert limits.left_today(db.session, juma, "basic") == 50_00
        second = Phone(client, "0712000111")
        # Said before the PIN (the worker's check behind it is tested in test_limits.py).
        assert second.walk("7", "1", "100") == (
            "CON Over your daily limit of KES 150.00: KES 50.00 left today, fees included.\n"
            "Airtime for +254712000111\nEnter amount"
        )
        jobs.execute_transfers()
        db.session.expire_all()
        others = db.session.execute(
            select(TransferRequest).where(
                TransferRequest.kind == RequestKind.AIRTIME.value, TransferRequest.id != first.id
            )
        ).all()
        assert others == []
        db.session.commit()
    finally:
        app.config["LIMITS_BASIC_MAJOR"] = saved
