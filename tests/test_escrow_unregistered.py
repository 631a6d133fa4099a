"""Sending to a number that is not on Tuma: the money is held in suspense (a PENDING
transfer), the number gets an SMS inviting it to register; it is posted to them when they register
and voided back to the sender when the hold falls due (7 days by default), each with an SMS,
exactly once even with two expiry jobs at the same time."""

import pytest
from sqlalchemy import func, select

from tests.escrow_helpers import FUNDS, PIN, at_once, cash_in, house, later, ledger_ok, sms_to
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, Transfer, TransferFlags
from ussd_app.payments.models import HoldState, RequestKind, RequestStatus, TransferRequest
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from worker import jobs

FEE = quote("send", 500_00)


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def send_to_unregistered(client) -> TransferRequest:
    phone = Phone(client, "0712000111")
    phone.dial()
    phone.send("1")
    offer = phone.send("0712000999")
    assert offer == (
        "CON +254712000999 is not on Tuma. Send anyway? They get an SMS to register; "
        "if not in 7 days it comes back.\n1. Send anyway\n2. Cancel"
    )
    assert phone.send("1") == "CON Send to +254712000999\nEnter amount"
    phone.send("500")
    phone.send("1")
    assert phone.send(PIN).startswith("END Sending KES 500.00 to +254712000999.")
    assert jobs.execute_transfers() == 1
    db.session.expire_all()
    return db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.SEND_UNREGISTERED.value)
    ).scalar_one()


def test_money_is_held_in_suspense_and_the_number_is_invited(client, juma):
    hold = send_to_unregistered(client)
    assert hold.status == RequestStatus.ACCEPTED.value and hold.hold_state == HoldState.PENDING.value
    assert available(juma) == FUNDS - 500_00 - FEE
    suspense = house(AccountKind.SUSPENSE)
    assert suspense.credits_pending == 500_00 and suspense.credits_posted == 0
    transfer = db.session.get(Transfer, hold.id)
    assert transfer.flags & TransferFlags.PENDING and transfer.timeout == 0
    sender_sms = sms_to("+254712000111")[-1]
    assert f"{hold.code} Confirmed. KES 500.00 sent to +254712000999" in sender_sms
    assert (
        "held until they register with Tuma; if they do not within 7 days it comes back to you." in sender_sms
    )
    [invite] = sms_to("+254712000999")
    assert invite == (
        "JUMA OTIENO +254712000111 sent you KES 500.00 on Tuma. Dial *384*7# within 7 days to register "
        "and receive it."
    )
    ledger_ok()


def test_registering_posts_the_money_to_the_new_customer(client, juma):
    hold = send_to_unregistered(client)
    body = Phone(client, "0712000999").walk("1", "Akinyi", "Odhiambo", "2468", "2468")
    assert body.startswith("END Welcome to Tuma, Akinyi!")
    assert jobs.execute_transfers() == 1
    akinyi = find_by_phone(db.session, "+254712000999").account_id
    assert available(akinyi) == 500_00
    assert available(juma) == FUNDS - 500_00 - FEE
    suspense = house(AccountKind.SUSPENSE)
    assert suspense.credits_pending == 0 and suspense.credits_posted == suspense.debits_posted == 500_00
    assert (
        "AKINYI ODHIAMBO +254712000999 registered and received the KES 500.00" in sms_to("+254712000111")[-1]
    )
    assert "You have received KES 500.00 from JUMA OTIENO +254712000111" in sms_to("+254712000999")[-1]
    ledger_ok()
    # Nothing is left to expire: the refund never comes.
    assert jobs.resolve_due_holds(now=later(8)) == 0
    assert available(juma) == FUNDS - 500_00 - FEE
    db.session.expire_all()
    assert db.session.get(TransferRequest, hold.id).hold_state == HoldState.POSTED.value


def test_unclaimed_money_is_refunded_after_the_hold_once(client, juma):
    hold = send_to_unregistered(client)
    assert jobs.resolve_due_holds(now=later(6.9)) == 0  # not yet
    assert jobs.resolve_due_holds(now=later(7.01)) == 1
    assert jobs.resolve_due_holds(now=later(7.02)) == 0  # a second run does nothing
    assert available(juma) == FUNDS - FEE  # the fee paid for the send is not refunded
    assert house(AccountKind.SUSPENSE).credits_pending == 0
    refund = sms_to("+254712000111")[-1]
    assert "KES 500.00 you sent to +254712000999 was not collected: it is back on " in refund
    db.session.expire_all()
    assert db.session.get(TransferRequest, hold.id).hold_state == HoldState.VOIDED.value
    ledger_ok()
    # Registering afterwards brings nothing: the money went back.
    Phone(client, "0712000999").walk("1", "Akinyi", "Odhiambo", "2468", "2468")
    assert jobs.execute_transfers() == 0
    assert available(find_by_phone(db.session, "+254712000999").account_id) == 0


def test_two_expiry_jobs_at_once_void_once(app, client, juma):
    send_to_unregistered(client)
    when = later(8)
    results = at_once(app, lambda: jobs.resolve_due_holds(now=when), lambda: jobs.resolve_due_holds(now=when))
    assert sorted(results) == [0, 1]
    assert available(juma) == FUNDS - FEE
    voids = db.session.execute(
        select(func.count()).where(TransferRequest.kind == RequestKind.SUSPENSE_VOID.value)
    ).scalar_one()
    assert voids == 1
    assert sum("was not collected" in b for b in sms_to("+254712000111")) == 1
    ledger_ok()
