"""Issue 15, items 6, 7, 9 and 16: limits a receiver or a locked sender could get round, and
numbers that can never be customers. Through the real webhooks, with the real worker job."""

import pytest

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import funded_customer, ledger_ok, sms_to
from tests.ussd_helpers import Phone, person
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from worker import jobs

JUMA, AMINA = "+254712000111", "+254712000222"
PIN, AMINA_PIN = "8642", "9753"

_ids = iter(range(1, 1_000_000))


def text_us(client, phone, body) -> str:
    fields = {"from": phone, "to": "22384", "text": body, "id": f"at-limits-{next(_ids)}"}
    response = client.post("/sms/inbound", data=fields)
    assert response.status_code == 200
    return sms_to(phone)[-1]


def count(kind: RequestKind) -> int:
    db.session.expire_all()
    n = db.session.query(TransferRequest).filter(TransferRequest.kind == kind.value).count()
    db.session.commit()
    return n


# -- item 7: a locked account starts nothing by SMS ------------------------------------------


def lock_by_wrong_pins(client):
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "100", "1")
    phone.send("0000")
    phone.send("0000")
    assert phone.send("0000").startswith("END Your PIN is locked")


def lock_by_operator(client):
    operator()
    login(client)
    juma = find_by_phone(db.session, JUMA)
    response = post(client, f"/admin/accounts/{juma.id}/lock", {"reason": "reported stolen"})
    assert response.status_code == 302


@pytest.mark.parametrize("lock", [lock_by_wrong_pins, lock_by_operator], ids=["pin", "operator"])
def test_a_locked_sender_cannot_reverse_by_sms_and_is_told_why(client, lock):
    juma = funded_customer()
    amina = person(AMINA, "Amina Hassan", pin=AMINA_PIN).account_id
    sent = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=juma,
        credit_account_id=amina,
        amount=500_00,
        fee=quote("send", 500_00),
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1
    lock(client)
    reply = text_us(client, JUMA, f"REVERSE {sent.code}")
    assert reply == (
        "Your Tuma account is locked, so we cannot start a reversal. Ask an agent or customer care "
        "to unlock it, then try again."
    )
    assert count(RequestKind.REVERSAL) == 0
    assert jobs.execute_transfers() == 0
    assert not [b for b in sms_to(AMINA) if "asks you to return" in b]
    ledger_ok()
