"""Reversal of a wrong send: the sender asks (My account > Reverse a transaction, or SMS
``REVERSE <code>``) within 24 h; the recipient's funds for it are held (a PENDING transfer
recipient -> sender); the recipient agrees in My approvals or the operator decides (posted back
to the sender), or refuses, or the hold lapses after 72 h (voided). Every outcome SMSes both
parties; each resolves exactly once, races included; at most one open reversal per send."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import (
    FUNDS,
    PIN,
    at_once,
    cash_in,
    later,
    ledger_ok,
    posted_send,
    resolutions,
    sms_to,
    the_request,
)
from tests.ussd_helpers import SECOND_CUSTOMER, Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import Transfer, TransferFlags
from ussd_app.payments import reversals
from ussd_app.payments.models import HoldState, RequestKind, RequestStatus, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from ussd_app.ussd import approvals
from worker import jobs

JUMA, WANJIRU = "+254712000111", "+254712000222"
WANJIRU_PIN = SECOND_CUSTOMER["pin"]
FEE = quote("send", 500_00)


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


@pytest.fixture
def wanjiru(second_customer):
    return second_customer.account_id


@pytest.fixture
def sent(juma, wanjiru) -> TransferRequest:
    """Juma sent KES 500 to Wanjiru by mistake."""
    return posted_send(juma, wanjiru)


def ask_by_ussd(client, code: str) -> str:
    phone = Phone(client, "0712000111")
    phone.dial()
    assert phone.send("2").endswith("5. Reverse a transaction")
    assert phone.send("5") == "CON Reverse a transaction\nEnter the transaction code from the SMS"
    confirm = phone.send(code.lower())
    if not confirm.startswith("CON Reverse KES"):
        return confirm
    assert confirm.startswith(f"CON Reverse KES 500.00 sent to Wanjiru Kamau {WANJIRU} on ")
    assert confirm.endswith("? They must agree.\n1. Confirm\n2. Cancel")
    assert phone.send("1") == f"CON Enter your PIN to reverse {code}"
    done = phone.send(PIN)
    assert phone.repeat() == done  # a retried request records nothing twice
    return done


def the_hold() -> TransferRequest:
    return the_request(RequestKind.REVERSAL)


def held(client, sent) -> TransferRequest:
    assert ask_by_ussd(client, sent.code) == (
        f"END Reversal of {sent.code} requested. Wanjiru Kamau is asked to agree. You will get an SMS."
    )
    assert jobs.execute_transfers() == 1
    hold = the_hold()
    assert (hold.status, hold.hold_state, hold.reference) == ("accepted", "pending", sent.code)
    return hold


def wanjiru_decides(client, choice: str, code: str) -> str:
    phone = Phone(client, "0712000222")
    summary = f"{code}: return KES 500.00 to Juma Otieno"
    assert phone.walk("3") == f"CON Waiting for your approval:\n1. {summary}"
    assert phone.send("1") == f"CON {summary}\n1. Approve\n2. Decline"
    phone.send(choice)
    return phone.send(WANJIRU_PIN)


def test_the_recipient_agrees_and_the_money_goes_back(client, sent, juma, wanjiru):
    hold = held(client, sent)
    # Held, not moved: Wanjiru's available balance drops, Juma's does not rise yet.
    assert available(wanjiru) == 0
    assert available(juma) == FUNDS - 500_00 - FEE
    pending = db.session.get(Transfer, hold.id)
    assert pending.flags & TransferFlags.PENDING and pending.debit_account_id == wanjiru
    assert sms_to(WANJIRU)[-1] == (
        f"{hold.code} JUMA OTIENO {JUMA} asks you to return KES 500.00 ({sent.code}). "
        "Held until you decide in My approvals, at most 3 days."
    )
    assert sms_to(JUMA)[-1] == (
        f"{hold.code} KES 500.00 you sent to WANJIRU KAMAU {WANJIRU} ({sent.code}) is held for "
        "your reversal until they agree, at most 3 days."
    )
    ledger_ok()

    assert wanjiru_decides(client, "1", sent.code) == "END Approved. You will receive an SMS confirmation."
    assert jobs.execute_transfers() == 1
    assert available(wanjiru) == 0
    assert available(juma) == FUNDS - FEE  # the fee is not reversed
    assert "KES 500.00 (" + sent.code + ") returned to JUMA OTIENO" in sms_to(WANJIRU)[-1]
    assert f"KES 500.00 ({sent.code}) reversed to you from WANJIRU KAMAU" in sms_to(JUMA)[-1]
    assert "New balance is KES 9,9" in sms_to(JUMA)[-1]
    assert the_hold().hold_state == HoldState.POSTED.value
    assert resolutions(hold.id) == 1
    assert jobs.resolve_due_holds(now=later(4)) == 0
    assert Phone(client, "0712000222").walk("3") == "END Nothing is waiting for your approval."
    # Decided: not again.
    assert ask_by_ussd(client, sent.code) == f"END A reversal of {sent.code} was already decided."
    ledger_ok()


def test_the_recipient_refuses_and_the_hold_is_voided(client, sent, juma, wanjiru):
    hold = held(client, sent)
    assert wanjiru_decides(client, "2", sent.code) == "END Declined."
    assert jobs.execute_transfers() == 1
    assert available(wanjiru) == 500_00
    assert available(juma) == FUNDS - 500_00 - FEE
    assert sms_to(JUMA)[-1].endswith(
        f"Reversal of {sent.code} refused or not answered: KES 500.00 stays with "
        f"WANJIRU KAMAU {WANJIRU}. Call customer care."
    )
    assert f"The KES 500.00 held for the reversal of {sent.code} is yours again" in sms_to(WANJIRU)[-1]
    assert the_hold().hold_state == HoldState.VOIDED.value
    assert resolutions(hold.id) == 1
    ledger_ok()


def test_the_hold_lapses_once_after_72_hours(app, client, sent, juma, wanjiru):
    hold = held(client, sent)
    assert jobs.resolve_due_holds(now=later(2.9)) == 0
    when = later(3.01)
    assert sorted(at_once(app, *[lambda: jobs.resolve_due_holds(now=when)] * 2)) == [0, 1]
    assert available(wanjiru) == 500_00
    assert resolutions(hold.id) == 1
    assert sum("refused or not answered" in b for b in sms_to(JUMA)) == 1
    assert sum("is yours again" in b for b in sms_to(WANJIRU)) == 1
    assert Phone(client, "0712000222").walk("3") == "END Nothing is waiting for your approval."
    ledger_ok()


def test_agreeing_while_the_hold_lapses_resolves_it_once(app, client, sent, juma, wanjiru):
    hold_id = held(client, sent).id
    when = later(4)

    def agree():
        user = find_by_phone(db.session, WANJIRU)
        done = approvals.decide(db.session, user, f"reversal:{hold_id}", approve=True)
        db.session.commit()
        return "agreed" if done else "gone"

    def lapse():
        return "lapsed" if jobs.resolve_due_holds(now=when) else "nothing"

    results = at_once(app, agree, lapse)
    assert results in (["agreed", "nothing"], ["gone", "lapsed"]), results
    jobs.execute_transfers()
    assert resolutions(hold_id) == 1
    agreed = results[0] == "agreed"
    assert available(juma) == FUNDS - FEE - (0 if agreed else 500_00)
    assert available(wanjiru) == (0 if agreed else 500_00)
    ledger_ok()


def test_who_when_and_how_often(app, client, sent, juma, wanjiru):
    # Only the sender: Wanjiru cannot reverse what she received.
    phone = Phone(client, "0712000222")
    assert phone.walk("2", "5", sent.code) == (
        f"CON {sent.code} is not a transaction you sent.\n"
        "Reverse a transaction\nEnter the transaction code from the SMS"
    )
    assert phone.send("12345").startswith("CON A transaction code has 10 letters and digits.")
    # One open reversal at a time.
    held(client, sent)
    assert (
        ask_by_ussd(client, sent.code)
        == f"END A reversal of {sent.code} is already waiting for Wanjiru Kamau."
    )
    # ... the database says so too, whoever asks.
    with pytest.raises(IntegrityError):
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.REVERSAL.value,
            debit_account_id=wanjiru,
            credit_account_id=juma,
            amount=500_00,
            reference=sent.code,
            hold_seconds=60,
        )
    db.session.rollback()


def test_older_than_24_hours_is_refused(app, client, sent):
    db.session.execute(
        update(TransferRequest)
        .where(TransferRequest.id == sent.id)
        .values(executed_at=sent.executed_at - timedelta(hours=24, minutes=1))
    )
    db.session.commit()
    assert ask_by_ussd(client, sent.code) == (
        f"END {sent.code} is more than 24 hours old and cannot be reversed here. Call customer care."
    )


def test_refused_when_the_recipient_no_longer_has_the_funds(app, client, sent, juma, wanjiru):
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=wanjiru,
        credit_account_id=juma,
        amount=450_00,
    )
    db.session.commit()
    jobs.execute_transfers()
    assert ask_by_ussd(client, sent.code) == (
        "END Wanjiru Kamau no longer has the KES 500.00 you sent, so it cannot be reversed. "
        "Call customer care."
    )
    assert jobs.execute_transfers() == 0


def test_the_ledger_refuses_the_hold_when_the_funds_went_meanwhile(app, client, sent, juma, wanjiru):
    """Checked when asked; spent before the worker made the hold: the ledger refuses it and
    the sender is told. A refused reversal does not block a new one."""
    outcome, _ = reversals.start(db.session, find_by_phone(db.session, JUMA), sent.code, mint_request_id())
    assert outcome == "ok"
    db.session.commit()
    # Wanjiru spends it in a send the worker executes before the hold (requests run in order).
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=wanjiru,
        credit_account_id=juma,
        amount=450_00,
    )
    db.session.commit()
    hold = the_hold()
    db.session.execute(
        update(TransferRequest)
        .where(TransferRequest.id == hold.id)
        .values(created_at=hold.created_at + timedelta(seconds=5))
    )
    db.session.commit()
    assert jobs.execute_transfers() == 2
    hold = the_hold()
    assert (hold.status, hold.result) == (RequestStatus.REJECTED.value, "exceeds_credits")
    assert sms_to(JUMA)[-1] == (
        f"{hold.code} Failed: WANJIRU KAMAU {WANJIRU} no longer has the KES 500.00 you sent ({sent.code}). "
        "Please call customer care."
    )
    assert not any(hold.code in b for b in sms_to(WANJIRU))
    assert reversals.check(db.session, find_by_phone(db.session, JUMA), sent.code)[0] == reversals.SHORT
    ledger_ok()


def test_two_requests_at_once_open_one_reversal(app, sent):
    code = sent.code

    def ask():
        juma = find_by_phone(db.session, JUMA)
        outcome, _ = reversals.start(db.session, juma, code, mint_request_id())
        db.session.commit()
        return outcome

    assert sorted(at_once(app, ask, ask)) == ["ok", "open"]
    db.session.expire_all()
    count = db.session.execute(
        select(func.count()).where(TransferRequest.kind == RequestKind.REVERSAL.value)
    ).scalar_one()
    assert count == 1


# -- by SMS ---------------------------------------------------------------------------------

_ids = iter(range(1, 1_000_000))


def text_us(client, phone, body):
    fields = {"from": phone, "to": "22384", "text": body, "id": f"at-rev-{next(_ids)}"}
    response = client.post("/sms/inbound", data=fields)
    assert response.status_code == 200
    return sms_to(phone)[-1]


def test_reverse_by_sms_holds_the_funds_and_kiswahili_reads_kiswahili(client, sent, juma, wanjiru):
    user = find_by_phone(db.session, WANJIRU)
    user.language = "sw"
    db.session.commit()
    # Only the sender: the recipient is told so (not warned of a fake receipt).
    assert text_us(client, WANJIRU, f"REVERSE {sent.code}").startswith(
        f"Ni mtumaji pekee anayeweza kuomba {sent.code}"
    )
    assert text_us(client, JUMA, f"reverse {sent.code.lower()}") == (
        f"Received: your request to reverse {sent.code}, KES 500.00 sent to WANJIRU KAMAU {WANJIRU}. "
        "They are asked to agree; we will SMS you."
    )
    assert jobs.execute_transfers() == 1
    hold = the_hold()
    assert sms_to(WANJIRU)[-1].startswith(
        f"{hold.code} Rudisha KES 500.00 ({sent.code}) kwa JUMA OTIENO {JUMA}?"
    )
    assert Phone(client, "0712000222").walk("3") == (
        f"CON Zinasubiri idhini yako:\n1. {sent.code}: rudisha KES 500.00 kwa Juma Otieno"
    )
    assert text_us(client, JUMA, f"REVERSE {sent.code}") == (
        f"A reversal of {sent.code} is already waiting for WANJIRU KAMAU {WANJIRU}."
    )
    ledger_ok()


# -- the operator ---------------------------------------------------------------------------


@pytest.mark.parametrize("approve", [True, False])
def test_the_operator_decides_from_the_back_office(client, sent, juma, wanjiru, approve):
    hold = held(client, sent)
    operator()
    login(client)
    page = client.get("/admin/disputes").get_data(as_text=True)
    assert f"Juma Otieno {JUMA} asks Wanjiru Kamau {WANJIRU}" in page and "KES 500.00" in page
    decision = "approve" if approve else "refuse"
    post(client, f"/admin/disputes/reversals/{hold.id}", {"decision": decision, "note": "checked"})
    assert resolutions(hold.id) == 1
    assert available(juma) == FUNDS - FEE - (0 if approve else 500_00)
    assert available(wanjiru) == (0 if approve else 500_00)
    assert ("reversed to you" if approve else "refused or not answered") in sms_to(JUMA)[-1]
    assert ("returned to JUMA OTIENO" if approve else "is yours again") in sms_to(WANJIRU)[-1]
    assert "Nothing awaits a decision." in client.get("/admin/disputes").get_data(as_text=True)
    # Deciding again is refused, and nothing moves.
    post(client, f"/admin/disputes/reversals/{hold.id}", {"decision": "approve"})
    assert resolutions(hold.id) == 1
    assert Phone(client, "0712000222").walk("3") == "END Nothing is waiting for your approval."
    ledger_ok()
