"""Bench customers in bulk: wallets, holders and their funding, without a PIN hash each."""

from sqlalchemy import insert, select

from ussd_app.ledger import Account, AccountKind, TransferSpec, create_transfers, house_account
from ussd_app.users import User

CHUNK = 5_000


def customers(
    session,
    count: int,
    *,
    balance: int,
    tier: str = "basic",
    pin_hash: str | None = None,
    kiswahili_every: int = 0,
) -> list[int]:
    """``count`` customers, +254710000000 upwards (what bench/ussd_mix.lua dials), each wallet
    funded with ``balance`` minor units of e-float; their account ids in phone order. One
    shared ``pin_hash`` (hashing each PIN would take minutes); every ``kiswahili_every``-th
    reads Kiswahili. Commits."""
    blank = dict(
        kind="customer", flags=1, debits_pending=0, debits_posted=0, credits_pending=0, credits_posted=0
    )
    session.execute(insert(Account), [blank] * count)
    session.commit()
    ids = list(
        session.execute(select(Account.id).where(Account.kind == "customer").order_by(Account.id)).scalars()
    )
    for start in range(0, len(ids), CHUNK):
        session.execute(
            insert(User),
            [
                dict(
                    phone=f"+254710{k:06d}",
                    first_name="Bench",
                    last_name=f"Customer {k}",
                    role="customer",
                    language="sw" if kiswahili_every and k % kiswahili_every == 0 else "en",
                    tier=tier,
                    account_id=account_id,
                    pin_hash=pin_hash,
                )
                for k, account_id in enumerate(ids[start : start + CHUNK], start=start)
            ],
        )
    session.commit()
    trust = house_account(session, AccountKind.TRUST).id
    for start in range(0, len(ids), CHUNK):
        specs = [
            TransferSpec(f"fund-{i}", trust, i, balance, "float_issue") for i in ids[start : start + CHUNK]
        ]
        create_transfers(session, specs)
        session.commit()
    return ids
