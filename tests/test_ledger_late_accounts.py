"""Late house accounts (``ledger.engine.Locked``) with real concurrent transactions (PostgreSQL).

Two transactions that both credit fee revenue do not wait for each other on its row until
their last statement; a batch that debits fee revenue (an agent's commission) locks it early,
after its wallets, and mixed with a batch that credits it late, in either order, neither
deadlocks nor loses a shilling.
"""

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import PG_URL
from tests.helpers import waiting_on_a_lock
from ussd_app.extensions import db
from ussd_app.ledger import (
    Account,
    AccountKind,
    TransferFlags,
    TransferResult,
    TransferSpec,
    create_transfers,
    house_account,
    lock_accounts,
    open_account,
)
from ussd_app.ledger.check import check

pytestmark = pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")


def _setup():
    session = db.session
    trust = house_account(session, AccountKind.TRUST).id
    fees = house_account(session, AccountKind.FEES).id
    commissions = house_account(session, AccountKind.COMMISSIONS).id
    wallets = [open_account(session, AccountKind.CUSTOMER).id for _ in range(3)]
    specs = [TransferSpec(f"fund{i}", trust, w, 100_000, "deposit") for i, w in enumerate(wallets)]
    specs.append(TransferSpec("fund-fees", wallets[0], fees, 10_000, "fee"))
    assert create_transfers(session, specs) == [TransferResult.OK] * len(specs)
    session.commit()
    return fees, commissions, wallets


def _session() -> Session:
    session = Session(db.engine)
    session.execute(text("SET lock_timeout = '20s'"))
    return session


def _post(session, specs, *, late=True, before_late=None):
    locked = lock_accounts(session, specs, late=late)
    results = create_transfers(session, specs, locked=locked)
    if before_late is not None:
        before_late()
    locked.apply_late(session)
    session.commit()
    return locked, results


def _balances(account_id):
    a = db.session.get(Account, account_id, populate_existing=True)
    return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted


def test_two_transactions_crediting_fees_do_not_wait_for_each_other(app):
    fees, _, wallets = _setup()
    before = _balances(fees)
    first, second = _session(), _session()
    try:
        # The first transaction has posted (its fee leg late) and holds its wallet's lock...
        paused = threading.Event()
        go_on = threading.Event()
        outcome = {}

        def run_first():
            try:
                specs = [TransferSpec("a.fee", wallets[0], fees, 700, "fee")]
                outcome["first"] = _post(first, specs, before_late=lambda: (paused.set(), go_on.wait(30)))
            except Exception as exc:  # noqa: BLE001  # reported below
                outcome["first"] = exc

        thread = threading.Thread(target=run_first)
        thread.start()
        assert paused.wait(30)
        # ... while the second credits the same fee account and commits without waiting for it.
        locked, results = _post(second, [TransferSpec("b.fee", wallets[1], fees, 300, "fee")])
        assert results == [TransferResult.OK]
        assert fees in locked.late
        go_on.set()
        thread.join(30)
        locked_first, results_first = outcome["first"]
        assert results_first == [TransferResult.OK] and fees in locked_first.late
    finally:
        first.close()
        second.close()
    dp, dpo, cp, cpo = before
    assert _balances(fees) == (dp, dpo, cp, cpo + 1_000)
    assert all(f.ok for f in check(db.session))


@pytest.mark.parametrize("early_first", [True, False])
def test_fees_locked_early_and_late_in_either_order_neither_deadlocks(app, early_first):
    """One batch debits fee revenue (a commission: locked early, after its wallets), the other
    only credits it (late); both touch wallet 0. Whichever locks first, the other waits on the
    wallet, never in a circle, and every posting lands once."""
    fees, commissions, wallets = _setup()
    before_fees, before_commissions = _balances(fees), _balances(commissions)
    linked = TransferFlags.LINKED
    early_specs = [
        TransferSpec("w.main", wallets[0], wallets[1], 1_000, "withdrawal", flags=linked),
        TransferSpec("w.fee", wallets[0], fees, 100, "fee", flags=linked),
        TransferSpec("w.commission", fees, commissions, 40, "commission"),
    ]
    late_specs = [
        TransferSpec("s.main", wallets[2], wallets[0], 500, "send", flags=linked),
        TransferSpec("s.fee", wallets[2], fees, 70, "fee"),
    ]
    holder_specs, waiter_specs = (early_specs, late_specs) if early_first else (late_specs, early_specs)
    holder, waiter = _session(), _session()
    outcome = {}
    try:
        paused, go_on = threading.Event(), threading.Event()

        def run_holder():
            try:
                outcome["holder"] = _post(
                    holder, holder_specs, before_late=lambda: (paused.set(), go_on.wait(30))
                )
            except Exception as exc:  # noqa: BLE001  # reported below
                outcome["holder"] = exc

        def run_waiter():
            try:
                outcome["waiter"] = _post(waiter, waiter_specs)
            except Exception as exc:  # noqa: BLE001  # reported below
                outcome["waiter"] = exc

        first = threading.Thread(target=run_holder)
        first.start()
        assert paused.wait(30)
        second = threading.Thread(target=run_waiter)
        second.start()
        deadline = time.monotonic() + 10
        while waiting_on_a_lock() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_on_a_lock() >= 1  # the second waits for wallet 0...
        assert "waiter" not in outcome
        go_on.set()  # ... until the first commits; then it goes on (no deadlock: 40P01)
        first.join(30)
        second.join(30)
    finally:
        go_on.set()
        holder.close()
        waiter.close()
    for name in ("holder", "waiter"):
        assert not isinstance(outcome[name], Exception), outcome[name]
    early_locked, early_results = outcome["holder" if early_first else "waiter"]
    late_locked, late_results = outcome["waiter" if early_first else "holder"]
    assert early_results == [TransferResult.OK] * 3 and late_results == [TransferResult.OK] * 2
    assert fees not in early_locked.late and commissions in early_locked.late
    assert fees in late_locked.late
    assert _balances(fees) == tuple(b + d for b, d in zip(before_fees, (0, 40, 0, 170), strict=True))
    assert _balances(commissions) == tuple(
        b + d for b, d in zip(before_commissions, (0, 0, 0, 40), strict=True)
    )
    assert all(f.ok for f in check(db.session))
