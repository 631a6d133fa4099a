"""Property test: random sequences of ledger operations against the reference model.

Creates, holds, posts, partial posts, voids, expiries, duplicate submissions, conflicting
ids and linked chains, on SQLite and on PostgreSQL. After every step the outcomes and all
balances must agree with tests/ledger_model.py, and every invariant must hold.
"""

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from tests.conftest import reset_data
from tests.ledger_model import Model, ModelAccount
from ussd_app.database import db_clock_us
from ussd_app.extensions import db
from ussd_app.ledger import (
    Account,
    AccountKind,
    LateOverflow,
    TransferSpec,
    create_transfers,
    house_account,
    lock_accounts,
    open_account,
)
from ussd_app.ledger import (
    TransferFlags as F,
)
from ussd_app.ledger.check import check
from ussd_app.ledger.expiry import expire_holds, expiry_id

IDS = st.sampled_from([f"t{i}" for i in range(16)])
AMOUNTS = st.integers(min_value=-2, max_value=3_000)
HUGE = st.sampled_from([2**62, 2**62 + 1, 2**63 - 1, 2**63, 2**64]) | st.integers(2**61, 2**63)
SECOND = 1_000_000


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        reset_data()
        session = db.session
        self.model = Model()
        trust = house_account(session, AccountKind.TRUST)
        fees = house_account(session, AccountKind.FEES)
        wallets = [open_account(session, AccountKind.CUSTOMER) for _ in range(3)]
        session.commit()
        self.ids = [trust.id, fees.id] + [w.id for w in wallets]
        for a in (trust, fees, *wallets):
            self.model.accounts[a.id] = ModelAccount(flags=a.flags)
        self.now = db_clock_us(session)

    def submit(self, specs):
        # Every other batch as the worker runs it: locked and read first, with late house
        # accounts (PostgreSQL) that take their postings in the last statement; the answers
        # and balances must be the same. A late overflow is run again without late accounts.
        self.late = not getattr(self, "late", False)
        if self.late:
            try:
                locked = lock_accounts(db.session, specs, late=True)
                got = create_transfers(db.session, specs, now=self.now, locked=locked)
                locked.apply_late(db.session)
            except LateOverflow:
                db.session.rollback()
                got = create_transfers(db.session, specs, now=self.now)
        else:
            got = create_transfers(db.session, specs, now=self.now)
        db.session.commit()
        want = self.model.create(specs, self.now)
        assert got == want, (specs, got, want)

    account = st.integers(min_value=0, max_value=4)

    @rule(
        tid=IDS,
        d=account,
        c=account,
        amount=AMOUNTS,
        pending=st.booleans(),
        timeout=st.sampled_from([0, 5, 60]),
    )
    def transfer(self, tid, d, c, amount, pending, timeout):
        flags = F.PENDING if pending else F.NONE
        self.submit(
            [
                TransferSpec(
                    tid, self.ids[d], self.ids[c], amount, "t", timeout=timeout if pending else 0, flags=flags
                )
            ]
        )

    @rule(tid=IDS, d=account, c=account, amount=st.integers(min_value=1, max_value=5_000) | HUGE)
    def issue(self, tid, d, c, amount):
        """Money enters from the trust account, so wallets have something to spend (at times
        near the columns' limit)."""
        self.submit([TransferSpec("i" + tid, self.ids[0], self.ids[2 + c % 3], amount, "float_issue")])

    @rule(
        tid=IDS,
        d=account,
        c=account,
        amount=HUGE,
        pending=st.booleans(),
        timeout=st.sampled_from([0, 5, 2**31 - 1, 2**31]),
    )
    def huge(self, tid, d, c, amount, pending, timeout):
        """Amounts and timeouts at the edges of the columns: overflows are refused by name, a
        hold that could not be posted among them."""
        flags = F.PENDING if pending else F.NONE
        spec = TransferSpec("h" + tid, self.ids[d], self.ids[c], amount, "h", timeout=timeout, flags=flags)
        self.submit([spec])

    @rule(tid=IDS, pid=IDS, amount=AMOUNTS, post=st.booleans(), with_accounts=st.booleans())
    def resolve(self, tid, pid, amount, post, with_accounts):
        flags = F.POST_PENDING_TRANSFER if post else F.VOID_PENDING_TRANSFER
        if not post:
            amount = max(amount, 0) if amount % 3 else 0
        stored = self.model.transfers.get(pid)
        d = c = None
        if with_accounts and stored is not None:
            d, c = stored[0].debit_account_id, stored[0].credit_account_id
        self.submit([TransferSpec("r" + tid, d, c, amount, "r", pending_id=pid, flags=flags)])

    @rule(
        legs=st.lists(st.tuples(IDS, account, account, AMOUNTS), min_size=1, max_size=3),
        close=st.booleans(),
    )
    def chain(self, legs, close):
        specs = []
        for k, (tid, d, c, amount) in enumerate(legs):
            last = k == len(legs) - 1
            flags = F.NONE if (last and close) else F.LINKED
            specs.append(TransferSpec("c" + tid, self.ids[d], self.ids[c], amount, "c", flags=flags))
        self.submit(specs)

    @rule(data=st.data())
    def repeat(self, data):
        """Resubmit something seen before: the same fields give the first outcome again."""
        seen = [s for s, _, _ in self.model.transfers.values()] + [s for s, _ in self.model.rejected.values()]
        if seen:
            self.submit([data.draw(st.sampled_from(seen))])

    @rule(data=st.data(), delta=st.integers(min_value=1, max_value=5))
    def conflict(self, data, delta):
        """The same id with a different amount is refused and changes nothing."""
        if self.model.transfers:
            s, _, _ = data.draw(st.sampled_from(sorted(self.model.transfers.values(), key=lambda r: r[0].id)))
            self.submit([TransferSpec(**{**s.__dict__, "amount": s.amount + delta})])

    @rule(seconds=st.sampled_from([1, 6, 61]))
    def time_passes_and_holds_expire(self, seconds):
        self.now += seconds * SECOND
        expected = self.model.expired_holds(self.now)
        outcome = expire_holds(db.session, now=self.now)
        db.session.commit()
        assert sorted(h.id for h, _ in outcome) == sorted(expected)
        specs = [
            TransferSpec(
                expiry_id(pid), None, None, 0, "expiry", pending_id=pid, flags=F.VOID_PENDING_TRANSFER
            )
            for pid in expected
        ]
        want = self.model.create(specs, self.now, expiry=True)
        assert [r for _, r in outcome] == want

    @invariant()
    def balances_agree_and_invariants_hold(self):
        if not hasattr(self, "model"):
            return
        # Every modelled account's four balances, read in one statement (not one per account).
        a = Account
        balances = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        rows = db.session.execute(select(a.id, *balances).where(a.id.in_(self.model.accounts)))
        stored = {row[0]: tuple(row[1:]) for row in rows}
        assert stored == {i: modelled.as_tuple() for i, modelled in self.model.accounts.items()}
        failed = [f for f in check(db.session) if not f.ok]
        assert not failed, failed


def test_ledger_agrees_with_reference_model(backend_app):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
