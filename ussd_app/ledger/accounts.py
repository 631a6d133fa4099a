"""Opening accounts and finding the operator's house accounts."""

from sqlalchemy import select

from .models import Account, AccountFlags, AccountKind

# Every account holds e-money the operator owes (a liability: credits minus debits) and may
# never go below zero, except the trust account: it is the bank money (an asset: debits minus
# credits) that backs all of it, and it can never pay out more than was deposited.
FLAGS_BY_KIND = {kind: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS for kind in AccountKind}
FLAGS_BY_KIND[AccountKind.TRUST] = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS


def open_account(session, kind: AccountKind) -> Account:
    account = Account(
        kind=kind.value,
        flags=int(FLAGS_BY_KIND[kind]),
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
    )
    session.add(account)
    session.flush()
    return account


def house_account(session, kind: AccountKind) -> Account:
    """The one operator account of ``kind`` (created by the first migration)."""
    if kind.is_wallet:
        raise ValueError(f"{kind.value} is a wallet kind, not a house account")
    return session.execute(select(Account).where(Account.kind == kind.value)).scalar_one()


def ensure_house_accounts(session) -> None:
    """Create any missing house account (used by the migration and after a test wipes tables)."""
    present = set(
        session.execute(
            select(Account.kind).where(Account.kind.in_([k.value for k in AccountKind if not k.is_wallet]))
        ).scalars()
    )
    for kind in AccountKind:
        if not kind.is_wallet and kind.value not in present:
            open_account(session, kind)
