"""Small builders shared by tests (not fixtures: plain functions with obvious arguments)."""

import time

from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, TransferFlags, TransferSpec, create_transfers, open_account


def wallets(n: int, kind: AccountKind = AccountKind.CUSTOMER) -> list[int]:
    ids = [open_account(db.session, kind).id for _ in range(n)]
    db.session.commit()
    return ids


def fund(account_id: int, amount: int, transfer_id: str | None = None) -> None:
    """Issue ``amount`` from the trust account into ``account_id`` (as float issue does)."""
    from ussd_app.ledger import house_account

    trust = house_account(db.session, AccountKind.TRUST).id
    tid = transfer_id or f"fund-{account_id}-{amount}-{len(str(amount))}"
    [r] = create_transfers(db.session, [TransferSpec(tid, trust, account_id, amount, "float_issue")])
    assert r.succeeded, r
    db.session.commit()


def spec(id, debit, credit, amount, *, pending_id=None, timeout=0, flags=TransferFlags.NONE, code="test"):
    return TransferSpec(id, debit, credit, amount, code, pending_id=pending_id, timeout=timeout, flags=flags)


def waiting_on_a_lock() -> int:
    """PostgreSQL: how many of this database's backends wait for a lock now (a statement of
    another session blocked behind a row lock), to wait for that instead of sleeping."""
    from sqlalchemy import text

    with db.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()


def wait_for(condition, timeout=30.0, interval=0.02, message="condition"):
    """Poll ``condition`` until it is truthy and return its value; fail after ``timeout`` seconds
    (a bound for a stuck test, never a timed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


def review(runner, verb: str, code: str, operator: str = "Olive", reason: str = "checked with the payer"):
    """``flask review clear|refuse|release --code CODE`` by ``operator``, for ``reason``."""
    return runner.invoke(args=["review", verb, "--code", code, "--operator", operator, "--reason", reason])
