"""Bench customers in bulk: wallets, holders and their funding, without a PIN hash each."""

from sqlalchemy import Integer, case, func, insert, literal, select

from ussd_app.ledger import Account, AccountKind, Transfer, TransferSpec, create_transfers, house_account
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
    if session.get_bind().dialect.name == "postgresql" and len(ids) > 1:
        _fund_like_the_first(session, trust, ids, balance)
        return ids
    for start in range(0, len(ids), CHUNK):
        specs = [
            TransferSpec(f"fund-{i}", trust, i, balance, "float_issue") for i in ids[start : start + CHUNK]
        ]
        create_transfers(session, specs)
        session.commit()
    return ids


def _fund_like_the_first(session, trust: int, ids: list[int], balance: int) -> None:
    """Each wallet funded as ``create_transfers`` funds it, in three statements: the first
    wallet's funding goes through ``create_transfers``; what it wrote is read back (its transfer,
    the two accounts' balances, the count of every table's rows before and after) and must be
    that one transfer and those two balance changes alone, or this refuses; the others' transfers
    are copies of that row (each with its own id and credit account, all at its moment: one
    ``create_transfers`` call gives all its transfers one), and their balances move by the same
    amounts in one UPDATE each side. 100,000 wallets took ~17 s (loaded) through
    ``create_transfers`` in chunks of 5,000; ``ledger check`` replays the result after every run."""
    from sqlalchemy import inspect, text

    first, rest = ids[0], ids[1:]
    tables = inspect(session.get_bind()).get_table_names()

    def counts() -> dict[str, int]:
        return {t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}  # noqa: S608

    def balances() -> dict[int, tuple]:
        rows = session.execute(
            select(Account.id, Account.__table__).where(Account.id.in_([first, trust]))
        ).all()
        return {row[0]: tuple(row[1:]) for row in rows}

    before, held = counts(), balances()
    create_transfers(session, [TransferSpec(f"fund-{first}", trust, first, balance, "float_issue")])
    session.flush()
    after, now = counts(), balances()
    grew = {t: after[t] - before[t] for t in tables if after[t] != before[t]}
    assert grew == {"transfers": 1}, f"funding wrote more than one transfer: {grew}"
    columns = [c.name for c in Account.__table__.columns]
    moved = {
        (account, columns[k], now[account][k] - held[account][k])
        for account in (first, trust)
        for k in range(len(columns))
        if now[account][k] != held[account][k]
    }
    assert moved == {(first, "credits_posted", balance), (trust, "debits_posted", balance)}, moved
    transfer = Transfer.__table__
    names = [c.name for c in transfer.columns]
    per_copy = {"id": "'fund-' || n.account", "credit_account_id": "n.account"}
    row = session.execute(select(transfer).where(transfer.c.id == f"fund-{first}")).one()._asdict()
    assert (row["id"], row["credit_account_id"]) == (f"fund-{first}", first), row
    for name, value in row.items():  # nothing else of the row may name the first wallet
        if name in per_copy:
            continue
        if isinstance(value, str):
            assert f"fund-{first}" not in value and value != str(first), (name, value)
        if name.endswith("account_id"):
            assert value != first, (name, value)
    chosen = ", ".join(per_copy.get(name, f"r.{name}") for name in names)
    session.execute(
        text(
            f"INSERT INTO transfers ({', '.join(names)}) SELECT {chosen} FROM transfers r, "  # noqa: S608
            "unnest(CAST(:rest AS bigint[])) AS n(account) WHERE r.id = :first"
        ),
        dict(rest=rest, first=f"fund-{first}"),
    )
    session.execute(
        text(
            "UPDATE accounts SET credits_posted = credits_posted + :amount WHERE id = ANY(CAST(:rest AS bigint[]))"
        ),
        dict(amount=balance, rest=rest),
    )
    session.execute(
        text("UPDATE accounts SET debits_posted = debits_posted + :total WHERE id = :trust"),
        dict(total=balance * len(rest), trust=trust),
    )
    session.commit()


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
