"""Attacks on the ledger's batch hot path (issue 19: accounts locked and read once per batch,
holders and today's spending read once, late fee postings; binary COPY, formatter caches).

Each test states what a receipt, a limit or a balance must be whatever the hot path caches."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.sms_helpers import agent_with_float, person, send
from ussd_app import limits
from ussd_app.extensions import db
from ussd_app.money import format_amount
from ussd_app.payments import execute
from ussd_app.payments.models import TransferRequest
from ussd_app.sms.outbox import OutboxMessage

# 23:59:59.8 in Nairobi (UTC+3) on 31/03/26, then 00:00:00.4 on 01/04/26.
BEFORE_MIDNIGHT = datetime(2026, 3, 31, 20, 59, 59, 800_000)
AFTER_MIDNIGHT = datetime(2026, 3, 31, 21, 0, 0, 400_000)


def _bodies_to(phone: str) -> list[str]:
    query = select(OutboxMessage.body).where(OutboxMessage.phone == phone).order_by(OutboxMessage.id)
    return list(db.session.execute(query).scalars())


@pytest.mark.usefixtures("app")
def test_a_send_executed_after_midnight_states_the_new_days_limit(monkeypatch):
    """The batch reads today's spending once, when it checks the limits; if local midnight passes
    before the ledger has run, the request is executed (and counted) on the new day, so its
    receipt must state what is left of the new day, not of the day that just ended."""
    agent = agent_with_float()
    amina = person("+254712000601", "Amina Hassan")
    baraka = person("+254712000602", "Baraka Otieno")
    monkeypatch.setattr(execute, "utcnow", lambda: BEFORE_MIDNIGHT - timedelta(hours=10))
    send(agent, amina, 50_000_00)
    earlier = send(amina, baraka, 20_000_00)  # on 31/03, counted in that day
    assert execute.execute_batch(db.session, 500) == 2

    moments = iter([BEFORE_MIDNIGHT])  # checked at 23:59:59.8, then executed at 00:00:00.4
    monkeypatch.setattr(execute, "utcnow", lambda: next(moments, AFTER_MIDNIGHT))
    late = send(amina, baraka, 1_000_00)
    assert execute.execute_batch(db.session, 500) == 1

    request = db.session.get(TransferRequest, late)
    assert request.executed_at == AFTER_MIDNIGHT and request.status == "accepted"
    assert db.session.get(TransferRequest, earlier).status == "accepted"
    # What the ledger now counts for 01/04: this send alone.
    spent = limits.spent_today(db.session, [amina.account_id], AFTER_MIDNIGHT)[amina.account_id]
    assert spent == request.amount + request.fee
    left = format_amount(limits.daily_limit() - spent, "KES")
    receipt = _bodies_to(amina.phone)[-1]
    assert "01/04/26" in receipt
    assert f"within the day is {left}." in receipt, receipt


ODD_BODY = ("Ñandú 💸 ṩ̃ " * 400) + "trailing   "  # 5,000+ characters, astral, combining


def _outbox_rows(phone_prefix: str, request_id: str) -> list[dict]:
    return [
        dict(
            transfer_request_id=request_id if i % 2 else None,
            phone=f"{phone_prefix}{i:03d}".ljust(20, "é")[:20],
            body=body,
            status="pending".ljust(12, "x"),
            attempts=attempts,
            gateway_message_id=gateway,
            failure_reason=reason,
        )
        for i, (body, attempts, gateway, reason) in enumerate(
            [
                (ODD_BODY, 2**31 - 1, None, None),
                ("", 0, "g" * 64, "ü" * 120),
                ("a\tb\nc\\N\r\"'", -(2**31), "☃" * 64, ""),
                ("   ", 1, "", "  "),
            ]
        )
    ]


def _read_back(phone_prefix: str) -> list[tuple]:
    columns = (
        OutboxMessage.transfer_request_id,
        OutboxMessage.phone,
        OutboxMessage.body,
        OutboxMessage.status,
        OutboxMessage.attempts,
        OutboxMessage.gateway_message_id,
        OutboxMessage.failure_reason,
    )
    query = select(*columns).where(OutboxMessage.phone.like(f"{phone_prefix}%")).order_by(OutboxMessage.id)
    return [tuple(r) for r in db.session.execute(query)]


@pytest.mark.usefixtures("app")
def test_binary_copy_stores_odd_values_as_the_array_insert_did(monkeypatch):
    """Long, unicode, tab/newline/backslash-N, empty, NULL and extreme values go through the
    COPY path exactly as through the array INSERT, and the same values are refused by both."""
    from sqlalchemy.exc import DBAPIError

    from ussd_app import database

    if not database.is_postgres(db.session):
        pytest.skip("binary COPY: PostgreSQL only")
    agent = agent_with_float()
    amina = person("+254712000611", "Amina Hassan")
    request_id = send(agent, amina, 100_00)
    table = OutboxMessage.__table__
    assert database._copy_types(table, list(_outbox_rows("c", request_id)[0]), db.engine.dialect)
    database.insert_rows(db.session, table, _outbox_rows("+c", request_id))
    with monkeypatch.context() as patch:
        patch.setattr(database, "_copy_types", lambda *a: None)  # the array INSERT
        database.insert_rows(db.session, table, _outbox_rows("+a", request_id))
    copied, inserted = _read_back("+c"), _read_back("+a")
    assert len(copied) == 4
    assert [r[2:] for r in copied] == [r[2:] for r in inserted]
    assert copied[0][2] == ODD_BODY and copied[0][0] is None and copied[1][0] == request_id
    db.session.commit()

    bad_rows = [
        dict(_outbox_rows("+b", request_id)[0], phone="+2547" + "9" * 16),  # 21 > String(20)
        dict(_outbox_rows("+b", request_id)[0], body="nul\x00"),
        dict(_outbox_rows("+b", request_id)[0], attempts=2**31),
        dict(_outbox_rows("+b", request_id)[0], phone=None),
        dict(_outbox_rows("+b", request_id)[0], transfer_request_id="no-such-request"),
    ]
    for row in bad_rows:
        for copy in (True, False):
            with monkeypatch.context() as patch:
                if not copy:
                    patch.setattr(database, "_copy_types", lambda *a: None)
                with pytest.raises((DBAPIError, ValueError)):
                    database.insert_rows(db.session, table, [row])
            db.session.rollback()
            assert _read_back("+b") == []
    # The connection is still usable after a failed COPY.
    assert db.session.execute(select(OutboxMessage.id).limit(1)).scalar() is not None


@pytest.mark.usefixtures("app")
def test_a_rejection_naming_an_id_beyond_int4_is_never_recorded_against_another_account():
    """Binary COPY's int4 field wraps a Python int modulo 2**32 without a word (psycopg 3.3):
    a rejected transfer naming account 2**32 + n (no such account) must not be stored as if it
    named account n, nor its flags or timeout as other figures. Refused, or stored as named."""
    from sqlalchemy.exc import DBAPIError

    from ussd_app.ledger import (
        AccountKind,
        RejectedTransfer,
        Transfer,
        TransferResult,
        TransferSpec,
        create_transfers,
        house_account,
        open_account,
    )

    session = db.session
    trust = house_account(session, AccountKind.TRUST).id
    wallet = open_account(session, AccountKind.CUSTOMER).id
    session.commit()
    cases = [
        TransferSpec("wrap-debit", 2**32 + wallet, trust, 100, "send"),
        TransferSpec("wrap-credit", trust, 2**32 + wallet, 100, "send"),
        TransferSpec("wrap-flags", trust, wallet, 100, "send", flags=2**32 + 2),
    ]
    for spec in cases:
        try:
            results = create_transfers(session, [spec])
            session.flush()
        except DBAPIError:
            session.rollback()
            continue
        # Accepted: then stored with the flags it was judged on, not their low 32 bits.
        if results[0] == TransferResult.OK:
            stored = session.execute(select(Transfer.flags).where(Transfer.id == spec.id)).scalar_one()
            assert stored == int(spec.flags), stored
        row = session.get(RejectedTransfer, spec.id)
        session.commit()
        if row is not None:
            stored = (row.debit_account_id, row.credit_account_id, row.flags)
            assert stored == (spec.debit_account_id, spec.credit_account_id, int(spec.flags)), stored


@pytest.mark.usefixtures("app")
def test_workers_racing_on_fee_revenue_both_ways_and_one_killed_lose_nothing():
    """Real worker processes: batches of plain sends (fee revenue only credited: late) race
    batches with withdrawals (fee revenue debited for the commission: locked early) on the same
    wallets and agents; one worker is killed (SIGKILL) mid-run. Every request ends posted once
    or refused, fee revenue holds exactly the fees less the commissions of what was posted, no
    commission without its fee, and the ledger checks."""
    import os
    import random
    import signal
    import time

    from sqlalchemy import func

    from tests.conftest import PG_URL
    from tests.test_payments import assert_ledger_ok
    from tests.worker_helpers import finish, run_burst_worker, start_worker
    from ussd_app.ledger import Account, AccountKind, Transfer, house_account
    from ussd_app.payments.emoney import issue_float
    from ussd_app.payments.submit import announce, mint_request_id, record_request
    from ussd_app.queues import TRANSFERS_QUEUE
    from ussd_app.tariffs import quote
    from ussd_app.users import create_user

    if not PG_URL:
        pytest.skip("row locks between worker processes: PostgreSQL (DATABASE_URL)")
    rng = random.Random(19)
    session = db.session
    agents = [
        create_user(session, phone=f"+25470030{i:04d}", name=f"Agent {i}", role="agent", pin="1111")
        for i in range(3)
    ]
    for agent in agents:
        issue_float(session, agent, 50_000_000)
    customers = [
        create_user(session, phone=f"+25470031{i:04d}", name=f"Mteja {i}", role="customer", pin="1234")
        for i in range(12)
    ]
    session.commit()

    def record(kind, payer, payee, amount, commission=0):
        return record_request(
            session,
            request_id=mint_request_id(),
            kind=kind,
            debit_account_id=payer.account_id,
            credit_account_id=payee.account_id,
            amount=amount,
            fee=quote(kind, amount),
            commission=commission,
        ).id

    for c in customers:
        record("send", agents[0], c, 30_000_00)
    session.commit()
    run_burst_worker("--queues", TRANSFERS_QUEUE, TUMA_VELOCITY_MAX_COUNT=0, TUMA_VELOCITY_MAX_VALUE_MAJOR=0)
    session.expire_all()
    fees = house_account(session, AccountKind.FEES)
    fees_before = fees.credits_posted - fees.debits_posted

    ids = []
    for i in range(900):
        payer = rng.choice(customers)
        if i // 30 % 3 == 2:  # runs of 30: batches of sends only (fee revenue late) and of withdrawals
            amount = rng.randint(1, 20) * 100_00
            fee = quote("withdrawal", amount)
            ids.append(record("withdrawal", payer, rng.choice(agents), amount, commission=max(1, fee // 2)))
        else:
            payee = rng.choice([c for c in customers if c is not payer] + agents[:1])
            ids.append(record("send", payer, payee, rng.randint(1, 60) * 100))
        if i % 30 == 29:
            session.commit()  # a run per transaction: the queue takes them in created_at order
    for _ in range(40):
        announce(force=True)
    env = {
        "TUMA_TRANSFER_BATCH_SIZE": 30,
        "TUMA_VELOCITY_MAX_COUNT": 0,
        "TUMA_VELOCITY_MAX_VALUE_MAJOR": 0,
    }
    workers = [start_worker("--burst", "--no-cron", "--queues", TRANSFERS_QUEUE, **env) for _ in range(3)]
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:  # once the race is under way
        done = session.execute(
            select(func.count()).where(TransferRequest.id.in_(ids), TransferRequest.status != "queued")
        ).scalar_one()
        session.rollback()
        if done >= 150:
            os.killpg(workers[0].pid, signal.SIGKILL)
            killed = done
        time.sleep(0.05)
    assert killed is not None and killed < len(ids), killed
    workers[0].wait(timeout=30)
    workers[0].log.close()
    for w in workers[1:]:
        out = finish(w, timeout=180)
        assert w.returncode == 0, out
    run_burst_worker("--queues", TRANSFERS_QUEUE, TUMA_REQUEUE_AFTER_SECONDS=0, **env)

    session.expire_all()
    requests = {
        r.id: r for r in session.execute(select(TransferRequest).where(TransferRequest.id.in_(ids))).scalars()
    }
    statuses = {r.status for r in requests.values()}
    assert "queued" not in statuses, statuses
    legs = {}
    for user_data, code, count in session.execute(
        select(Transfer.user_data, Transfer.code, func.count()).group_by(Transfer.user_data, Transfer.code)
    ):
        legs[(user_data, code)] = count
    fees_in = commissions_out = 0
    for r in requests.values():
        posted = r.status == "accepted"
        assert legs.get((r.id, "fee"), 0) == (1 if posted and r.fee else 0), r.id
        assert legs.get((r.id, "commission"), 0) == (1 if posted and r.commission else 0), r.id
        if posted:
            fees_in += r.fee
            commissions_out += r.commission or 0
    assert sum(r.status == "accepted" for r in requests.values()) > 600
    assert commissions_out > 0
    fees = session.get(Account, fees.id, populate_existing=True)
    assert fees.credits_posted - fees.debits_posted == fees_before + fees_in - commissions_out
    assert fees.debits_posted + fees.debits_pending <= fees.credits_posted
    assert_ledger_ok()
