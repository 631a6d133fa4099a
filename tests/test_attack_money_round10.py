"""Money attacks, round 10: holds, their expiry and the paths less travelled."""

import pytest
from sqlalchemy import select

from tests.escrow_helpers import FUNDS, PIN, cash_in, house, later, ledger_ok
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind
from ussd_app.payments.models import HoldState, RequestKind, RequestStatus, TransferRequest
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from worker import jobs

FEE = quote("send", 500_00)
NEWCOMER = "+254712000999"


@pytest.fixture
def juma(customer, agent):
    return cash_in(customer, agent)


def confirm_send_to_unregistered(client) -> None:
    """The cast's customer sends KES 500 to 0712000999 (not on Tuma): recorded, not executed."""
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000999", "1", "500", "1")
    assert phone.send(PIN).startswith("END Sending KES 500.00 to +254712000999.")


def the_hold() -> TransferRequest:
    db.session.expire_all()
    hold = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.SEND_UNREGISTERED.value)
    ).scalar_one()
    db.session.commit()
    return hold


def test_a_send_held_after_its_number_registered_reaches_the_new_customer(client, juma):
    """The number registers while the send to it is still queued (a backlog, a review hold):
    registration finds no accepted hold to post, and the worker then holds the money in
    suspense for a registered customer. It must still reach them, not sit in suspense for
    7 days and go back to the sender."""
    confirm_send_to_unregistered(client)
    body = Phone(client, "0712000999").walk("1", "Akinyi", "Odhiambo", "2468", "2468")
    assert body.startswith("END Welcome to Tuma, Akinyi!")
    for _ in range(3):  # the hold's batch, and whatever follows it
        jobs.execute_transfers()
    akinyi = find_by_phone(db.session, NEWCOMER).account_id
    hold = the_hold()
    assert hold.status == RequestStatus.ACCEPTED.value
    assert available(akinyi) == 500_00, "the registered recipient never got the money"
    assert hold.hold_state == HoldState.POSTED.value
    assert house(AccountKind.SUSPENSE).credits_pending == 0
    assert available(juma) == FUNDS - 500_00 - FEE
    ledger_ok()
    # Nothing falls due later: the money is the recipient's, not refunded to the sender.
    assert jobs.resolve_due_holds(now=later(8)) == 0
    assert available(akinyi) == 500_00
    assert available(juma) == FUNDS - 500_00 - FEE


def test_the_maintenance_job_posts_a_held_send_whose_number_is_registered(client, juma, runner):
    """A customer created outside the registration menu (``flask accounts create``), or a
    batch's job that died after its commit: the maintenance job finds the held send."""
    confirm_send_to_unregistered(client)
    assert jobs.execute_transfers() == 1
    result = runner.invoke(
        args=["accounts", "create", "--phone", NEWCOMER, "--name", "Akinyi Odhiambo", "--role", "customer",
              "--pin", "2468"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    jobs.maintain()
    jobs.execute_transfers()
    akinyi = find_by_phone(db.session, NEWCOMER).account_id
    assert available(akinyi) == 500_00
    assert the_hold().hold_state == HoldState.POSTED.value
    assert house(AccountKind.SUSPENSE).credits_pending == 0
    ledger_ok()
