"""POST /api/v1/refunds: all or part of a payment received, never more than was paid less
earlier refunds (checked at the edge, and in the worker under the row locks)."""

from sqlalchemy import select

from tests.api_helpers import execute_all, fund_merchant, get, ledger_check, make_key, post
from tests.escrow_helpers import funded_customer, sms_to
from tests.ussd_helpers import available
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import payee_fee
from ussd_app.users import find_by_phone


def paid(customer_account: int, merchant_account: int, amount: int) -> str:
    """A customer's buy-goods payment to the merchant, posted; its code."""
    request = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.BUY_GOODS.value,
        debit_account_id=customer_account,
        credit_account_id=merchant_account,
        amount=amount,
        payee_fee=payee_fee("buy_goods", amount),
    )
    code = request.code
    db.session.commit()
    execute_all()
    return code


def test_part_then_the_rest_then_nothing_more(client, runner, merchant):
    buyer = funded_customer()
    code = paid(buyer, merchant.account_id, 1_000_00)
    fund_merchant(merchant.phone, 100_00)  # the merchant paid a fee on the payment it now refunds
    after_payment = available(buyer)
    key = make_key(merchant)
    part = post(client, "/refunds", key, {"transaction": code, "amount": 300_00})
    assert part.status_code == 202, part.json
    assert part.json["refunded_transaction"] == code and part.json["status"] == "queued"
    rest = post(client, "/refunds", key, {"transaction": code})  # all that is left
    assert rest.status_code == 202 and rest.json["amount"] == 700_00
    more = post(client, "/refunds", key, {"transaction": code, "amount": 1})
    assert more.status_code == 422 and more.json["error"]["code"] == "refund_exceeds_payment"
    execute_all()
    assert available(buyer) == after_payment + 1_000_00
    receipt = sms_to("+254712000111")[-1]
    assert receipt.startswith(f"{rest.json['transaction']} Confirmed. MAMA MBOGA refunded KES 700.00")
    assert code in receipt
    for refund in (part, rest):
        seen = get(client, f"/transactions/{refund.json['transaction']}", key).json
        assert seen["status"] == "posted" and seen["type"] == "refund" and seen["fee"] == 0
    ledger_check(runner)


def test_the_worker_refuses_what_the_edge_could_not_see(client, runner, merchant):
    """Two refunds recorded side by side, together more than the payment: the worker, holding
    the merchant's row lock, posts the first and refuses the second."""
    buyer = funded_customer()
    code = paid(buyer, merchant.account_id, 500_00)
    ids = []
    for amount in (400_00, 200_00):
        request = record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.REFUND.value,
            debit_account_id=merchant.account_id,
            credit_account_id=buyer,
            amount=amount,
            reference=code,
        )
        ids.append(request.id)
    db.session.commit()
    execute_all()
    db.session.expire_all()
    first, second = (db.session.get(TransferRequest, i) for i in ids)
    assert first.status == "accepted"
    assert (second.status, second.result) == ("rejected", "refund_exceeds_payment")
    assert not [s for s in sms_to(merchant.phone) if second.code in s]  # the API says it
    ledger_check(runner)


def test_only_a_posted_payment_to_the_key_owner_can_be_refunded(client, merchant):
    buyer = funded_customer()  # cashed in at the cast's agent
    code = paid(buyer, merchant.account_id, 100_00)
    other_key = make_key(find_by_phone(db.session, "+254700000101"))
    response = post(client, "/refunds", other_key, {"transaction": code, "amount": 100})
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    send = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.DEPOSIT.value)
    ).scalar_one()
    key = make_key(merchant)
    assert post(client, "/refunds", key, {"transaction": send.code}).status_code == 404
    assert post(client, "/refunds", key, {"transaction": "nope"}).status_code == 422


def test_a_refund_key_reused_after_the_purge_is_refused_not_a_500(client, merchant):
    """The refund's id derives from the key: after its idempotency row is purged (24 h), the
    key with another body is 422 idempotency_key_reused, and nothing more is refunded."""
    from ussd_app.api.idempotency import IdempotencyRecord

    buyer = funded_customer()
    code = paid(buyer, merchant.account_id, 1_000_00)
    key = make_key(merchant)
    assert post(client, "/refunds", key, {"transaction": code, "amount": 100_00}, "r1").status_code == 202
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    again = post(client, "/refunds", key, {"transaction": code, "amount": 900_00}, "r1")
    assert again.status_code == 422 and again.json["error"]["code"] == "idempotency_key_reused"
    refunds = db.session.execute(select(TransferRequest.amount).where(TransferRequest.kind == "refund"))
    assert refunds.scalars().all() == [100_00]
