"""Checking a receipt by SMS tells where the money really stands (issue 15 item 14): a code
whose money is held, disputed, refunded or reversed is never answered "completed", and the
genuine recipient who texts ``REVERSE <code>`` is told who can reverse, not warned of a fake."""

import itertools
from datetime import timedelta

import pytest

from tests.escrow_helpers import PIN, cash_in, later, sms_to, the_request
from tests.ussd_helpers import Phone
from ussd_app.extensions import db
from ussd_app.messages import when
from ussd_app.payments.models import RequestKind
from ussd_app.payments.submit import mint_request_id, record_request
from worker import jobs

JUMA, WANJIRU, MERCHANT = "+254712000111", "+254712000222", "+254700000002"
_ids = itertools.count(1)


def text_us(client, phone: str, body: str) -> str:
    """Text us as ``phone``; our reply (the newest SMS to that phone)."""
    fields = {"from": phone, "to": "22384", "text": body, "id": f"at-state-{next(_ids)}"}
    assert client.post("/sms/inbound", data=fields).status_code == 200
    return sms_to(phone)[-1]


def status_of(client, phone: str, code: str) -> str:
    reply = text_us(client, phone, code)
    assert reply.startswith(f"{code} is genuine: "), reply
    return reply.split("Status: ", 1)[1]


def due_date(request, days: int) -> str:
    return when(request.executed_at + timedelta(days=days))[0]


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def test_a_protected_purchase_is_held_then_disputed_then_refunded(client, runner, juma, merchant):
    phone = Phone(client, "0712000111")
    phone.walk("5", "123456", "300", "3")
    assert phone.send(PIN).startswith("END ")
    assert jobs.execute_transfers() == 1
    hold = the_request(RequestKind.PROTECTED_PURCHASE)
    days = -(-hold.hold_seconds // 86_400)
    # The merchant checking the buyer's receipt must not hand over goods for "completed".
    assert status_of(client, MERCHANT, hold.code) == f"held until {due_date(hold, days)}, not final."

    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "2")
    assert phone.send(PIN).startswith("END ")
    assert status_of(client, MERCHANT, hold.code) == "disputed, held until Tuma decides."

    result = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "buyer"])
    assert result.exit_code == 0, result.output
    assert status_of(client, MERCHANT, hold.code) == "refunded to the sender."
    assert status_of(client, JUMA, hold.code) == "refunded to the sender."


def test_a_send_held_for_reversal_then_reversed(client, juma, second_customer):
    wanjiru = second_customer
    send = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=juma,
        credit_account_id=wanjiru.account_id,
        amount=500_00,
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1
    code = send.code
    assert status_of(client, WANJIRU, code) == "completed."

    # The genuine recipient asking to reverse is told who can, not warned of a fake receipt.
    assert text_us(client, WANJIRU, f"REVERSE {code}") == (
        f"Only the sender can ask to reverse {code}. To return money you received, use Send money."
    )
    assert text_us(client, JUMA, f"REVERSE {code}").startswith(f"Received: your request to reverse {code}")
    assert jobs.execute_transfers() == 1
    hold = the_request(RequestKind.REVERSAL)
    assert status_of(client, WANJIRU, code) == f"held for a reversal until {due_date(hold, 3)}."

    phone = Phone(client, "0712000222")
    phone.walk("3", "1", "1")
    assert phone.send("9753").startswith("END ")
    assert status_of(client, JUMA, code) == "being reversed."  # recorded, not yet posted
    assert jobs.execute_transfers() == 1
    assert status_of(client, JUMA, code) == "reversed."
    assert status_of(client, WANJIRU, code) == "reversed."
    assert status_of(client, JUMA, hold.code) == "reversed."


def test_money_in_suspense_is_held_then_refunded(client, juma):
    send = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND_UNREGISTERED.value,
        debit_account_id=juma,
        credit_account_id=_suspense(),
        amount=200_00,
        reference="+254712000999",
        hold_seconds=7 * 86_400,  # as Send money records it (SUSPENSE_HOLD_SECONDS)
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1
    hold = the_request(RequestKind.SEND_UNREGISTERED)
    assert status_of(client, JUMA, hold.code) == f"held until {due_date(hold, 7)}, not final."
    assert jobs.resolve_due_holds(now=later(8)) == 1
    assert status_of(client, JUMA, send.code) == "refunded to the sender."


def test_kiswahili_reads_the_state_in_kiswahili(client, juma, second_customer):
    wanjiru = second_customer
    wanjiru.language = "sw"
    send = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=juma,
        credit_account_id=wanjiru.account_id,
        amount=500_00,
    )
    db.session.commit()
    jobs.execute_transfers()
    assert text_us(client, WANJIRU, f"REVERSE {send.code}") == (
        f"Ni mtumaji pekee anayeweza kuomba {send.code} irudishwe. "
        "Kurudisha pesa ulizopokea, tumia Tuma pesa."
    )


def _suspense() -> int:
    from ussd_app.payments.holds import suspense_account_id

    return suspense_account_id(db.session)
