"""Several worker processes hammer one hot merchant account at once (PostgreSQL)."""

import random
import time

import pytest
from sqlalchemy import func, select

from tests.conftest import PG_URL
from tests.test_payments import assert_ledger_ok, send
from tests.worker_helpers import finish, run_burst_worker, start_worker
from ussd_app.extensions import db
from ussd_app.ledger import Account, Transfer
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.execute import execute_requests
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import announce
from ussd_app.queues import TRANSFERS_QUEUE
from ussd_app.users import create_user

pytestmark = pytest.mark.skipif(not PG_URL, reason="row-lock concurrency needs PostgreSQL (DATABASE_URL)")

WORKERS = 4
REQUESTS = 3_000
BATCH = 50


def test_workers_racing_on_a_hot_merchant_lose_and_double_nothing(app):
    rng = random.Random(7)
    agent = create_user(db.session, phone="+254700000201", name="Hot Agent", role="agent", pin="1111")
    merchant = create_user(
        db.session, phone="+254700000202", name="Hot Shop", role="merchant", pin="2222", till="55555"
    )
    issue_float(db.session, agent, 100_000_000)
    customers = [
        create_user(db.session, phone=f"+25470010{i:04d}", name=f"Buyer {i}", role="customer", pin="1234")
        for i in range(100)
    ]
    funding = [send(agent, c, 1_000_00) for c in customers] + [send(agent, merchant, 5_000_00)]
    db.session.commit()
    execute_requests(db.session, funding)
    db.session.commit()

    ids = []
    for i in range(REQUESTS):
        c = rng.choice(customers)
        if i % 3 == 2:  # the merchant pays out too, so the hot account is debited and credited
            ids.append(send(merchant, c, rng.randint(1, 300) * 100).id)
        else:
            ids.append(send(c, merchant, rng.randint(1, 80) * 100).id)
    db.session.commit()
    for _ in range(REQUESTS // BATCH + WORKERS):
        announce(force=True)

    # The velocity rules would hold most of these for review: this test is about the ledger.
    no_velocity = {"TUMA_VELOCITY_MAX_COUNT": 0, "TUMA_VELOCITY_MAX_VALUE_MAJOR": 0}
    # Only the transfers queue: the receipts these write (two per transfer, half of them to the
    # one merchant, who gets them in order) would keep the burst workers busy for far longer
    # than the ledger work this test is about.
    workers = [
        start_worker(
            "--burst", "--no-cron", "--queues", TRANSFERS_QUEUE, TUMA_TRANSFER_BATCH_SIZE=BATCH, **no_velocity
        )
        for _ in range(WORKERS)
    ]
    deadline = time.monotonic() + 240  # inside pytest's own timeout, so the workers get killed
    for w in workers:
        out = finish(w, timeout=max(1, deadline - time.monotonic()))
        assert w.returncode == 0, out
    run_burst_worker(
        "--queues", TRANSFERS_QUEUE, TUMA_REQUEUE_AFTER_SECONDS=0, **no_velocity
    )  # anything left behind is picked up

    db.session.expire_all()
    outcomes = dict(
        db.session.execute(
            select(TransferRequest.status, func.count())
            .where(TransferRequest.id.in_(ids))
            .group_by(TransferRequest.status)
        ).all()
    )
    assert sum(outcomes.values()) == REQUESTS and "queued" not in outcomes, outcomes
    assert outcomes.get("accepted", 0) > REQUESTS // 2  # most succeed; some payouts lack funds

    posted = {
        r.id: r
        for r in db.session.execute(
            select(TransferRequest).where(TransferRequest.status == "accepted")
        ).scalars()
    }
    legs = dict(
        db.session.execute(select(Transfer.user_data, func.count()).group_by(Transfer.user_data)).all()
    )
    for rid in ids:
        expected = (1 + (1 if posted[rid].fee else 0)) if rid in posted else 0
        assert legs.get(rid, 0) == expected, rid  # posted exactly once, or not at all

    hot = db.session.get(Account, merchant.account_id, populate_existing=True)
    incoming = sum(r.amount for r in posted.values() if r.credit_account_id == merchant.account_id)
    outgoing = sum(r.amount + r.fee for r in posted.values() if r.debit_account_id == merchant.account_id)
    assert hot.available == incoming - outgoing
    assert hot.available >= 0
    negative = db.session.execute(
        select(func.count())
        .select_from(Account)
        .where(
            Account.kind.in_(["customer", "merchant", "agent"]),
            Account.credits_posted < Account.debits_posted + Account.debits_pending,
        )
    ).scalar_one()
    assert negative == 0
    assert_ledger_ok()
