"""Limits by KYC tier and velocity rules, as the worker enforces them inside the batch's
transaction: what the payer's wallet, the request and the SMS say afterwards."""

import json
import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.conftest import PG_URL
from tests.helpers import review, wait_for
from tests.sms_helpers import agent_with_float, execute, outbox, person, send
from ussd_app import limits
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.ledger import Account, Transfer
from ussd_app.ledger.check import check
from ussd_app.payments.execute import execute_requests
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote
from ussd_app.users import User

# Small limits so tests move small sums: basic KES 1,000 a transfer, 2,000 a day, 5,000 held.
SMALL = {
    "LIMITS_BASIC_MAJOR": "1000,2000,5000",
    "LIMITS_FULL_MAJOR": "3000,6000,20000",
    "VELOCITY_MAX_COUNT": 0,
    "VELOCITY_MAX_VALUE_MAJOR": 0,
}


@pytest.fixture
def config(app):
    """Set config for one test, restored after it (the app is shared by the whole run)."""
    saved = dict(app.config)

    def set_(**values):
        app.config.update(values)

    set_(**SMALL)
    yield set_
    app.config.clear()
    app.config.update(saved)


def kes(major: int) -> int:
    return major * 100


def deposit(agent, customer, amount):
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=customer.account_id,
        amount=amount,
    )
    db.session.commit()
    execute()


def request_of(request_id) -> TransferRequest:
    db.session.expire_all()
    return db.session.get(TransferRequest, request_id)


def available(person_) -> int:
    db.session.expire_all()
    return db.session.get(Account, person_.account_id).available


def legs_of(request_id) -> int:
    return db.session.execute(select(func.count()).where(Transfer.user_data == request_id)).scalar_one()


def last_sms(person_) -> str:
    return outbox(phone=person_.phone)[-1].body


def assert_ledger_ok():
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


@pytest.fixture
def funded(config):
    agent = agent_with_float()
    amina = person("+254711000001", "Amina Wanjiku")
    baraka = person("+254711000002", "Baraka Otieno")
    deposit(agent, amina, kes(4_000))
    return agent, amina, baraka


def test_daily_limit_refuses_the_send_that_passes_it_and_says_by_how_much(funded):
    _, amina, baraka = funded
    first = send(amina, baraka, kes(1_000))  # + KES 13 fee
    second = send(amina, baraka, kes(1_000))  # 2,026 > 2,000
    execute()
    assert request_of(first).status == "accepted"
    refused = request_of(second)
    assert (refused.status, refused.result) == ("rejected", "limit_daily_exceeded")
    assert legs_of(second) == 0
    assert available(amina) == kes(4_000) - kes(1_013)
    sms = last_sms(amina)
    assert sms.startswith(
        f"{refused.code} Failed: KES 1,000.00 not sent. Over your daily limit of KES 2,000.00 by KES 26.00."
    )
    assert not [m for m in outbox(phone=baraka.phone) if m.transfer_request_id == second]
    assert_ledger_ok()


def test_per_transfer_limit_in_kiswahili(config):
    agent = agent_with_float()
    zawadi = person("+254711000003", "Zawadi Njeri", language="sw")
    baraka = person("+254711000002", "Baraka Otieno")
    deposit(agent, zawadi, kes(3_000))
    request_id = send(zawadi, baraka, kes(1_500))
    execute()
    assert request_of(request_id).result == "limit_transaction_exceeded"
    assert "Imezidi kikomo cha KES 1,000.00 kwa muamala kwa KES 500.00." in last_sms(zawadi)
    assert available(zawadi) == kes(3_000)


def test_a_full_tier_customer_may_send_more(funded, runner):
    _, amina, baraka = funded
    result = runner.invoke(args=["accounts", "tier", "--phone", amina.phone, "--tier", "full"])
    assert result.exit_code == 0, result.output
    request_id = send(amina, baraka, kes(2_500))
    execute()
    assert request_of(request_id).status == "accepted"
    assert db.session.execute(select(User.tier).where(User.phone == amina.phone)).scalar_one() == "full"
    # Audited like the back office's changes: who (the CLI), the customer, old and new tier.
    entry = db.session.execute(select(AuditEntry).where(AuditEntry.action == "account.tier")).scalar_one()
    detail = json.loads(entry.detail)
    assert entry.target == amina.phone and (detail["old_tier"], detail["via"]) == ("basic", "cli")


def test_a_wallet_cannot_be_credited_past_its_tier_balance(funded):
    agent, amina, baraka = funded
    deposit(agent, baraka, kes(4_500))
    request_id = send(amina, baraka, kes(600))  # 4,500 + 600 > 5,000
    execute()
    assert request_of(request_id).result == "limit_balance_exceeded"
    assert "BARAKA OTIENO cannot receive it: over their balance limit." in last_sms(amina)
    assert available(baraka) == kes(4_500)
    over = record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=amina.account_id,
        amount=kes(1_500),  # 4,000 + 1,500 > 5,000: the agent is told
    ).id
    db.session.commit()
    execute()
    assert request_of(over).result == "limit_balance_exceeded"
    assert "deposit of KES 1,500.00 not made. AMINA WANJIKU cannot receive it" in last_sms(agent)


def test_a_payer_without_the_money_is_told_so_never_the_payees_limit(funded):
    """The payee's balance limit is no answer to a payer who cannot pay: else refused sends
    would measure the payee's balance to the shilling (the payer's own refusal comes first)."""
    agent, amina, baraka = funded
    deposit(agent, baraka, kes(4_500))
    zawadi = person("+254711000003", "Zawadi Njeri")
    deposit(agent, zawadi, kes(100))
    broke = send(zawadi, baraka, kes(600))  # 4,500 + 600 > 5,000, and Zawadi has 100
    execute()
    assert (request_of(broke).status, request_of(broke).result) == ("rejected", "exceeds_credits")
    assert "cannot receive" not in last_sms(zawadi) and "balance limit" not in last_sms(zawadi)
    assert available(baraka) == kes(4_500) and available(zawadi) == kes(100)
    able = send(amina, baraka, kes(600))  # Amina can pay: the limit refuses it, as before
    execute()
    assert request_of(able).result == "limit_balance_exceeded"
    assert_ledger_ok()


def test_requests_in_one_batch_count_against_each_other(funded):
    _, amina, baraka = funded
    ids = [send(amina, baraka, kes(600)) for _ in range(4)]  # 3 x 613 = 1,839; the 4th passes 2,000
    execute()
    assert [request_of(i).status for i in ids] == ["accepted", "accepted", "accepted", "rejected"]
    assert "by KES 452.00" in last_sms(amina)


def test_velocity_holds_for_review_and_the_operator_clears_or_refuses(funded, config, runner):
    _, amina, baraka = funded
    config(VELOCITY_MAX_COUNT=2, LIMITS_BASIC_MAJOR="100000,100000,100000")
    ids = [send(amina, baraka, kes(50)) for _ in range(4)]
    execute()
    held = [request_of(i) for i in ids]
    assert [r.status for r in held] == ["accepted", "accepted", "review", "review"]
    assert held[2].result == "velocity_count"
    codes = [r.code for r in held]
    assert f"{codes[3]} On hold:" in last_sms(amina)
    assert "Nothing has left your account." in last_sms(amina)
    assert available(amina) == kes(4_000) - kes(100)
    listing = runner.invoke(args=["review", "list"])
    assert codes[2] in listing.output and codes[3] in listing.output

    cleared = review(runner, "clear", codes[2])
    assert cleared.exit_code == 0, cleared.output
    execute()
    assert request_of(ids[2]).status == "accepted"  # cleared: the velocity rule is not asked again
    assert available(baraka) == kes(150)

    refused = review(runner, "refuse", codes[3].lower())
    assert refused.exit_code == 0, refused.output
    assert (request_of(ids[3]).status, request_of(ids[3]).result) == ("rejected", "review_refused")
    assert "Stopped by a security check" in last_sms(amina)
    again = review(runner, "release", codes[3])
    assert again.exit_code != 0 and "not held for review" in again.output
    assert_ledger_ok()


def test_velocity_by_value_in_the_rolling_hour(funded, config):
    _, amina, baraka = funded
    config(VELOCITY_MAX_VALUE_MAJOR=1_500)
    first, second = send(amina, baraka, kes(1_000)), send(amina, baraka, kes(600))
    execute()
    assert request_of(first).status == "accepted"
    assert (request_of(second).status, request_of(second).result) == ("review", "velocity_value")


def test_limits_come_from_config_per_tier(config):
    assert limits.tier_limits("basic") == limits.TierLimits(kes(1_000), kes(2_000), kes(5_000))
    assert limits.tier_limits("full").daily == kes(6_000)
    assert limits.tier_limits("unheard-of") == limits.tier_limits("basic")


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
def test_two_batches_racing_for_one_payer_cannot_pass_the_daily_limit(app, funded):
    """Batch A has posted (uncommitted) when batch B starts for the same payer: B waits for
    A's locks, then reads A's posting and refuses its own request."""
    _, amina, baraka = funded
    first, second = send(amina, baraka, kes(1_000)), send(amina, baraka, kes(1_000))
    db.session.rollback()
    a, b = Session(db.engine), Session(db.engine)
    outcome = {}
    try:
        execute_requests(a, [a.get(TransferRequest, first)])  # holds its locks, not committed

        def batch_b():
            with app.app_context():
                execute_requests(b, [b.get(TransferRequest, second)])
                b.commit()
                outcome["done"] = True

        thread = threading.Thread(target=batch_b)
        thread.start()
        wait_for(
            lambda: db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one(),
            message="batch B to wait for batch A's locks",
        )
        db.session.rollback()
        assert "done" not in outcome
        a.commit()
        thread.join(timeout=30)
        assert outcome.get("done")
    finally:
        a.close()
        b.close()
    assert request_of(first).status == "accepted"
    assert (request_of(second).status, request_of(second).result) == ("rejected", "limit_daily_exceeded")
    assert available(amina) == kes(4_000) - kes(1_000) - quote("send", kes(1_000))
