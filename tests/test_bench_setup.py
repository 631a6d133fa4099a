"""The benchmarks' set-based setup writes the rows the real flows write (bench/population.py's
funding, bench/allowance_bench.py's ``started_like``), so a faster ``make bench`` measures the
same database. PostgreSQL only: on SQLite the bench funds through ``create_transfers``."""

import pytest
from sqlalchemy import select, text

from bench.allowance_bench import started_like
from bench.population import CHUNK, _rows_in_postgresql, customers
from tests.conftest import reset_data
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, TransferSpec, create_transfers, house_account
from ussd_app.ledger.check import check
from ussd_app.payments import allowances as al
from ussd_app.payments.models import transaction_code
from ussd_app.users import User, create_user


@pytest.fixture
def pg(backend_app):
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("the set-based setup is PostgreSQL's")
    return db.session


def _ledger(session):
    """Transfers and accounts, each account named by its rank (ids differ between two fills)."""
    accounts = session.execute(text("SELECT * FROM accounts ORDER BY id")).all()
    rank = {row[0]: k for k, row in enumerate(accounts)}
    transfers = [
        (f"fund-{rank[int(tid.removeprefix('fund-'))]}", rank[debit], rank[credit], *rest)
        for tid, debit, credit, *rest in session.execute(
            text(
                "SELECT id, debit_account_id, credit_account_id, amount, pending_id, code, flags, timeout, "
                "expires_at, user_data FROM transfers ORDER BY id"
            )
        )
    ]
    return sorted(transfers), [(rank[row[0]], *row[1:]) for row in accounts]


def test_the_funding_copies_are_the_transfers_create_transfers_makes(pg):
    ids = customers(pg, 30, balance=5_000_000, tier="full", kiswahili_every=3)
    copied = _ledger(pg)
    assert len(copied[0]) == 30 and all(f.ok for f in check(pg))
    pg.rollback()
    reset_data()
    ids_again = _rows_in_postgresql(pg, 30, tier="full", pin_hash=None, kiswahili_every=3)
    trust = house_account(pg, AccountKind.TRUST).id
    for start in range(0, len(ids_again), CHUNK):
        specs = [TransferSpec(f"fund-{i}", trust, i, 5_000_000, "float_issue") for i in ids_again[start:]]
        create_transfers(pg, specs)
    pg.commit()
    assert len(ids_again) == len(ids)
    assert _ledger(pg) == copied


def test_started_like_writes_what_al_start_writes_one_by_one(pg):
    ids = customers(pg, 10, balance=5_000_000, tier="full")
    shop = create_user(pg, phone="+254799000018", name="Bench News", role="merchant", pin=None, till="99018")
    people = [pg.execute(select(User).where(User.account_id == i)).scalar_one() for i in ids]
    one_by_one = [
        al.start(pg, p, shop, limit=10_000, period="day", allowance_id=al.new_id()).id for p in people[:5]
    ]
    first = al.start(pg, people[5], shop, limit=10_000, period="day", allowance_id=al.new_id())
    pg.flush()
    copies = [first.id, *started_like(pg, first, people[6:])]
    pg.commit()

    per_row = {"id", "customer_phone", "customer_account_id", "hold_request_id", "code", "debit_account_id"}
    per_row |= {"reference", "created_at", "decided_at", "period_starts_at", "period_ends_at"}

    def rows(table, key, chosen):
        found = pg.execute(text(f"SELECT * FROM {table} WHERE {key} = ANY(:ids)"), {"ids": chosen}).mappings()  # noqa: S608
        return [dict(r) for r in found]

    for table, key in (("allowances", "id"), ("transfer_requests", "reference")):
        real, copied = rows(table, key, one_by_one), rows(table, key, copies)
        assert len(real) == len(copied) == 5
        shared = lambda rs: sorted(sorted((k, v) for k, v in r.items() if k not in per_row) for r in rs)  # noqa: E731
        assert shared(real) == shared(copied), table
    for r in rows("allowances", "id", copies):
        hold = (
            pg.execute(text("SELECT * FROM transfer_requests WHERE id = :h"), {"h": r["hold_request_id"]})
            .mappings()
            .one()
        )
        assert hold["id"] == f"{r['id']}.h1" and hold["code"] == transaction_code(hold["id"])
        assert (hold["debit_account_id"], hold["reference"]) == (r["customer_account_id"], r["id"])
        assert (
            pg.execute(select(User.phone).where(User.account_id == r["customer_account_id"])).scalar_one()
            == r["customer_phone"]
        )
        assert r["period_ends_at"] - r["period_starts_at"] == real_period(pg, one_by_one[0])
        assert r["created_at"] == r["decided_at"] == r["period_starts_at"]


def real_period(session, allowance_id):
    row = session.get(al.Allowance, allowance_id)
    return row.period_ends_at - row.period_starts_at
