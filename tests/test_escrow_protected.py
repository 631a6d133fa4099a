"""Protected purchases: Buy goods with protection holds the money for the merchant (a
PENDING transfer, no ledger timeout); the buyer confirms delivery in My approvals (posted),
or the hold falls due (posted), or the buyer disputes and the operator decides
(`flask disputes decide`). Each resolves exactly once, races included."""

import pytest

from tests.escrow_helpers import (
    FUNDS,
    PIN,
    at_once,
    buy_protected,
    cash_in,
    house,
    later,
    ledger_ok,
    resolutions,
    sms_to,
)
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind
from ussd_app.payments import holds
from ussd_app.payments.models import HoldState, RequestKind, TransferRequest
from ussd_app.users import find_by_phone
from worker import jobs

MERCHANT_FEE = 1_50  # the merchant's 0.5% of KES 300, charged when the hold is paid to them


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


@pytest.fixture
def till(merchant):
    return merchant.account_id


def test_the_money_is_held_and_posted_when_the_buyer_confirms_delivery(client, juma, till):
    hold = buy_protected(client)
    assert available(juma) == FUNDS - 300_00
    assert available(till) == 0
    assert "KES 300.00 held for MAMA MBOGA till 123456" in sms_to("+254712000111")[-1]
    [held] = sms_to("+254700000002")
    assert f"{hold.code} Held, not paid yet: KES 300.00 from JUMA OTIENO +254712000111." in held
    ledger_ok()

    phone = Phone(client, "0712000111")
    assert phone.walk("3") == (
        "CON Waiting for your approval:\n1. Confirm delivery: KES 300.00 to Mama Mboga"
    )
    assert (
        phone.send("1") == "CON Confirm delivery: KES 300.00 to Mama Mboga\n1. Approve\n2. Report a problem"
    )
    phone.send("1")
    assert phone.send(PIN) == "END Approved. You will receive an SMS confirmation."
    assert jobs.execute_transfers() == 1
    assert available(till) == 300_00 - MERCHANT_FEE
    assert available(juma) == FUNDS - 300_00
    assert "KES 300.00 from JUMA OTIENO +254712000111 released to you" in sms_to("+254700000002")[-1]
    assert "KES 300.00 released to MAMA MBOGA" in sms_to("+254712000111")[-1]
    assert resolutions(hold.id) == 1
    ledger_ok()
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."
    assert jobs.resolve_due_holds(now=later(4)) == 0


def test_the_hold_is_paid_to_the_merchant_when_it_falls_due(client, juma, till):
    hold = buy_protected(client)
    assert jobs.resolve_due_holds(now=later(2.9)) == 0
    assert jobs.resolve_due_holds(now=later(3.01)) == 1
    assert jobs.resolve_due_holds(now=later(3.02)) == 0
    assert available(till) == 300_00 - MERCHANT_FEE
    assert "released to you" in sms_to("+254700000002")[-1]
    assert resolutions(hold.id) == 1
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."
    ledger_ok()


def test_confirming_delivery_and_the_hold_falling_due_at_once_resolve_it_once(app, client, juma, till):
    hold = buy_protected(client)
    hold_id = hold.id  # read here: the threads must not touch this session's objects
    when = later(4)

    def confirm():
        user = find_by_phone(db.session, "+254712000111")
        recorded = holds.resolve(
            db.session, db.session.get(TransferRequest, hold_id), RequestKind.PROTECTED_POST
        )
        db.session.commit()
        return "confirmed" if recorded is not None and user is not None else "gone"

    def expire():
        return "expired" if jobs.resolve_due_holds(now=when) else "nothing"

    results = at_once(app, confirm, expire)
    assert results in (["confirmed", "nothing"], ["gone", "expired"]), results
    jobs.execute_transfers()
    assert available(till) == 300_00 - MERCHANT_FEE
    assert resolutions(hold_id) == 1
    assert sum("released to you" in b for b in sms_to("+254700000002")) == 1
    ledger_ok()


def test_two_expiry_jobs_at_once_post_once(app, client, juma, till):
    hold = buy_protected(client)
    when = later(4)
    results = at_once(app, lambda: jobs.resolve_due_holds(now=when), lambda: jobs.resolve_due_holds(now=when))
    assert sorted(results) == [0, 1]
    assert available(till) == 300_00 - MERCHANT_FEE
    assert resolutions(hold.id) == 1
    ledger_ok()


def test_a_dispute_keeps_the_money_held_until_the_operator_decides(client, runner, juma, till):
    hold = buy_protected(client)
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "2")
    assert (
        phone.send(PIN)
        == "END Problem reported. The money stays held until Tuma decides. You will get an SMS."
    )
    assert f"{hold.code} Dispute opened for KES 300.00 (MAMA MBOGA)." in sms_to("+254712000111")[-1]
    assert f"{hold.code} Dispute opened for KES 300.00 (JUMA OTIENO)." in sms_to("+254700000002")[-1]
    assert jobs.resolve_due_holds(now=later(10)) == 0  # a disputed hold is never posted when it falls due
    assert house(AccountKind.MERCHANT if False else AccountKind.SUSPENSE).credits_pending == 0
    assert available(till) == 0

    result = runner.invoke(args=["disputes", "list"])
    assert hold.code in result.output
    result = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "buyer"])
    assert result.exit_code == 0, result.output
    assert available(juma) == FUNDS
    assert available(till) == 0
    assert "Dispute decided for you: KES 300.00 is back in your account" in sms_to("+254712000111")[-1]
    assert "Dispute decided for the buyer: KES 300.00 from JUMA OTIENO" in sms_to("+254700000002")[-1]
    db.session.expire_all()
    assert db.session.get(TransferRequest, hold.id).hold_state == HoldState.VOIDED.value
    # Deciding again is refused: the hold resolved once.
    again = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "merchant"])
    assert again.exit_code != 0 and "not in dispute" in again.output
    assert resolutions(hold.id) == 1
    ledger_ok()


def test_the_operator_may_decide_for_the_merchant(client, runner, juma, till):
    hold = buy_protected(client)
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "2", PIN)
    result = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "merchant"])
    assert result.exit_code == 0, result.output
    assert available(till) == 300_00 - MERCHANT_FEE
    ledger_ok()


def test_the_mini_statement_marks_money_in_escrow_until_it_is_posted(client, juma, till):
    hold = buy_protected(client)
    statement = Phone(client, "0712000111").walk("2", "2", PIN)
    [line] = [x for x in statement.splitlines() if hold.code in x]
    assert line.endswith("-KES 300.00 Mama Mboga (held)")
    merchant = Phone(client, "0700000002").walk("2", "2222")
    assert any(hold.code in x and x.endswith("(held)") for x in merchant.splitlines()), merchant

    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "1")
    phone.send(PIN)
    jobs.execute_transfers()
    statement = Phone(client, "0712000111").walk("2", "2", PIN)
    assert hold.code in statement and "(held)" not in statement
