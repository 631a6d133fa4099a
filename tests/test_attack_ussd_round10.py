"""An outside attack on the USSD menus as feature-phone users, agents and merchants meet them
(round 10), through the real webhook (run with and without DATABASE_URL). Each test is a defect a person or an
operator would notice, failing before its fix."""

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import AGENT, MERCHANT, available, fresh, screen
from ussd_app.extensions import db
from ussd_app.payments.payment_requests import PaymentRequest
from worker.jobs import execute_transfers

PIN = "8642"  # the cast's customer's


@pytest.fixture
def cast(customer, second_customer, agent, merchant):
    """The cast, each with money: Juma KES 5,000, the agent's float and the merchant's wallet."""
    for who in (customer, agent, merchant):
        fund(who.account_id, 500_000)
    return customer, second_customer, agent, merchant


def open_requests() -> int:
    return db.session.execute(select(func.count()).select_from(PaymentRequest)).scalar_one()


# -- payment requests are for customers ----------------------------------------------------------
# Send money refuses an agent's or merchant's number ("cannot receive money here"), Deposit a
# merchant's, and the API's POST /payment-requests answers payer_not_found for any payer but a
# customer. The menus' requests asked anyone: a customer's Request money (or a merchant's
# Request payment, whose screen says "Enter the customer's phone number") took an agent's
# number, and the agent paid it from its e-float in My approvals: float spent on a shop or sent
# to a person with no cash, past the agent's own menu, which has neither.


@pytest.mark.parametrize("business", [AGENT["phone"], MERCHANT["phone"]], ids=["agent", "merchant"])
def test_request_money_refuses_an_agents_or_merchants_number(client, cast, business):
    phone, body = fresh(client, "0712000111", "8", "0" + business[4:])
    assert body.startswith("CON "), body
    assert "cannot be asked to pay" in screen(body), body
    assert "Enter number 1, or # to finish" in body  # the number screen again, still number 1
    assert open_requests() == 0


def test_a_merchants_request_payment_refuses_an_agents_number(client, cast):
    _, body = fresh(client, "0700000002", "5", "0700000101")
    assert "cannot be asked to pay" in screen(body), body
    assert "Enter the customer's phone number" in body


def test_an_agents_float_never_pays_a_request_it_was_sent(client, cast):
    """The whole walk: asked, the agent's My approvals has nothing to pay, no float moves."""
    customer, _, agent, _ = cast
    fresh(client, "0712000111", "8", "0700000101", "#", "1", "1000", "Loan", "1", PIN)
    _, body = fresh(client, "0700000101", "98", "8")
    assert body == "END Nothing is waiting for your approval.", body
    execute_transfers()
    assert available(agent.account_id) == 500_000
    assert available(customer.account_id) == 500_000


def test_a_request_opened_to_an_agent_before_the_rule_is_never_paid_from_its_float(client, cast):
    """A request to the agent's number recorded before the number screen refused it (or by any
    other way): the agent's My approvals shows nothing to pay, and approving it by its reference
    moves nothing."""
    from ussd_app.payments import payment_requests as pr
    from ussd_app.payments.submit import mint_request_id
    from ussd_app.ussd import approvals

    customer, _, agent, _ = cast
    [asked] = pr.create(
        db.session, customer, mint_request_id(), pr.Kind.PERSONAL, [(agent.phone, 1_000_00)], "Loan"
    )
    db.session.commit()
    _, body = fresh(client, "0700000101", "98", "8")
    assert body == "END Nothing is waiting for your approval.", body
    assert not approvals.decide(db.session, agent, f"request:{asked.id}", approve=True)
    db.session.commit()
    execute_transfers()
    assert available(agent.account_id) == 500_000
    assert db.session.get(PaymentRequest, asked.id).state == "open"
    db.session.commit()


def test_kiswahili_says_why_the_number_cannot_be_asked(client, cast):
    customer = cast[0]
    customer.language = "sw"
    db.session.commit()
    _, body = fresh(client, "0712000111", "8", "0700000101")
    assert "+254700000101 haiwezi kuombwa kulipa." in body, body
    assert len(body) - 4 <= 160


# -- a transaction code typed as people read it ---------------------------------------------------
# Codes are base32 (A-Z, 2-7): they hold O, I and B but never 0, 1 or 8. A person copying
# "RXGJORI2HQ" from an SMS onto a keypad types 0 for O and 1 for I; the reversal screen said
# "A transaction code has 10 letters and digits." (it had), and texting the code to check a
# receipt got the help text, as if no code had been sent: a merchant reads a genuine receipt
# as unverifiable.


def _send_with_lookalikes(payer, payee) -> tuple[str, str]:
    """A posted send from ``payer`` to ``payee`` whose code holds an O or an I: the code, and
    the code as typed with 0 for O and 1 for I."""
    from ussd_app.payments.models import RequestKind, transaction_code
    from ussd_app.payments.submit import mint_request_id, record_request

    request_id = next(i for i in iter(mint_request_id, None) if set(transaction_code(i)) & {"O", "I"})
    send = record_request(
        db.session,
        request_id=request_id,
        kind=RequestKind.SEND.value,
        debit_account_id=payer.account_id,
        credit_account_id=payee.account_id,
        amount=500_00,
    )
    db.session.commit()
    assert execute_transfers() == 1
    return send.code, send.code.replace("O", "0").replace("I", "1")


def test_reversal_takes_a_code_typed_with_0_for_o_and_1_for_i(client, cast):
    juma, wanjiru = cast[0], cast[1]
    code, typed = _send_with_lookalikes(juma, wanjiru)
    _, body = fresh(client, "0712000111", "2", "5", typed.lower())
    assert "Wanjiru Kamau" in body, body  # the send found: its confirm screen
    assert "10 letters and digits" not in body


def test_a_receipt_checked_by_sms_with_0_for_o_is_still_found(client, cast):
    from tests.escrow_helpers import sms_to

    juma, wanjiru = cast[0], cast[1]
    code, typed = _send_with_lookalikes(juma, wanjiru)
    fields = {"from": wanjiru.phone, "to": "22384", "text": typed, "id": "at-round10-1"}
    assert client.post("/sms/inbound", data=fields).status_code == 200
    reply = sms_to(wanjiru.phone)[-1]
    assert reply.startswith(f"{code} is genuine: "), reply


def test_a_phone_number_typed_for_a_code_is_not_read_as_one(client, cast):
    """Digits alone (a phone number typed by mistake) are not turned into a code."""
    _, body = fresh(client, "0712000111", "2", "5", "0712000222")
    assert "A transaction code has 10 letters and digits." in body, body
