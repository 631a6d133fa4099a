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


# -- item 9: only mobiles of our own country receive, are invited or get airtime -------------

NOT_OURS = ["+14155552671", "+255712345678", "+254202222222", "0800720000"]
REFUSED = "Only mobile numbers starting +254 can be used."


def outbox_phones() -> set[str]:
    from ussd_app.sms.outbox import OutboxMessage

    db.session.expire_all()
    phones_ = set(db.session.execute(db.select(OutboxMessage.phone)).scalars())
    db.session.commit()
    return phones_


def requests_recorded() -> int:
    db.session.expire_all()
    n = db.session.query(TransferRequest).count()
    db.session.commit()
    return n


@pytest.mark.parametrize("number", NOT_OURS)
def test_send_money_refuses_numbers_that_can_never_register(client, number):
    funded_customer()
    before, sms_before = requests_recorded(), outbox_phones()
    phone = Phone(client, "0712000111")
    phone.walk("1")
    body = phone.send(number)
    assert body == f"CON {REFUSED}\nSend money\nEnter the recipient's phone number"
    # Nothing was offered ("Send anyway"), recorded or sent; a good number still goes on.
    assert requests_recorded() == before and outbox_phones() == sms_before
    assert phone.send("0712000999").startswith("CON +254712000999 is not on Tuma. Send anyway?")


@pytest.mark.parametrize("number", NOT_OURS)
def test_airtime_refuses_foreign_and_landline_numbers(client, number):
    funded_customer()
    phone = Phone(client, "0712000111")
    phone.walk("7")
    assert phone.send("2") == "CON Enter the phone number to top up"
    assert phone.send(number) == f"CON {REFUSED}\nEnter the phone number to top up"
    assert phone.send("0712000999") == "CON Airtime for +254712000999\nEnter amount"


def test_kiswahili_says_it_in_kiswahili(client):
    funded_customer()
    juma = find_by_phone(db.session, JUMA)
    juma.language = "sw"
    db.session.commit()
    phone = Phone(client, "0712000111")
    phone.walk("1")
    assert phone.send("+14155552671").startswith(
        "CON Nambari za simu za mkononi zinazoanza na +254 pekee ndizo zinatumika."
    )


AGENT, MERCHANT = "+254700000101", "+254700000002"
NUMBER_SCREENS = [
    (JUMA, ["4"], "Withdraw cash\nEnter the agent's phone number"),
    (JUMA, ["8"], "Request money\nEnter number 1, or # to finish"),
    (MERCHANT, ["5"], "Request payment\nEnter the customer's phone number"),
    (AGENT, ["1"], "Deposit\nEnter the customer's phone number"),
    (AGENT, ["5"], "Register customer\nEnter their phone number"),
    (AGENT, ["6"], "Unlock PIN\nEnter the customer's phone number"),
    (AGENT, ["9"], "Withdraw for a customer\nEnter the customer's phone number"),
]


@pytest.mark.parametrize(
    "who,path,prompt", NUMBER_SCREENS, ids=[p.split("\n")[0] for _, _, p in NUMBER_SCREENS]
)
def test_every_number_screen_refuses_numbers_that_are_not_our_mobiles(client, who, path, prompt):
    funded_customer()  # Juma, and the agent Ali
    merchant = person(MERCHANT, "Mama Mboga", pin="2222", role="merchant")
    assert merchant.role == "merchant"
    before, sms_before = requests_recorded(), outbox_phones()
    phone = Phone(client, who)
    assert phone.walk(*path) == f"CON {prompt}"
    for number in NOT_OURS:
        assert phone.send(number) == f"CON {REFUSED}\n{prompt}", number
    assert requests_recorded() == before and outbox_phones() == sms_before


def test_the_cli_opens_no_account_for_a_number_that_is_not_our_mobile(runner):
    for number in NOT_OURS:
        result = runner.invoke(
            args=[
                "accounts",
                "create",
                "--phone",
                number,
                "--name",
                "Far Away",
                "--role",
                "customer",
                "--pin",
                "1234",
            ]
        )
        assert result.exit_code != 0 and "not a mobile number of KE (+254)" in result.output, result.output
        assert find_by_phone(db.session, number if number.startswith("+") else "+254800720000") is None
