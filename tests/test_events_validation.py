"""Pay-bill validation: a merchant with a validation URL accepts or refuses an account
reference before the customer confirms; no answer in 2 s means the configured default; no
database transaction is open while its server is asked."""

import json
import time

import pytest
from sqlalchemy import func, select

from tests.escrow_helpers import funded_customer
from tests.events_helpers import running_receiver, signed_by, trickling_server
from tests.ussd_helpers import Phone, fresh
from ussd_app.events import validation
from ussd_app.events.endpoints import configure
from ussd_app.events.models import WebhookEndpoint
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import create_user

PIN = "8642"


@pytest.fixture
def receiver():
    yield from running_receiver()


@pytest.fixture
def juma(app):
    return funded_customer()


@pytest.fixture
def water(app, receiver):
    """Kisumu Water, pay bill 888880, asks its own system about every account reference."""
    user = create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
    )
    configured = configure(
        db.session,
        user.account_id,
        url=f"{receiver.url}/hooks/water",
        validation_url=f"{receiver.url}/validate/water",
    )
    db.session.commit()
    receiver.receiver.secret = configured.secret
    return configured.secret


@pytest.fixture
def open_transactions(monkeypatch):
    """Whether the hop's database session had a transaction open at each question."""
    seen = []
    ask = validation.ask

    def watched(asked):
        seen.append(db.session().in_transaction())
        return ask(asked)

    monkeypatch.setattr(validation, "ask", watched)
    return seen


def pay_bill(client, reference: str, amount: str = "1200") -> tuple[Phone, str]:
    # fresh: an earlier walk of the test may be left at its confirm screen
    return fresh(client, "0712000111", "6", "888880", reference, amount)


def test_an_accepted_account_goes_on_to_the_confirm_screen(client, juma, water, receiver, open_transactions):
    phone, screen = pay_bill(client, "acc-42")
    assert screen.startswith("CON Pay KES 1,200.00 to Kisumu Water (888880) for account ACC-42?")
    assert open_transactions == [False]
    [question] = receiver.receiver.questions
    assert question == {
        "type": "paybill.validation",
        "business_number": "888880",
        "account_reference": "ACC-42",
        "amount": 1_200_00,
        "currency": "KES",
        "payer": {"phone": "+2547120***11"},
    }
    phone.send("1")
    assert phone.send(PIN).startswith("END Paying KES 1,200.00 to Kisumu Water.")


def test_a_refused_account_is_said_in_a_short_message_and_nothing_is_recorded(
    client, juma, water, receiver, open_transactions
):
    receiver.receiver.refuse("ACC-99")
    _, screen = pay_bill(client, "acc-99")
    assert (
        screen == "CON Kisumu Water does not accept account ACC-99.\nPay Kisumu Water\nEnter account number"
    )
    assert open_transactions == [False]
    paid = select(func.count()).where(TransferRequest.kind == "pay_bill")
    assert db.session.execute(paid).scalar_one() == 0


def test_no_answer_in_time_takes_the_configured_default(client, config, juma, water, receiver):
    config(PAYBILL_VALIDATION_TIMEOUT_SECONDS=0.3, PAYBILL_VALIDATION_DEFAULT="accept")
    receiver.receiver.delay_next(1.5)
    _, screen = pay_bill(client, "acc-1")
    assert screen.startswith("CON Pay KES 1,200.00 to Kisumu Water (888880) for account ACC-1?")

    config(PAYBILL_VALIDATION_DEFAULT="refuse")
    receiver.receiver.delay_next(1.5)
    _, screen = pay_bill(client, "acc-2")
    assert screen.startswith("CON Kisumu Water does not accept account ACC-2.")

    receiver.receiver.fail_next(1, http_status=503)  # an error is no answer either
    _, screen = pay_bill(client, "acc-3")
    assert screen.startswith("CON Kisumu Water does not accept account ACC-3.")


@pytest.fixture
def trickler():
    yield from trickling_server(every=0.2)


def test_an_answer_sent_a_byte_at_a_time_is_cut_off_at_the_timeout(client, config, juma, water, trickler):
    """200 and Content-Length 100, then a byte every 0.2 s (20 s in all): the customer waits the
    timeout, not the trickle, and the default decides."""
    config(PAYBILL_VALIDATION_TIMEOUT_SECONDS=0.5, PAYBILL_VALIDATION_DEFAULT="refuse")
    endpoint = db.session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.validation_url.is_not(None))
    ).scalar_one()
    endpoint.validation_url = f"{trickler.url}/validate/water"
    db.session.commit()
    asked = validation.question(
        db.session,
        endpoint.account_id,
        business_number="888880",
        reference="ACC-7",
        amount=120000,
        payer_phone="+254712000111",
    )
    db.session.rollback()
    started = time.monotonic()
    assert validation.ask(asked) == validation.REFUSE
    assert time.monotonic() - started < 0.5 + 1.0


def test_the_question_is_signed_like_an_event(app, water, receiver):
    asked = validation.question(
        db.session,
        db.session.execute(select(TransferRequest.credit_account_id)).scalar() or 0,
        business_number="888880",
        reference="X",
        amount=1,
        payer_phone="+254712000111",
    )
    assert asked is None  # no such merchant account: nothing to ask
    from ussd_app.events.signing import signature
    from ussd_app.users import find_by_phone

    merchant = find_by_phone(db.session, "+254700000003")
    asked = validation.question(
        db.session, merchant.account_id, business_number="888880", reference="X", amount=1, payer_phone="+1"
    )
    header = signature(water, asked.body)
    assert signed_by(water, asked.body.decode(), header)
    assert json.loads(asked.body)["account_reference"] == "X"


def test_a_merchant_without_a_validation_url_is_not_asked(client, juma, receiver):
    create_user(
        db.session,
        phone="+254700000004",
        name="Nairobi Power",
        role="merchant",
        pin="2222",
        till="777770",
        paybill=True,
    )
    db.session.commit()
    phone = Phone(client, "0712000111")
    assert phone.walk("6", "777770", "m-1", "50").startswith("CON Pay KES 50.00 to Nairobi Power (777770)")
    assert receiver.receiver.questions == []


def test_the_default_must_be_accept_or_refuse():
    from ussd_app import create_app
    from ussd_app.security import InsecureConfig

    with pytest.raises(InsecureConfig, match="TUMA_PAYBILL_VALIDATION_DEFAULT"):
        create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "PAYBILL_VALIDATION_DEFAULT": "maybe"}
        )
