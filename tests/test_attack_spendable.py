"""An outsider's attacks on what the PIN hop says a payer may spend (commit c7b87b0,
``submit.spendable_statement``: the available balance less the payer's requests still queued):
the figure subtracted must be what the ledger will take from that payer, for every kind, and
every flow that records a payment after a PIN must use it. Both databases (``backend_app``)."""

import pytest
from flask import current_app
from sqlalchemy import select

from tests.escrow_helpers import at_once
from tests.helpers import fund
from tests.test_attack_pin_hop import PIN
from tests.ussd_helpers import AGENT, CUSTOMER, MERCHANT, SECOND_CUSTOMER, Phone, available, person
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments import holds
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote
from ussd_app.users import create_user
from worker.jobs import execute_transfers

BALANCE = 500_000  # KES 5,000
STRANGER = "+254712000333"


@pytest.fixture
def cast(backend_app):
    """Juma (KES 5,000) and Wanjiru, customers, on SQLite and on PostgreSQL."""
    with backend_app.app_context():
        juma = person(CUSTOMER["phone"], CUSTOMER["name"], pin=PIN)
        wanjiru = person(SECOND_CUSTOMER["phone"], SECOND_CUSTOMER["name"], pin=PIN)
        fund(juma.account_id, BALANCE)
        current_app.config.update(NAME_CANCEL_LIMIT=100)
        yield backend_app, juma, wanjiru


def send_pin(app, amount: str) -> str:
    """Juma sends ``amount`` (major units) to Wanjiru by USSD: the PIN hop's answer."""
    phone = Phone(app.test_client(), "0712000111")
    assert "Enter your PIN" in phone.walk("1", "0712000222", amount, "1")
    return phone.send(PIN)


def recorded(**order) -> TransferRequest:
    request = record_request(db.session, request_id=mint_request_id(), **order)
    db.session.commit()
    return request


def executed(**order) -> TransferRequest:
    request = recorded(**order)
    execute_transfers()
    db.session.expire_all()
    return db.session.get(TransferRequest, request.id)


def suspense_post_queued(juma, wanjiru) -> None:
    """Juma's KES 2,000 held for a number not on Tuma; the number registers: the post of the
    hold is recorded (queued) and the worker has not run. The hold is already in Juma's
    debits_pending: the post takes nothing more from him."""
    hold = executed(
        kind=RequestKind.SEND_UNREGISTERED.value,
        debit_account_id=juma.account_id,
        credit_account_id=holds.suspense_account_id(db.session),
        amount=2_000_00,
        fee=quote("send", 2_000_00),
        reference=STRANGER,
        hold_seconds=3600,
    )
    assert hold.status == "accepted"
    newcomer = create_user(db.session, phone=STRANGER, name="Baraka", role="customer", pin=PIN)
    assert len(holds.post_to_new_customer(db.session, newcomer)) == 1
    db.session.commit()


def protected_post_queued(juma, wanjiru) -> None:
    """Juma's KES 2,000 protected purchase from Wanjiru held; he confirms delivery: the post is
    recorded (queued). The hold is already in his debits_pending."""
    hold = executed(
        kind=RequestKind.PROTECTED_PURCHASE.value,
        debit_account_id=juma.account_id,
        credit_account_id=wanjiru.account_id,
        amount=2_000_00,
        hold_seconds=3600,
    )
    assert hold.status == "accepted"
    assert holds.resolve(db.session, hold, RequestKind.PROTECTED_POST) is not None
    db.session.commit()


def reversal_void_queued(juma, wanjiru) -> None:
    """Juma sent Wanjiru KES 2,000 by mistake and asked for it back; she refuses: the void of
    the hold on her money is recorded (queued), debit account Juma's (a void turns the hold
    round). It gives Juma nothing and takes nothing from him."""
    send = executed(
        kind=RequestKind.SEND.value,
        debit_account_id=juma.account_id,
        credit_account_id=wanjiru.account_id,
        amount=2_000_00,
        fee=quote("send", 2_000_00),
    )
    hold = executed(
        kind=RequestKind.REVERSAL.value,
        debit_account_id=wanjiru.account_id,
        credit_account_id=juma.account_id,
        amount=2_000_00,
        reference=send.code,
        hold_seconds=3600,
    )
    assert hold.status == "accepted"
    assert holds.resolve(db.session, hold, RequestKind.REVERSAL_VOID) is not None
    db.session.commit()


@pytest.mark.parametrize("setup", [suspense_post_queued, protected_post_queued, reversal_void_queued])
def test_a_queued_post_or_void_is_not_taken_from_the_payer_twice(cast, setup):
    """A post or void of a hold takes nothing from the request's debit account that its
    available balance does not already count (a post moves debits_pending to debits_posted; a
    void gives back): subtracting its amount again told Juma "Not enough money" (with a
    balance below what he has, even below zero) for a send his balance covers."""
    app, juma, wanjiru = cast
    setup(juma, wanjiru)
    spendable = available(juma.account_id)
    assert spendable > 2_500_00 + quote("send", 2_500_00)
    answer = send_pin(app, "2500")
    assert answer.startswith("END Sending KES 2,500.00"), answer
    execute_transfers()
    db.session.expire_all()
    statuses = sorted(db.session.execute(select(TransferRequest.status)).scalars())
    db.session.commit()
    assert "rejected" not in statuses, statuses
    assert available(juma.account_id) >= 0
    assert not [f for f in check(db.session, trust_deposits_total=BALANCE) if not f.ok]
    db.session.commit()


def test_the_balance_said_with_not_enough_money_is_never_below_zero(cast):
    """Requests recorded without the PIN hop's check (a standing order's run, an approved
    payment request, the API) may queue more than the balance: the short screen must not tell
    the payer a negative balance."""
    app, juma, wanjiru = cast
    for amount in (4_000_00, 3_000_00):
        recorded(
            kind=RequestKind.SEND.value,
            debit_account_id=juma.account_id,
            credit_account_id=wanjiru.account_id,
            amount=amount,
            fee=quote("send", amount),
        )
    answer = send_pin(app, "100")
    assert answer.startswith("END Not enough money to send KES 100.00"), answer
    assert "-" not in answer, answer


def test_airtime_bought_behind_a_queued_send_is_told_not_enough_money_at_its_pin(cast):
    """Juma sends KES 4,000 (queued, the worker not yet run), then buys KES 2,000 of airtime:
    the airtime's PIN hop must count the queued send, as a second send's does, not answer
    "Buying" and then refuse it by SMS."""
    app, juma, wanjiru = cast
    assert send_pin(app, "4000").startswith("END Sending KES 4,000.00")
    phone = Phone(app.test_client(), "0712000111")
    assert phone.walk("7", "1", "2000", "1").startswith("CON Enter your PIN to buy KES 2,000.00")
    answer = phone.send(PIN)
    assert answer.startswith("END Not enough money to buy KES 2,000.00"), answer
    execute_transfers()
    db.session.expire_all()
    kinds = db.session.execute(select(TransferRequest.kind, TransferRequest.status)).all()
    db.session.commit()
    assert ("airtime", "rejected") not in kinds, kinds


def test_two_airtime_purchases_at_once_are_never_both_told_buying(cast):
    """Two sessions of Juma's, each buying KES 4,000 of airtime of his KES 5,000, PIN at once:
    one is told "Buying", the other "Not enough money" (not "Buying" then a refusal by SMS)."""
    app, juma, wanjiru = cast
    phones = []
    for number in ("0712000111", "+254712000111"):
        phone = Phone(app.test_client(), number)
        assert phone.walk("7", "1", "4000", "1").startswith("CON Enter your PIN to buy KES 4,000.00")
        phones.append(phone)
    answers = at_once(app, *(lambda p=p: p.send(PIN) for p in phones))
    assert sorted(a[:20] for a in answers) == ["END Buying KES 4,000", "END Not enough money"], answers


def test_an_agent_withdrawal_approved_behind_a_queued_send_is_refused_at_the_pin(cast):
    """Juma sends KES 4,000 (queued); an agent asks him to approve a KES 1,000 withdrawal: the
    approval must count the queued send (the agent pays out cash on the SMS: "short" tells both
    now), not record a withdrawal the worker then refuses."""
    from ussd_app.payments import agent_withdrawals

    app, juma, wanjiru = cast
    agent = person(AGENT["phone"], AGENT["name"], role="agent", pin="1111")
    assert send_pin(app, "4000").startswith("END Sending KES 4,000.00")
    fee = quote("withdrawal", 1_000_00)
    assert agent_withdrawals.ask(
        db.session, approval_id="wa-1", agent=agent, customer=juma, amount=1_000_00, fee=fee, commission=0
    )
    db.session.commit()
    assert agent_withdrawals.approve(db.session, juma, "wa-1") == "short"
    db.session.commit()
    assert db.session.get(agent_withdrawals.WithdrawalApproval, "wa-1").state == "failed"
    db.session.commit()


def test_an_allowance_started_behind_a_queued_send_is_told_not_enough_money(cast):
    """Juma sends KES 4,000 (queued), then starts an allowance holding KES 2,000 a period: its
    PIN hop must count the queued send, not start it and leave the worker to refuse the hold."""
    from tests.test_ussd_allowances import ALLOWANCES, TILL

    app, juma, wanjiru = cast
    person(MERCHANT["phone"], MERCHANT["name"], role="merchant", pin=MERCHANT["pin"], till=TILL)
    assert send_pin(app, "4000").startswith("END Sending KES 4,000.00")
    phone = Phone(app.test_client(), "0712000111")
    for value in (ALLOWANCES, "1", TILL, "2000", "2", "1"):
        phone.send(value)
    answer = phone.send(PIN)
    assert answer.startswith("END Not enough money to hold KES 2,000.00"), answer


def test_pin_hops_racing_the_worker_are_never_told_sending_for_what_it_then_refuses(cast):
    """Juma (KES 5,000) sends KES 1,500 in six sessions at once while the worker runs batch
    after batch: balance and queue read in one snapshot, so every "Sending" is posted (never
    refused by SMS), the others are told "Not enough money", and the wallet stays >= 0."""
    import time

    app, juma, wanjiru = cast
    numbers = ["0712000111", "+254712000111", "254712000111"] * 2
    phones = []
    for number in numbers:
        phone = Phone(app.test_client(), number)
        assert "Enter your PIN" in phone.walk("1", "0712000222", "1500", "1")
        phones.append(phone)

    def worker():
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            execute_transfers()
        return "worker"

    answers = at_once(app, worker, *(lambda p=p: p.send(PIN) for p in phones))[1:]
    execute_transfers()
    sending = [a for a in answers if a.startswith("END Sending KES 1,500.00")]
    assert len(sending) + sum(a.startswith("END Not enough money") for a in answers) == 6, answers
    assert len(sending) == BALANCE // (1_500_00 + quote("send", 1_500_00)), answers
    db.session.expire_all()
    statuses = sorted(db.session.execute(select(TransferRequest.status)).scalars())
    db.session.commit()
    assert statuses == ["accepted"] * len(sending), statuses
    assert available(juma.account_id) >= 0


def test_paying_a_request_in_my_approvals_behind_a_queued_send_is_told_not_enough_money(cast):
    """Wanjiru asks Juma (KES 5,000) for KES 1,000 (fee KES 13); he sends KES 4,000 (queued),
    then approves her request with his PIN: "Not enough money to pay KES 1,013.00" with what is
    left, nothing recorded, the request still waiting; once the send is posted and money comes
    in, the same request is paid."""
    from ussd_app.payments import payment_requests as pr

    app, juma, wanjiru = cast
    [asked] = pr.create(
        db.session, wanjiru, mint_request_id(), pr.Kind.PERSONAL, [(juma.phone, 1_000_00)], "Rent"
    )
    db.session.commit()
    assert send_pin(app, "4000").startswith("END Sending KES 4,000.00")
    left = BALANCE - 4_000_00 - quote("send", 4_000_00)

    def approve() -> str:
        phone = Phone(app.test_client(), "0712000111")
        phone.walk("3")
        assert "Rent" in phone.send("1")
        assert phone.send("1") == "CON Enter your PIN to approve"
        return phone.send(PIN)

    answer = approve()
    assert answer == f"END Not enough money to pay KES 1,013.00. Your balance is KES {left // 100:,}.00.", (
        answer
    )
    queued = db.session.execute(select(TransferRequest.kind)).scalars().all()
    db.session.commit()
    assert queued == ["send"]  # nothing recorded for the request
    assert db.session.get(pr.PaymentRequest, asked.id).state == "open"
    db.session.commit()
    execute_transfers()
    fund(juma.account_id, 1_000_00)
    assert approve() == "END Approved. You will receive an SMS confirmation."
    execute_transfers()
    assert db.session.get(pr.PaymentRequest, asked.id).state == "paid"
    assert not [f for f in check(db.session, trust_deposits_total=BALANCE + 1_000_00) if not f.ok]
    db.session.commit()
