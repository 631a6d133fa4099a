"""Merchant payments are free for the customer and cost the merchant a capped percentage
(tariffs.payee_fee): quoted when the customer confirms, posted as a linked leg from the
merchant's wallet to fee revenue in the payment's own chain, shown on the merchant's receipt.
A protected purchase charges it when the hold is paid to the merchant, never on a refund."""

import json

import pytest
from sqlalchemy import select

from tests.escrow_helpers import house, later, sms_to
from tests.helpers import fund
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, Transfer, TransferFlags
from ussd_app.ledger.check import check
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.tariffs import default_document
from ussd_app.users import create_user
from worker import jobs

PIN = "8642"
SHOP, WATER = "+254700000002", "+254700000003"


@pytest.fixture
def people(customer, merchant):
    """The cast's customer (KES 100,000, full tier) and merchant (the shop), and a Kiswahili
    pay-bill number."""
    customer.tier = "full"  # an agent checked his ID: large payments
    db.session.commit()
    fund(customer.account_id, 100_000_00)
    water = create_user(
        db.session,
        phone=WATER,
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
        language="sw",
    )
    db.session.commit()
    return {"juma": customer.account_id, "shop": merchant.account_id, "water": water.account_id}


def buy(client, amount: str, choice="1") -> TransferRequest:
    body = Phone(client, "0712000111").walk("5", "123456", amount, choice, PIN)
    assert body.startswith("END Paying"), body
    return only_request()


def only_request() -> TransferRequest:
    db.session.expire_all()
    [request] = db.session.execute(select(TransferRequest)).scalars()
    return request


def legs(request_id: str) -> list[tuple]:
    db.session.expire_all()
    rows = db.session.execute(
        select(Transfer).where(Transfer.user_data == request_id).order_by(Transfer.created_at, Transfer.id)
    ).scalars()
    return [(t.id.removeprefix(request_id).lstrip(".") or "main", t.code, t.amount, t.flags) for t in rows]


def ledger_ok():
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


def test_buy_goods_is_free_for_the_customer_and_the_merchant_pays_half_a_percent(client, people):
    request = buy(client, "250")
    assert (request.fee, request.payee_fee) == (0, 1_25)  # quoted at the confirm screen
    assert jobs.execute_transfers() == 1
    assert available(people["juma"]) == 100_000_00 - 250_00
    assert available(people["shop"]) == 250_00 - 1_25
    assert house(AccountKind.FEES).credits_posted == 1_25
    # One chain: the payment, linked to the merchant's fee out of the money it just received.
    assert legs(request.id) == [
        ("main", "buy_goods", 250_00, TransferFlags.LINKED),
        ("payee_fee", "payee_fee", 1_25, TransferFlags.NONE),
    ]
    [receipt] = sms_to(SHOP)
    assert receipt.endswith("Fee KES 1.25. Till balance KES 248.75.")
    assert "Transaction cost, KES 0.00." in sms_to("+254712000111")[-1]
    # A retried job asks the ledger for the same legs: nothing is charged twice.
    jobs.execute_transfers()
    assert house(AccountKind.FEES).credits_posted == 1_25
    ledger_ok()


@pytest.mark.parametrize(
    ("amount", "merchant_fee"),
    [("39999", 199_99), ("40000", 200_00), ("40001", 200_00), ("90000", 200_00)],
)
def test_the_merchant_fee_is_capped(client, people, amount, merchant_fee):
    request = buy(client, amount)
    assert request.payee_fee == merchant_fee
    jobs.execute_transfers()
    assert available(people["shop"]) == int(amount) * 100 - merchant_fee
    ledger_ok()


def test_pay_bill_merchant_fee_on_a_kiswahili_receipt(client, people):
    body = Phone(client, "0712000111").walk("6", "888880", "ACC-42", "1200", "1", PIN)
    assert body.startswith("END Paying KES 1,200.00 to Kisumu Water.")
    request = only_request()
    assert (request.kind, request.fee, request.payee_fee) == ("pay_bill", 0, 6_00)
    jobs.execute_transfers()
    assert available(people["water"]) == 1_194_00
    [receipt] = sms_to(WATER)
    assert "kwa akaunti ACC-42" in receipt
    assert receipt.endswith("Ada KES 6.00. Salio KES 1,194.00.")


def test_the_merchant_fee_is_the_one_in_force_when_the_customer_confirmed(client, runner, people, tmp_path):
    phone = Phone(client, "0712000111")
    assert phone.walk("5", "123456", "1000").startswith("CON Pay KES 1,000.00 to Mama Mboga")
    document = default_document()
    document["buy_goods"]["payee_basis_points"] = 100  # 1% from now on
    path = tmp_path / "tariff.json"
    path.write_text(json.dumps(document))
    assert runner.invoke(args=["tariffs", "set", "--file", str(path)]).exit_code == 0
    phone.send("1")
    assert phone.send(PIN).startswith("END Paying")
    assert only_request().payee_fee == 5_00  # 0.5%, as when he confirmed
    jobs.execute_transfers()
    assert available(people["shop"]) == 995_00


def test_a_protected_purchase_charges_the_merchant_when_it_is_paid_to_them(client, people):
    hold = buy(client, "300", choice="3")
    assert (hold.kind, hold.payee_fee) == (RequestKind.PROTECTED_PURCHASE.value, 1_50)
    jobs.execute_transfers()
    assert legs(hold.id) == [("main", "protected_purchase", 300_00, TransferFlags.PENDING)]
    assert available(people["shop"]) == 0 and house(AccountKind.FEES).credits_posted == 0
    assert jobs.resolve_due_holds(now=later(3.01)) == 1  # the hold falls due: paid to the merchant
    db.session.expire_all()
    post = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.PROTECTED_POST.value)
    ).scalar_one()
    assert post.payee_fee == 1_50
    assert [leg[:3] for leg in legs(post.id)] == [
        ("main", "protected_post", 300_00),
        ("payee_fee", "payee_fee", 1_50),
    ]
    assert available(people["shop"]) == 298_50
    assert house(AccountKind.FEES).credits_posted == 1_50
    assert sms_to(SHOP)[-1].endswith("Fee KES 1.50. Till balance KES 298.50.")
    ledger_ok()


def test_a_protected_purchase_refunded_to_the_buyer_costs_the_merchant_nothing(client, runner, people):
    hold = buy(client, "300", choice="3")
    jobs.execute_transfers()
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "2")
    assert (
        phone.send(PIN)
        == "END Problem reported. The money stays held until Tuma decides. You will get an SMS."
    )  # a dispute
    result = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "buyer"])
    assert result.exit_code == 0, result.output
    assert available(people["juma"]) == 100_000_00
    assert available(people["shop"]) == 0
    assert house(AccountKind.FEES).credits_posted == 0
    ledger_ok()
