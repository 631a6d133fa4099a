"""The PIN hop's first statement goes on a pooled connection the pool does not ping when it was
just used (``database.first_statement``): connections the server ended (``pg_terminate_backend``)
between two hops, or one that dies after the pool handed it out, must still let the PIN hop
record its send exactly once; every other path is pinged at check-out as before."""

import logging

import pytest
from sqlalchemy import create_engine, event, func, select, text

from tests.helpers import wait_for
from tests.test_attack_pin_hop import PIN, SENDING, at_send_pin, juma
from ussd_app import database
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest

__all__ = ["juma"]  # the fixture, taken from the PIN-hop attack tests


@pytest.fixture
def admin(app):
    """A connection of the test's own, outside the app's pools, to end the app's backends."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("ending server connections: PostgreSQL")
    engine = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def end(admin, pids: list[int]) -> None:
    """End these backends and wait until the server has let them go."""
    admin.execute(
        text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids}
    )

    def gone():
        left = admin.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))"),
            {"pids": pids},
        ).scalar_one()
        return left == 0

    wait_for(gone, message="the ended backends to go")


def the_apps_backends(admin) -> list[int]:
    """Every other backend on the test database: the app's pools' connections."""
    others = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    return list(admin.execute(text(others)).scalars())


def recorded() -> int:
    found = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    db.session.commit()
    return found


def test_the_servers_connections_ended_between_two_hops_the_pin_hop_records_once(app, juma, admin, caplog):
    """The server ends every connection of the app's after the confirm screen (an operator, a
    restart): the PIN hop records its send once, on a connection the pool made anew at
    check-out (the ended one's socket said so: the statement never had to be run again)."""
    phone = at_send_pin(app)
    db.session.remove()  # the test's own session gives its connection back to the pool
    backends = the_apps_backends(admin)
    assert backends
    end(admin, backends)
    with caplog.at_level(logging.WARNING, logger="ussd_app.database"):
        assert phone.send(PIN).startswith(SENDING)
    assert "run again" not in caplog.text
    assert recorded() == 1
    # Every other path is pinged at check-out as before: the pool replaced what the server ended.
    end(admin, the_apps_backends(admin))
    db.session.remove()
    assert db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one() == 1
    db.session.commit()


def test_a_connection_that_dies_after_the_pool_handed_it_out_is_replaced_and_the_send_recorded_once(
    app, juma, admin, caplog
):
    """The pool hands the PIN hop's row lock a connection used a moment ago, not pinged (its
    socket quiet); the server ends it right then, before the lock's statement is sent. The
    statement (BEGIN) finds it dead; the lock runs again on a new connection; one send."""
    phone = at_send_pin(app)
    db.session.remove()
    ended: list[int] = []

    def end_it(dbapi_connection, _record, _proxy):
        if database._unpinged.get() and not ended:  # the hop's unpinged check-out only
            ended.append(dbapi_connection.info.backend_pid)
            end(admin, ended)

    event.listen(db.engine, "checkout", end_it)
    try:
        with caplog.at_level(logging.WARNING, logger="ussd_app.database"):
            answer = phone.send(PIN)
    finally:
        event.remove(db.engine, "checkout", end_it)
    assert ended, "the hop's check-out was pinged or made anew: nothing was ended under it"
    assert answer.startswith(SENDING), answer
    assert "run again on a new one" in caplog.text
    assert recorded() == 1
    assert phone.repeat().startswith(SENDING)  # the gateway's retry: the same screen, nothing new
    assert recorded() == 1
