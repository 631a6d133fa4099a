"""Transfer requests: recorded by the web side, executed by real worker processes."""

import pytest
from sqlalchemy import func, select

from tests.helpers import wait_for
from tests.worker_helpers import kill_worker, run_burst_worker, start_worker
from ussd_app.extensions import db
from ussd_app.ledger import Account, Transfer
from ussd_app.ledger.check import check
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.execute import execute_requests
from ussd_app.payments.models import RequestStatus, TransferRequest
from ussd_app.payments.submit import ConflictingRequest, announce, mint_request_id, record_request
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.tariffs import quote
from ussd_app.users import create_user


def people(n_customers=2, float_minor=1_000_000):
    agent = create_user(db.session, phone="+254700000101", name="Ali Agent", role="agent", pin="1111")
    issue_float(db.session, agent, float_minor)
    customers = [
        create_user(
            db.session, phone=f"+2547001002{i:02d}", name=f"Customer {i}", role="customer", pin="1234"
        )
        for i in range(n_customers)
    ]
    db.session.commit()
    return agent, customers


def send(payer, payee, amount, request_id=None):
    return record_request(
        db.session,
        request_id=request_id or mint_request_id(),
        kind="send",
        debit_account_id=payer.account_id,
        credit_account_id=payee.account_id,
        amount=amount,
        fee=quote("send", amount),
    )


def balance(user):
    db.session.refresh(user.account)
    return user.account.available


def assert_ledger_ok():
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


def test_worker_process_executes_queued_sends_with_fee_and_receipts(app):
    agent, (amina, baraka) = people()
    send(agent, amina, 500_00)  # the agent's float pays the customer (cash-in shape)
    request = send(amina, baraka, 150_00)
    db.session.commit()
    announce(request.id)

    run_burst_worker()

    db.session.expire_all()
    assert db.session.get(TransferRequest, request.id).status == RequestStatus.ACCEPTED
    fee = quote("send", 150_00)
    assert fee > 0
    assert balance(amina) == 500_00 + 0 - 150_00 - fee - quote("send", 500_00) * 0
    assert balance(baraka) == 150_00
    bodies = [
        m.body
        for m in db.session.execute(
            select(OutboxMessage).where(OutboxMessage.transfer_request_id == request.id)
        ).scalars()
    ]
    assert len(bodies) == 2
    assert any("KES 150.00 sent to CUSTOMER 1" in b for b in bodies)
    assert any("received KES 150.00 from CUSTOMER 0" in b for b in bodies)
    assert_ledger_ok()


def test_insufficient_funds_is_rejected_with_an_sms_and_moves_nothing(app):
    agent, (amina, baraka) = people()
    request = send(amina, baraka, 10_00)
    db.session.commit()
    announce(request.id)
    run_burst_worker()
    db.session.expire_all()
    row = db.session.get(TransferRequest, request.id)
    assert (row.status, row.result) == (RequestStatus.REJECTED, "exceeds_credits")
    [sms] = db.session.execute(
        select(OutboxMessage).where(OutboxMessage.transfer_request_id == request.id)
    ).scalars()
    assert sms.phone == amina.phone and "Not enough money" in sms.body
    assert balance(baraka) == 0
    assert_ledger_ok()


def test_same_request_id_is_recorded_once_and_a_different_order_is_refused(app):
    agent, (amina, baraka) = people()
    rid = mint_request_id()
    first = send(agent, amina, 100_00, rid)
    again = send(agent, amina, 100_00, rid)
    assert again is first
    with pytest.raises(ConflictingRequest):
        send(agent, amina, 999_00, rid)


def test_executing_a_request_twice_posts_it_once(app):
    """Even if a request's status update were lost and it ran again, the ledger says EXISTS."""
    agent, (amina, _) = people()
    request = send(agent, amina, 300_00)
    db.session.commit()
    execute_requests(db.session, [request])
    db.session.commit()
    request.status = RequestStatus.QUEUED.value  # as if the status had never been written
    execute_requests(db.session, [request])
    db.session.commit()
    assert request.status == RequestStatus.ACCEPTED
    assert balance(amina) == 300_00
    legs = db.session.execute(
        select(func.count()).select_from(Transfer).where(Transfer.user_data == request.id)
    ).scalar_one()
    assert legs == 2  # the payment and its fee, once each
    sms = db.session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.transfer_request_id == request.id)
    ).scalar_one()
    assert sms == 2  # no second set of receipts
    assert_ledger_ok()


def test_worker_killed_mid_batch_posts_every_request_exactly_once_after_restart(app, redis):
    agent, customers = people(n_customers=5, float_minor=100_000_000)
    ids = []
    for i in range(200):
        r = send(agent, customers[i % 5], (i + 1) * 100)
        ids.append(r.id)
    db.session.commit()
    announce(ids[0])

    victim = start_worker("--no-cron", TUMA_FAULTS="batch_before_commit")
    try:
        pid = wait_for(
            lambda: redis.get("tuma:fault:batch_before_commit"), message="worker to reach the checkpoint"
        )
    except AssertionError:  # never leave a live worker taking the rest of the suite's jobs
        kill_worker(victim)
        raise
    assert int(pid) == victim.pid
    kill_worker(victim)

    db.session.expire_all()
    queued = db.session.execute(
        select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
    ).scalar_one()
    assert queued == 200  # the killed batch committed nothing

    # A new worker finds the requests from the database (its job was lost with the old one).
    run_burst_worker(TUMA_REQUEUE_AFTER_SECONDS=0, TUMA_TRANSFER_BATCH_SIZE=64)

    db.session.expire_all()
    statuses = db.session.execute(
        select(TransferRequest.status, func.count()).group_by(TransferRequest.status)
    ).all()
    assert dict(statuses) == {"accepted": 201}  # 200 sends + the float issue
    per_request = db.session.execute(
        select(Transfer.user_data, func.count())
        .where(Transfer.user_data.in_(ids))
        .group_by(Transfer.user_data)
    ).all()
    amounts = {r: (i + 1) * 100 for i, r in enumerate(ids)}
    # each request accepted once: its payment, plus a fee leg where the tariff charges one
    assert sorted(per_request) == sorted((r, 2 if quote("send", amounts[r]) else 1) for r in ids)
    expected = sum((i + 1) * 100 for i in range(200))
    assert sum(balance(c) for c in customers) == expected
    assert_ledger_ok()


def test_maintenance_job_voids_holds_past_their_timeout_by_the_database_clock(app):
    from ussd_app.database import db_clock_us
    from ussd_app.ledger import TransferFlags, TransferSpec, create_transfers
    from worker.jobs import maintain

    agent, (amina, _) = people()
    an_hour_ago = db_clock_us(db.session) - 3_600 * 1_000_000
    hold = TransferSpec(
        "hold-1", agent.account_id, amina.account_id, 250_00, "test", timeout=60, flags=TransferFlags.PENDING
    )
    fresh = TransferSpec(
        "hold-2", agent.account_id, amina.account_id, 100_00, "test", timeout=600, flags=TransferFlags.PENDING
    )
    create_transfers(db.session, [hold], now=an_hour_ago)
    create_transfers(db.session, [fresh])
    db.session.commit()
    agent_account_id = agent.account_id

    assert maintain()["expired"] == 1
    assert maintain()["expired"] == 0  # safe to run twice
    db.session.expire_all()
    agent_account = db.session.get(Account, agent_account_id)
    assert agent_account.debits_pending == 100_00  # only the fresh hold still reserved
    assert_ledger_ok()
