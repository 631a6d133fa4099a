"""Bench customers in bulk: wallets, holders and their funding, without a PIN hash each."""

from sqlalchemy import Integer, case, func, insert, literal, select

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
    if session.get_bind().dialect.name == "postgresql":
        ids = _rows_in_postgresql(
            session, count, tier=tier, pin_hash=pin_hash, kiswahili_every=kiswahili_every
        )
    else:
        ids = _rows(session, count, tier=tier, pin_hash=pin_hash, kiswahili_every=kiswahili_every)
    trust = house_account(session, AccountKind.TRUST).id
    for start in range(0, len(ids), CHUNK):
        specs = [
            TransferSpec(f"fund-{i}", trust, i, balance, "float_issue") for i in ids[start : start + CHUNK]
        ]
        create_transfers(session, specs)
        session.commit()
    return ids


BLANK = dict(kind="customer", flags=1, debits_pending=0, debits_posted=0, credits_pending=0, credits_posted=0)


def _customer_ids(session) -> list[int]:
    return list(
        session.execute(select(Account.id).where(Account.kind == "customer").order_by(Account.id)).scalars()
    )


def _rows_in_postgresql(
    session, count: int, *, tier: str, pin_hash: str | None, kiswahili_every: int
) -> list[int]:
    """The wallets and their holders, each in one INSERT ... SELECT over generate_series (the
    database writes the rows; 100,000 took 20 s as rows sent from here): the same rows as
    ``_rows``, the model's other defaults included by ``from_select``."""
    series = func.generate_series(1, count).table_valued("n")
    session.execute(
        insert(Account).from_select(
            list(BLANK), select(*(literal(v).label(k) for k, v in BLANK.items())).select_from(series)
        )
    )
    session.commit()
    numbered = (
        select(Account.id, (func.row_number().over(order_by=Account.id) - 1).label("k"))
        .where(Account.kind == "customer")
        .subquery()
    )
    k = numbered.c.k
    language = (
        case((k % kiswahili_every == 0, literal("sw")), else_=literal("en"))
        if kiswahili_every
        else literal("en")
    )
    session.execute(
        insert(User).from_select(
            ["phone", "first_name", "last_name", "role", "language", "tier", "account_id", "pin_hash"],
            select(
                literal("+254710") + func.lpad(k.cast(Integer).cast(User.phone.type), 6, "0"),
                literal("Bench"),
                literal("Customer ") + k.cast(Integer).cast(User.last_name.type),
                literal("customer"),
                language,
                literal(tier),
                numbered.c.id,
                literal(pin_hash, User.pin_hash.type),
            ),
        )
    )
    session.commit()
    return _customer_ids(session)


def _rows(session, count: int, *, tier: str, pin_hash: str | None, kiswahili_every: int) -> list[int]:
    """The wallets and their holders, as rows sent from here (any database)."""
    session.execute(insert(Account), [BLANK] * count)
    session.commit()
    ids = _customer_ids(session)
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
    return ids
