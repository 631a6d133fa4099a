"""The migrations build exactly the schema the models describe, on this run's database.

A column added to a model without its migration (or the other way round) would work in the
tests' ORM and fail on a real upgrade: Alembic's own comparison catches it here."""

import os
from datetime import datetime, timedelta

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tests.conftest import reset_data
from tests.test_allowances import cast  # noqa: F401 (a fixture)
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, house_account
from ussd_app.payments.models import HoldState, RequestKind, TransferRequest


def test_the_migrated_schema_matches_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")

# Rows as 0009 stored them, in the words used before the vocabulary was settled (0010).
OLD_ROWS = [
    "INSERT INTO transfer_requests (id, code, kind, debit_account_id, credit_account_id, amount, fee,"
    " status, attempts, created_at, hold_state, pending_request_id, result) VALUES"
    " ('r-hold', 'C1', 'send_unregistered', :a, :b, 500, 0, 'posted', 1, :now, 'released', NULL, 'ok'),"
    " ('r-hold.r', 'C2', 'suspense_release', :b, :a, 500, 0, 'posted', 1, :now, NULL, 'r-hold', 'ok'),"
    " ('r-buy', 'C3', 'protected_purchase', :a, :b, 300, 0, 'posted', 1, :now, 'refunded', NULL, 'ok'),"
    " ('r-buy.r', 'C4', 'protected_refund', :b, :a, 300, 0, 'queued', 0, :now, NULL, 'r-buy', NULL),"
    " ('r-air', 'C5', 'airtime', :a, :b, 20, 0, 'posted', 1, :now, 'held', NULL, 'ok'),"
    " ('r-rev', 'C6', 'send', :a, :b, 70, 0, 'queued', 1, :now, NULL, NULL, 'review_released')",
    # An open reversal of the send C1 (its reference), as the partial unique index saw it.
    "INSERT INTO transfer_requests (id, code, kind, debit_account_id, credit_account_id, amount, fee,"
    " status, attempts, created_at, hold_state, reference) VALUES"
    " ('r-rv', 'C7', 'reversal', :b, :a, 9, 0, 'posted', 1, :now, 'held', 'C1')",
    "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, code, flags, timeout,"
    " created_at) VALUES ('r-hold.r.pay', :b, :a, 500, 'suspense_release', 0, 0, 1)",
    "INSERT INTO rejected_transfers (id, debit_account_id, credit_account_id, amount, code, flags, timeout,"
    " result, created_at) VALUES ('r-x', :a, :b, 5, 'protected_release', 0, 0, 'exceeds_credits', 1)",
    "INSERT INTO outbox_messages (request_id, phone, body, status, attempts) VALUES"
    " ('r-hold', '+254700000001', 'hello', 'pending', 0)",
    'INSERT INTO inbound_messages (at_id, phone, "to", text, intent, request_id) VALUES'
    " ('at-1', '+254700000001', '12345', 'REVERSE C1', 'reverse', 'r-hold')",
    "INSERT INTO trust_deposits (request_id, amount) VALUES ('r-air', 20)",
    "INSERT INTO audit_log (action, request_id, created_at) VALUES ('test', 'trace-0001', :now)",
]


def _read(connection, sql):
    return [tuple(row) for row in connection.execute(text(sql)).all()]


def test_the_upgrade_renames_stored_words_and_the_downgrade_puts_them_back(app):
    """Rows written before 0010 read in the new words after it (kinds, hold states, statuses,
    a review's result, the ledger codes of the legs, the renamed columns), and back again."""
    a, b = (house_account(db.session, kind).id for kind in (AccountKind.SUSPENSE, AccountKind.FEES))
    db.session.commit()
    try:
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0009_ledger")
        with db.engine.begin() as connection:
            for sql in OLD_ROWS:
                connection.execute(text(sql), {"a": a, "b": b, "now": datetime(2026, 12, 1, 12, 0)})
        flask_migrate.upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            requests = _read(
                connection, "SELECT id, kind, status, hold_state, result FROM transfer_requests ORDER BY id"
            )
            assert requests == [
                ("r-air", "airtime", "accepted", "pending", "ok"),
                ("r-buy", "protected_purchase", "accepted", "voided", "ok"),
                ("r-buy.r", "protected_void", "queued", None, None),
                ("r-hold", "send_unregistered", "accepted", "posted", "ok"),
                ("r-hold.r", "suspense_post", "accepted", None, "ok"),
                ("r-rev", "send", "queued", None, "review_cleared"),
                ("r-rv", "reversal", "accepted", "pending", None),
            ]
            assert _read(connection, "SELECT code FROM transfers WHERE id = 'r-hold.r.pay'") == [
                ("suspense_post",)
            ]
            assert _read(connection, "SELECT code FROM rejected_transfers") == [("protected_post",)]
            assert _read(connection, "SELECT transfer_request_id FROM outbox_messages") == [("r-hold",)]
            assert _read(connection, "SELECT transfer_request_id FROM inbound_messages") == [("r-hold",)]
            assert _read(connection, "SELECT transfer_request_id FROM trust_deposits") == [("r-air",)]
            assert _read(connection, "SELECT trace_id FROM audit_log") == [("trace-0001",)]
        # Still one open reversal per send: a second one for C1 is refused by the database.
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO transfer_requests (id, code, kind, debit_account_id, credit_account_id,"
                    " amount, fee, status, attempts, created_at, hold_state, reference) VALUES"
                    " ('r-rv2', 'C8', 'reversal', :b, :a, 9, 0, 'queued', 0, :now, 'pending', 'C1')"
                ),
                {"a": a, "b": b, "now": datetime(2026, 12, 1, 12, 0)},
            )
        assert db.session.get(TransferRequest, "r-hold.r").kind == RequestKind.SUSPENSE_POST
        assert db.session.get(TransferRequest, "r-hold").hold_state == HoldState.POSTED
        db.session.rollback()

        flask_migrate.downgrade(directory=MIGRATIONS, revision="0009_ledger")
        with db.engine.connect() as connection:
            assert _read(
                connection, "SELECT id, kind, status, hold_state, result FROM transfer_requests ORDER BY id"
            ) == [
                ("r-air", "airtime", "posted", "held", "ok"),
                ("r-buy", "protected_purchase", "posted", "refunded", "ok"),
                ("r-buy.r", "protected_refund", "queued", None, None),
                ("r-hold", "send_unregistered", "posted", "released", "ok"),
                ("r-hold.r", "suspense_release", "posted", None, "ok"),
                ("r-rev", "send", "queued", None, "review_released"),
                ("r-rv", "reversal", "posted", "held", None),
            ]
            assert _read(connection, "SELECT code FROM transfers WHERE id = 'r-hold.r.pay'") == [
                ("suspense_release",)
            ]
            assert _read(connection, "SELECT request_id FROM outbox_messages") == [("r-hold",)]
            assert _read(connection, "SELECT request_id FROM audit_log") == [("trace-0001",)]
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
        reset_data()
    test_the_migrated_schema_matches_the_models(app)


def _index_predicates(
    connection, names=("ix_transfers_expires_at", "ix_outbox_messages_gateway_message_id")
) -> dict[str, str | None]:
    """{index: its WHERE (None: the whole table)} of ``names`` (by default the two indexes 0016
    made partial); an index missing is not in it."""
    if connection.dialect.name == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        rows = _read(connection, sql)
    else:
        rows = _read(connection, "SELECT name, sql FROM sqlite_master WHERE type = 'index'")
    found = {}
    for name, sql in rows:
        if name in names:
            where = sql.upper().split(" WHERE ", 1)
            found[name] = where[1].replace("(", "").replace(")", "").strip() if len(where) == 2 else None
    return found


def test_0016_makes_two_indexes_partial_and_its_downgrade_makes_them_whole(app):
    """The model says ``WHERE <column> IS NOT NULL`` for both (Alembic's comparison does not
    look at an index's predicate, so it is checked here), and the downgrade restores the full
    indexes."""
    expected = {
        "ix_transfers_expires_at": "EXPIRES_AT IS NOT NULL",
        "ix_outbox_messages_gateway_message_id": "GATEWAY_MESSAGE_ID IS NOT NULL",
    }
    try:
        with db.engine.connect() as connection:
            assert _index_predicates(connection) == expected
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0015_standing_orders")
        with db.engine.connect() as connection:
            assert _index_predicates(connection) == dict.fromkeys(expected)
        flask_migrate.upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            assert _index_predicates(connection) == expected
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    test_the_migrated_schema_matches_the_models(app)


def test_0019_times_the_refused_settlements_waiting_and_its_downgrade_drops_the_column(cast):  # noqa: F811
    """The upgrade gives each refused allowance settlement waiting the time its next attempt
    was due (its last refusal's ``told_at`` plus ``retry_wait`` of that attempt), as the refusal
    itself now stores it; other allowances have none. The downgrade drops the column and its
    partial index."""
    from sqlalchemy import inspect

    from tests.api_helpers import execute_all
    from tests.test_allowances import approved, charge
    from tests.test_allowances_refused import refuse_payments_to
    from ussd_app.clock import utcnow
    from ussd_app.payments import allowances as al
    from ussd_app.payments.allowances.settlement import retry_wait
    from worker import jobs

    customer, merchant = cast
    waiting, other = approved(customer, merchant, n=1), approved(customer, merchant, n=2)
    assert charge(waiting, merchant, 5_00, 1).ok
    refuse_payments_to(merchant)
    assert al.settle(db.session, waiting, why="merchant") is not None
    db.session.commit()
    execute_all()
    jobs.settle_allowances(now=utcnow() + retry_wait(1) + timedelta(minutes=1))  # attempt 2
    execute_all()

    def due() -> dict:
        db.session.expire_all()
        found = {a: db.session.get(al.Allowance, a).settle_again_at for a in (waiting, other)}
        db.session.commit()
        return found

    refused = db.session.get(al.AllowanceSettlement, f"{waiting}.h1.r2")
    assert refused is not None and refused.told_at is not None
    expected = {waiting: refused.told_at + retry_wait(2), other: None}
    db.session.commit()
    assert due() == expected  # as the refusal stored it
    index = {"ix_allowances_settle_again_at": "SETTLE_AGAIN_AT IS NOT NULL"}
    try:
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0018_sender_outbox_unfinished")
        with db.engine.connect() as connection:
            columns = {c["name"] for c in inspect(connection).get_columns("allowances")}
            assert "settle_again_at" not in columns
            assert _index_predicates(connection, tuple(index)) == {}
        flask_migrate.upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            assert _index_predicates(connection, tuple(index)) == index
        assert due() == expected  # as the upgrade filled it
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    test_the_migrated_schema_matches_the_models(None)


def test_0020_adds_payee_named_true_for_every_request_and_its_downgrade_drops_it(app):
    """Requests recorded before 0020 were named by the code of their day: the upgrade keeps them
    named (the server default). The downgrade drops the column, and with it the payouts' "not
    granted" (the old code names every posted payout; upgraded again, they are named)."""
    from sqlalchemy import inspect, select

    from tests.ussd_helpers import person
    from ussd_app.payments.submit import record_request

    payer, payee = person("+254700000002", "Mama Mboga", role="merchant"), person("+254712000111")
    for request_id, named in (("r-named", True), ("r-unnamed", False)):
        record_request(
            db.session,
            request_id=request_id,
            kind=RequestKind.PAYOUT.value,
            debit_account_id=payer.account_id,
            credit_account_id=payee.account_id,
            amount=1,
            payee_named=named,
        )
    db.session.commit()

    def flags() -> dict:
        found = dict(db.session.execute(select(TransferRequest.id, TransferRequest.payee_named)).all())
        db.session.commit()
        return found

    assert flags() == {"r-named": True, "r-unnamed": False}
    try:
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0019_settle_again_at")
        with db.engine.connect() as connection:
            assert "payee_named" not in {
                c["name"] for c in inspect(connection).get_columns("transfer_requests")
            }
            assert connection.execute(text("SELECT count(*) FROM transfer_requests")).scalar_one() == 2
        flask_migrate.upgrade(directory=MIGRATIONS)
        assert flags() == {"r-named": True, "r-unnamed": True}
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    test_the_migrated_schema_matches_the_models(app)


def test_0021_adds_payer_named_true_for_every_request_and_its_downgrade_drops_it(app):
    """Payment requests recorded before 0021 were named by the code of their day (My requests,
    the declined SMS): the upgrade keeps them named (the server default). The downgrade drops
    the column, and with it the API's "not granted" (upgraded again, they are named)."""
    from sqlalchemy import inspect, select

    from tests.ussd_helpers import person
    from ussd_app.payments import payment_requests as pr

    owner = person("+254700000002", "Mama Mboga", role="merchant")
    person("+254712000111")
    for group_id, named in (("g-named", True), ("g-unnamed", False)):
        pr.create(
            db.session, owner, group_id, pr.Kind.MERCHANT, [("+254712000111", 1)], "x", payer_named=named
        )
    db.session.commit()

    def flags() -> dict:
        found = dict(db.session.execute(select(pr.PaymentRequest.id, pr.PaymentRequest.payer_named)).all())
        db.session.commit()
        return found

    assert flags() == {"g-named.1": True, "g-unnamed.1": False}
    try:
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0020_payee_named")
        with db.engine.connect() as connection:
            assert "payer_named" not in {
                c["name"] for c in inspect(connection).get_columns("payment_requests")
            }
            assert connection.execute(text("SELECT count(*) FROM payment_requests")).scalar_one() == 2
        flask_migrate.upgrade(directory=MIGRATIONS)
        assert flags() == {"g-named.1": True, "g-unnamed.1": True}
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    test_the_migrated_schema_matches_the_models(app)
