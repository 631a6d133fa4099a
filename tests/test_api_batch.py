"""The issue's check: a batch of 10,000 payouts through POST /api/v1/payouts/batch posts each
once, with its receipt, and ``ledger check`` passes."""

import time

from sqlalchemy import func, select

from tests.api_helpers import execute_all, fund_merchant, ledger_check, make_key, many_customers, post
from ussd_app.extensions import db
from ussd_app.ledger import Account, Transfer
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import User

N = 10_000


def test_ten_thousand_payouts_post_once_each_with_receipts(client, runner, merchant):
    phones = many_customers(N)
    fund_merchant(merchant.phone, N * 100)
    key = make_key(merchant)
    rows = [{"phone": phone, "amount": 100, "reference": f"B-{i}"} for i, phone in enumerate(phones)]
    started = time.perf_counter()
    answer = post(client, "/payouts/batch", key, {"payouts": rows}, "big-batch")
    recorded = time.perf_counter() - started
    assert answer.status_code == 202, answer.json
    assert (answer.json["accepted"], answer.json["rejected"]) == (N, 0)
    assert post(client, "/payouts/batch", key, {"payouts": rows}, "big-batch").json == answer.json  # a retry
    assert execute_all() == N
    executed = time.perf_counter() - started - recorded
    print(f"\n10,000 payouts: recorded in {recorded:.1f} s, executed in {executed:.1f} s")

    def count(query):
        value = db.session.execute(query).scalar_one()
        db.session.commit()
        return value

    payout = RequestKind.PAYOUT.value
    accepted = TransferRequest.status == "accepted"
    assert count(select(func.count()).where(TransferRequest.kind == payout, accepted)) == N
    assert count(select(func.count()).where(Transfer.code == payout)) == N  # one transfer each
    paid = (
        select(func.count())
        .select_from(Account)
        .join(User, User.account_id == Account.id)
        .where(User.phone.in_(phones[:: N // 100]), Account.credits_posted == 100, Account.debits_posted == 0)
    )
    assert count(paid) == 100  # a sample of a hundred payees: each paid exactly once
    assert (
        count(select(func.sum(Account.credits_posted)).join(User).where(User.phone.like("+254711%")))
        == N * 100
    )
    receipts = select(func.count(func.distinct(OutboxMessage.phone))).where(
        OutboxMessage.phone.like("+254711%")
    )
    assert count(receipts) == N
    assert count(select(func.count()).where(OutboxMessage.phone.like("+254711%"))) == N
    ledger_check(runner)
