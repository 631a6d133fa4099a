"""A menu hop's reads (``ussd_app/reads.py``): on PostgreSQL one autocommit statement on a pool
of its own that does not ping, read again once on a new connection when the server dropped
the pooled one; on SQLite the hop's session. Whatever the path, the answers are the ones a
person got before: a caller, a recipient or a lock committed a moment ago is seen, and the
limits before the PIN count what was spent today.

Run on both databases (with and without DATABASE_URL); the dropped-connection tests need a
real PostgreSQL and are skipped without one."""

import time

import pytest
from sqlalchemy import bindparam, create_engine, select, text
from sqlalchemy.pool import NullPool

from tests.escrow_helpers import cash_in
from tests.ussd_helpers import CUSTOMER_MENU, SECOND_CUSTOMER, Phone, fresh, options, person, statements_sent
from ussd_app import reads
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.users import OPERATOR_LOCK_UNTIL, User, create_user, find_by_phone
from worker import jobs

JUMA, WANJIRU = "+254712000111", SECOND_CUSTOMER["phone"]
NEWCOMER = "+254712000999"


def on_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def drop_every_connection_of_the_app(app) -> int:
    """What a PostgreSQL restart or failover does to the app's pools: every backend of the
    app's database ended by the server (from a connection of its own); returns once they are
    gone. The number ended."""
    killer = create_engine(db.engine.url, poolclass=NullPool)
    try:
        with killer.connect() as connection:
            pids = (
                connection.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                .scalars()
                .all()
            )
            for pid in pids:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.commit()
            deadline = time.monotonic() + 30
            while connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": pids}
            ).scalar_one():
                assert time.monotonic() < deadline, "the backends did not end"
                connection.commit()
            return len(pids)
    finally:
        killer.dispose()


@pytest.fixture
def postgresql_only(app):
    if not on_postgresql():
        pytest.skip("PostgreSQL drops connections; SQLite has none to drop")
    return app


def test_a_first_hop_right_after_postgresql_dropped_the_pooled_connections_answers(postgresql_only, customer):
    client = postgresql_only.test_client()
    assert options(Phone(client, JUMA).dial()) == CUSTOMER_MENU  # the hop reads' pool has one
    hop_reads = reads.engine(postgresql_only)
    assert hop_reads.pool.checkedin() == 1
    db.session.remove()
    assert drop_every_connection_of_the_app(postgresql_only) >= 1
    # The pooled connection is dead and nothing pinged it: the read finds out, and reads again.
    assert options(Phone(client, JUMA).dial()) == CUSTOMER_MENU
    assert options(Phone(client, WANJIRU).dial()) != CUSTOMER_MENU  # not registered: registration


def test_a_recipient_hop_right_after_postgresql_dropped_the_pooled_connections_answers(
    postgresql_only, customer, second_customer
):
    client = postgresql_only.test_client()
    phone = Phone(client, JUMA)
    phone.walk("1")
    db.session.remove()
    assert drop_every_connection_of_the_app(postgresql_only) >= 1
    assert phone.send("0712000222") == "CON Send to Wanjiru Kamau\nEnter amount"


def test_an_amount_hop_right_after_postgresql_dropped_the_pooled_connections_still_says_the_limit(
    postgresql_only, config, customer, second_customer, agent
):
    config(LIMITS_BASIC_MAJOR="1000,150000,100000")
    cash_in(customer, agent)
    client = postgresql_only.test_client()
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222")
    db.session.remove()
    assert drop_every_connection_of_the_app(postgresql_only) >= 1
    assert phone.send("1500").startswith("CON Over your limit of KES 1,000.00 per transaction.")
    assert phone.send("500").startswith("CON Send KES 500.00 to Wanjiru Kamau")


def test_a_number_registered_a_moment_ago_is_found_as_a_recipient(app, customer):
    client = app.test_client()
    phone = Phone(client, JUMA)
    phone.walk("1")
    assert phone.send("0712000999").startswith("CON +254712000999 is not on Tuma.")
    assert phone.send("2").startswith("END ")  # Cancel
    person(NEWCOMER, "Neema Wekesa", pin="1357")  # committed now
    _, body = fresh(client, JUMA, "1", "0712000999")
    assert body == "CON Send to Neema Wekesa\nEnter amount"


def test_a_caller_who_registered_a_moment_ago_gets_the_menu_at_once(app):
    client = app.test_client()
    assert options(Phone(client, NEWCOMER).dial()) != CUSTOMER_MENU  # registration
    person(NEWCOMER, "Neema Wekesa", pin="1357")
    assert options(Phone(client, NEWCOMER).dial()) == CUSTOMER_MENU


def lock(phone: str, until) -> None:
    user = find_by_phone(db.session, phone)
    user.locked_until = until
    db.session.commit()


def test_a_caller_an_operator_locked_a_moment_ago_is_refused_at_the_first_hop(app, customer):
    client = app.test_client()
    assert options(Phone(client, JUMA).dial()) == CUSTOMER_MENU
    lock(JUMA, OPERATOR_LOCK_UNTIL)
    assert Phone(client, JUMA).dial() == "END Your Tuma account is locked by Tuma. Please call customer care."


def test_a_caller_locked_by_wrong_pins_a_moment_ago_is_told_so_and_not_that_tuma_locked_him(app, customer):
    from datetime import timedelta

    lock(JUMA, utcnow() + timedelta(minutes=30))
    assert (
        Phone(app.test_client(), JUMA).dial().startswith("END Your PIN is locked after too many wrong tries.")
    )


def test_an_operator_lock_mid_session_is_refused_at_the_next_hop_with_the_right_words(app, customer, config):
    config(USSD_CALLER_CACHE=False)  # every hop reads the caller: the read itself must see it
    phone = Phone(app.test_client(), JUMA)
    phone.walk("1")
    lock(JUMA, OPERATOR_LOCK_UNTIL)
    assert phone.send("0712000222") == "END Your Tuma account is locked by Tuma. Please call customer care."


def test_a_customer_an_agent_registered_chooses_a_pin_first_and_then_has_the_menu(app):
    client = app.test_client()
    create_user(db.session, phone=NEWCOMER, name="Neema Wekesa", role="customer", pin=None)
    db.session.commit()
    phone = Phone(client, NEWCOMER)
    assert phone.dial() == "CON Welcome to Tuma, Neema. Choose a 4-digit PIN"
    phone.send("1357")
    assert phone.send("1357") == "END Your PIN is set. Dial again to use Tuma."
    assert options(Phone(client, NEWCOMER).dial()) == CUSTOMER_MENU


def test_back_home_reads_nothing_while_the_session_knows_its_caller(app, customer):
    phone = Phone(app.test_client(), JUMA)
    phone.walk("2")
    with statements_sent() as statements:
        assert options(phone.send("00")) == CUSTOMER_MENU
    assert statements == []  # whether a PIN is set is among the facts: no row is read


def test_the_limits_before_the_pin_count_what_was_sent_a_moment_ago(
    app, config, customer, second_customer, agent
):
    config(LIMITS_BASIC_MAJOR="70000,2000,100000")  # KES 2,000 a day
    cash_in(customer, agent)
    client = app.test_client()
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222")
    assert phone.send("1500").startswith("CON Send KES 1,500.00 to Wanjiru Kamau")  # nothing sent yet
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222", "1500", "1")
    assert phone.send("8642").startswith("END Sending KES 1,500.00")
    assert jobs.execute_transfers() == 1  # posted: it counts from now on
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222")
    assert phone.send("1500").startswith("CON Over your daily limit of KES 2,000.00:")
    assert phone.send("100").startswith("CON Send KES 100.00 to Wanjiru Kamau")


def test_a_read_inside_an_open_transaction_sees_its_writes_and_one_outside_sees_only_commits(app):
    """The rule ``reads`` follows: a hop that already has a transaction reads in it (its own
    writes seen); one that has none reads what is committed (on PostgreSQL one autocommit
    statement on its own connection, on SQLite in the session), never an uncommitted row."""
    users = User.__table__
    name_of = select(users.c.first_name).where(users.c.phone == bindparam("phone"))
    create_user(db.session, phone=NEWCOMER, name="Neema Wekesa", role="customer", pin=None)
    db.session.flush()  # written, not committed
    assert reads.first(db.session, name_of, {"phone": NEWCOMER}) == ("Neema",)
    db.session.rollback()
    assert reads.first(db.session, name_of, {"phone": NEWCOMER}) is None
    # On PostgreSQL that read opened no transaction of the session's: it went on its own.
    assert db.session().in_transaction() is not on_postgresql()
    db.session.rollback()
    person(NEWCOMER, "Neema Wekesa", pin="1357")
    if on_postgresql():  # another transaction's uncommitted change is not seen
        with db.engine.connect() as other:
            other.execute(text("UPDATE users SET first_name = 'Nobody' WHERE phone = :p"), {"p": NEWCOMER})
            assert reads.first(db.session, name_of, {"phone": NEWCOMER}) == ("Neema",)
            other.commit()
        assert reads.first(db.session, name_of, {"phone": NEWCOMER}) == ("Nobody",)


def test_every_hop_read_gives_the_rows_sqlalchemy_gives_and_is_counted_as_a_statement(
    app, customer, second_customer, agent
):
    """On PostgreSQL a hop read runs its statement compiled once on the pooled connection's own
    cursor (``reads._prepared``), not through SQLAlchemy's execution: the same rows, the same
    values (today's spending after a posted send, with its IN lists of kinds), each statement
    seen by the engine's ``before_cursor_execute`` listeners as before. On SQLite the session."""
    from ussd_app import limits, tariffs
    from ussd_app.users import holder_by_phone
    from ussd_app.ussd.caller import _statement as facts_statement

    payer = cash_in(customer, agent)
    phone = Phone(app.test_client(), JUMA)
    phone.walk("1", "0712000222", "1500", "1")
    assert phone.send("8642").startswith("END Sending KES 1,500.00")
    assert jobs.execute_transfers() == 1
    db.session.remove()
    holder = holder_by_phone.__globals__["_HOLDER"]
    asked = [
        (holder, {"phone": WANJIRU}),
        (facts_statement(), {"phone": JUMA}),
        (limits._spent_statement(on_postgresql()), {"ids": [payer], **_today()}),
        (tariffs._in_force_statement(), {"now": utcnow()}),
        (_recorded_statement(), {"minted": "nope"}),
    ]
    for statement, params in asked:
        with statements_sent() as sent:
            found = reads.rows(db.session, statement, params)
        assert [s for s in sent if not s.startswith("BEGIN")] == sent[-1:]  # (SQLite's BEGIN)
        assert sent[-1].lstrip().startswith("SELECT")
        if on_postgresql():  # compiled once, run on the cursor: not SQLAlchemy's path
            assert app.extensions[reads.PREPARED][statement] is not None
        db.session.remove()
        expected = [tuple(row) for row in db.session.execute(statement, params).all()]
        db.session.remove()
        assert [tuple(row) for row in found] == expected
        first = reads.first(db.session, statement, params)
        assert (tuple(first) if first is not None else None) == (expected[0] if expected else None)
        db.session.remove()
    spent = limits.spent_today(db.session, [payer], hop=True)
    assert spent[payer] >= 150_000  # the KES 1,500 sent (and its fee), in minor units


def _today() -> dict:
    from datetime import timedelta

    from ussd_app.limits import start_of_today

    since = start_of_today()
    return {"since": since, "until": since + timedelta(days=1)}


def _recorded_statement():
    from ussd_app.ussd import views

    views._recorded(*views.MINTED_IDS["transfer_id"], "warm")
    db.session.remove()
    return views._RECORDED[("transfer_requests", "id")]
