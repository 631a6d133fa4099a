"""The ledger's invariants, checked from the database alone (``flask ledger check``).

1. Σ debits_pending = Σ credits_pending, and Σ debits_posted = Σ credits_posted.
2. No account breaks its flag's limit.
3. Every pending transfer is resolved at most once, and only pending transfers are resolved.
4. E-money in circulation (what every other account holds) = the trust account's balance =
   the trust deposits on record, and no bank reference issued e-float twice (the caller, who
   knows the deposits, says which references were used more than once).
5. Replaying the transfer log reproduces every account's four balances.
"""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased

from .figures import e_money, unresolved_holds
from .models import Account, AccountFlags, Transfer, TransferFlags


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str


def _sum(session, column) -> int:
    """Σ column. Every balance fits 64 bits, but their sum over all accounts may not: SQLite's
    SUM then fails ("integer overflow"), and the sum is taken here instead (PostgreSQL's SUM of
    a bigint is a numeric and never overflows)."""
    try:
        return int(session.execute(select(func.coalesce(func.sum(column), 0))).scalar_one())
    except OperationalError as exc:
        if "integer overflow" not in str(exc.orig):
            raise
        return sum(int(v) for v in session.execute(select(column)).scalars())


def check(
    session,
    trust_deposits_total: int | None = None,
    references_issued_twice: dict[str, int] | None = None,
    shown=None,
) -> list[Finding]:
    """Every invariant; ``shown`` writes an amount of the reconciliation as people read it (the
    caller knows the currency: ``messages.money``) after the bare minor units."""
    findings: list[Finding] = []

    dp, cp = _sum(session, Account.debits_pending), _sum(session, Account.credits_pending)
    dpo, cpo = _sum(session, Account.debits_posted), _sum(session, Account.credits_posted)
    findings.append(Finding("pending debits = pending credits", dp == cp, f"{dp} = {cp}"))
    findings.append(Finding("posted debits = posted credits", dpo == cpo, f"{dpo} = {cpo}"))

    over = session.execute(
        select(func.count()).where(
            (
                (Account.flags.op("&")(int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)) != 0)
                & (Account.debits_pending + Account.debits_posted > Account.credits_posted)
            )
            | (
                (Account.flags.op("&")(int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)) != 0)
                & (Account.credits_pending + Account.credits_posted > Account.debits_posted)
            )
        )
    ).scalar_one()
    findings.append(Finding("no account beyond its limit", over == 0, f"{over} accounts beyond"))

    twice = session.execute(
        select(func.count()).select_from(
            select(Transfer.pending_id)
            .where(Transfer.pending_id.is_not(None))
            .group_by(Transfer.pending_id)
            .having(func.count() > 1)
            .subquery()
        )
    ).scalar_one()
    target = aliased(Transfer)
    not_pending = session.execute(
        select(func.count())
        .select_from(Transfer)
        .join(target, target.id == Transfer.pending_id)
        .where(target.flags.op("&")(int(TransferFlags.PENDING)) == 0)
    ).scalar_one()
    findings.append(
        Finding(
            "each pending transfer resolved at most once",
            twice == 0 and not_pending == 0,
            f"{twice} resolved twice, {not_pending} resolutions of non-pending transfers",
        )
    )

    trust_balance, circulation = e_money(session)
    figures = [("e-money", circulation), ("trust", trust_balance)]
    if trust_deposits_total is not None:
        figures.append(("deposits", trust_deposits_total))
    ok = len({v for _, v in figures}) == 1
    detail = ", ".join(f"{name} {v}" for name, v in figures)
    if shown is not None:  # what the minor units are, as people read them
        detail += (
            f" (minor units; {shown(circulation)} each)"
            if ok
            else " (minor units; " + ", ".join(shown(v) for _, v in figures) + ")"
        )
    findings.append(Finding("e-money in circulation = trust balance", ok, detail))
    if references_issued_twice is not None:
        twice = ", ".join(f"{ref} ({n} deposits)" for ref, n in references_issued_twice.items())
        ok = not references_issued_twice
        findings.append(Finding("each bank reference issued once", ok, twice or "no reference twice"))

    findings.append(_replay(session))
    return findings


def _replay(session) -> Finding:
    """Recompute every balance from the transfers alone and compare."""
    flag = Transfer.flags.op("&")
    posted = select(Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount).where(
        flag(int(TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)) == 0
    )
    open_holds = unresolved_holds(Transfer.debit_account_id, Transfer.credit_account_id, Transfer.amount)
    expected: dict[int, list[int]] = {}
    for query, debit_slot, credit_slot in ((open_holds, 0, 2), (posted, 1, 3)):
        rows = query.subquery()
        for side, slot in ((rows.c.debit_account_id, debit_slot), (rows.c.credit_account_id, credit_slot)):
            for account_id, total in session.execute(select(side, func.sum(rows.c.amount)).group_by(side)):
                expected.setdefault(account_id, [0, 0, 0, 0])[slot] += int(total)
    wrong = []
    # The four columns, not Account objects: the same comparison, without building (and
    # tracking) an object per account, most of the check's time on a big ledger.
    balances = select(
        Account.id,
        Account.debits_pending,
        Account.debits_posted,
        Account.credits_pending,
        Account.credits_posted,
    )
    for account_id, *stored in session.execute(balances):
        if stored != expected.get(account_id, [0, 0, 0, 0]):
            wrong.append(account_id)
    return Finding(
        "replaying transfers reproduces every balance",
        not wrong,
        f"{len(wrong)} accounts differ" + (f": {wrong[:10]}" if wrong else ""),
    )
