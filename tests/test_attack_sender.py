"""Attack tests on the sender's one connection per job and its unfinished-rows index: the
job's connection cut by the database at each of its commits and inside a claim, the database
away for a moment mid-job, and the 0018 index up, down and up with rows of every status."""

import contextlib
import socket
import threading
from datetime import timedelta

import flask_migrate
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from tests import sms_helpers, test_migrations
from tests.conftest import PG_URL
from tests.helpers import wait_for
from tests.sms_helpers import outbox
from tests.test_migrations import MIGRATIONS, _read
from tests.test_sms_sender import in_thread, promise
from ussd_app.africas_talking import get_client
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.sms.outbox import OutboxMessage, OutboxStatus, add_sms
from ussd_app.sms.outbox import batched as outbox_batched
from ussd_app.sms.sender import claim_lanes, claim_timeout, send_due

gateway = sms_helpers.gateway  # the fixture

pg_only = pytest.mark.skipif(not PG_URL, reason="the job holds one PostgreSQL connection (DATABASE_URL)")


class Cutter:
    """Cuts the job thread's own PostgreSQL connection (pg_terminate_backend from another
    session, waited for) just before its ``nth`` COMMIT, or before its first statement that
    starts with ``before``: the database goes away with the transaction open, as in a restart
    or a failover. Only the job's thread is cut, once."""

    def __init__(self, engine, *, nth: int | None = None, before: str | None = None):
        self.engine, self.nth, self.before = engine, nth, before
        self.thread: threading.Thread | None = None
        self.commits = 0
        self.cut = 0

    def _kill(self, connection) -> None:
        pid = connection.connection.dbapi_connection.info.backend_pid
        with self.engine.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}).scalar()
        self.cut += 1

    def on_commit(self, connection) -> None:
        if threading.current_thread() is not self.thread or self.nth is None:
            return
        self.commits += 1
        if self.commits == self.nth and not self.cut:
            self._kill(connection)

    def on_execute(self, connection, cursor, statement, parameters, context, executemany) -> None:
        if threading.current_thread() is not self.thread or self.before is None or self.cut:
            return
        if statement.lstrip().upper().startswith(self.before):
            self._kill(connection)

    def __enter__(self):
        event.listen(self.engine, "commit", self.on_commit)
        event.listen(self.engine, "before_cursor_execute", self.on_execute)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "commit", self.on_commit)
        event.remove(self.engine, "before_cursor_execute", self.on_execute)


def _job_with_cut(app, monkeypatch, width: int, **cut):
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", width)
    till = "+254712000600"
    for i in range(4):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    with Cutter(db.engine, **cut) as cutter:
        thread, result = in_thread(app, lambda: send_due(db.session, get_client(), 100))
        cutter.thread = thread
        thread.join(timeout=60)
    return till, cutter, result


@pg_only
@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5, 6])
def test_the_job_connection_cut_at_any_of_its_commits_sends_each_receipt_once_in_order(
    app, gateway, monkeypatch, nth
):
    """One lane of a busy number, one place (each answer its own commit): commit 1 is the
    claim, 2-5 the four records, 6 the last claim that finds nothing. The connection is cut
    before that commit reaches the server: the job does it once more on a new connection."""
    till, cutter, result = _job_with_cut(app, monkeypatch, 1, nth=nth)
    assert cutter.cut == 1, cutter.commits
    assert result == {"value": {"sent": 4, "retry": 0, "failed": 0, "paused": 0}}
    assert [(r.status, r.attempts, r.claim_token) for r in outbox()] == [("sent", 1, None)] * 4
    assert [m.message for m in gateway.inbox(till)] == [f"Receipt {i} for {till}" for i in range(4)]


@pg_only
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT OUTBOX_MESSAGES.ID, OUTBOX_MESSAGES.PHONE, OUTBOX_MESSAGES.BODY",  # the claim's locked read
        "UPDATE OUTBOX_MESSAGES SET STATUS",  # the claim's write
    ],
)
def test_the_job_connection_cut_inside_a_claim_sends_each_receipt_once_in_order(
    app, gateway, monkeypatch, statement
):
    till, cutter, result = _job_with_cut(app, monkeypatch, 4, before=statement)
    assert cutter.cut == 1
    assert result == {"value": {"sent": 4, "retry": 0, "failed": 0, "paused": 0}}
    assert [(r.status, r.attempts) for r in outbox()] == [("sent", 1)] * 4
    assert [m.message for m in gateway.inbox(till)] == [f"Receipt {i} for {till}" for i in range(4)]


class Outage:
    """A TCP hop between the job and PostgreSQL that can go down (every connection through it
    cut, new ones refused) and come back: the database as a restart or a failover shows it to
    its clients, without restarting the shared server."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.sockets: list[socket.socket] = []
        self.refused = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not self.up.is_set():
                client.close()  # the server is not there yet
                self.refused += 1
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def down(self) -> None:
        self.up.clear()
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.sockets = []

    def close(self) -> None:
        self.listener.close()
        self.down()


@pg_only
def test_a_database_down_for_a_moment_mid_job_loses_no_answer_and_sends_nothing_twice(
    app, gateway, monkeypatch
):
    """The database goes away while a receipt is at the gateway and comes back a moment later
    (a restart, a failover): the job records the answer it holds once the database is back,
    instead of failing with it in hand; unrecorded, that receipt went out again after the claim
    timeout."""
    monkeypatch.setitem(app.config, "SMS_CLAIM_BATCH", 1)
    till = "+254712000700"
    for i in range(3):
        promise(till, body=f"Receipt {i}")
    db.session.remove()
    url = db.engine.url
    outage = Outage(url.host or "127.0.0.1", url.port or 5432)
    engine = create_engine(
        url.set(host="127.0.0.1", port=outage.port),
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=utc"},
    )
    gateway.hold_next(1, after=1)  # the first receipt answered and recorded, the second held
    job = Session(bind=engine)
    thread, result = in_thread(app, lambda: send_due(job, get_client(), 100))
    try:
        wait_for(
            lambda: (gateway.held == 1 and outbox()[0].status == "sent") or not thread.is_alive(),
            message="the second receipt at the gateway after the first was recorded",
        )
        db.session.remove()
        assert thread.is_alive(), result
        outage.down()
        gateway.release()  # its answer comes back while the database is away
        wait_for(lambda: len(gateway.inbox(till)) == 2, message="the second receipt answered")
        # The database stays away while the job tries twice to reach it, then comes back.
        wait_for(lambda: outage.refused >= 2 or not thread.is_alive(), message="two tries to reconnect")
        outage.up.set()
        thread.join(timeout=60)
    finally:
        outage.up.set()
        gateway.release()
        thread.join(timeout=60)
        job.close()
        engine.dispose()
        outage.close()
    # Whatever the job made of it, a later job past the claim timeout finishes the number.
    later = send_due(db.session, get_client(), 100, now=utcnow() + claim_timeout() + timedelta(seconds=1))
    db.session.remove()
    assert [r.status for r in outbox()] == ["sent"] * 3, (result, later)
    assert [m.message for m in gateway.inbox(till)] == [f"Receipt {i} for {till}" for i in range(3)], result


def _unfinished_index(connection) -> str | None:
    """The WHERE of ``ix_outbox_messages_unfinished``, normalised; None when absent."""
    if connection.dialect.name == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
    for name, definition in _read(connection, sql):
        if name == "ix_outbox_messages_unfinished":
            where = definition.upper().split(" WHERE ", 1)[1]
            for noise in ("(", ")", "::TEXT", "::CHARACTER VARYING", "ARRAY", "[", "]", " "):
                where = where.replace(noise, "")
            return where.replace("=ANY", "IN")
    return None


def test_0018_up_down_up_with_rows_of_every_status_keeps_them_and_the_claim_reads_the_same(app, gateway):
    """0018 up, down and up again on this run's database with a number's rows in every status
    the outbox has: the index holds the pending and sending ones only, the rows are untouched
    either way, and the sender sends the pending one whatever the history around it."""
    till = "+254712000800"
    statuses = [s.value for s in OutboxStatus]
    assert set(statuses) == {"pending", "sending", "sent", "delivered", "failed"}  # every status
    for status in statuses:
        db.session.add(OutboxMessage(phone=till, body=f"{status} row", status=status, attempts=1))
    db.session.commit()
    before = [(r.id, r.status) for r in outbox()]
    db.session.rollback()  # SQLite: no read left open across the DDL
    try:
        with db.engine.connect() as connection:
            assert _unfinished_index(connection) == "STATUSIN'PENDING','SENDING'"
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0017_review_held_index")
        with db.engine.connect() as connection:
            assert _unfinished_index(connection) is None
        assert [(r.id, r.status) for r in outbox()] == before
        db.session.rollback()  # SQLite: no read left open across the upgrade's DDL
        flask_migrate.upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            assert _unfinished_index(connection) == "STATUSIN'PENDING','SENDING'"
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    assert [(r.id, r.status) for r in outbox()] == before
    db.session.rollback()
    test_migrations.test_the_migrated_schema_matches_the_models(app)
    # The number's lane is its pending row, then its 'sending' one (no claimed_at: its sender
    # is gone), in id order; its sent, delivered and failed rows are never read.
    counts = send_due(db.session, get_client(), 100)
    db.session.remove()
    assert counts["sent"] == 2
    assert [m.message for m in gateway.inbox(till)] == ["pending row", "sending row"]


def test_a_claim_of_more_numbers_than_sqlite_takes_in_one_compound_select_claims_them_all(app):
    """Each number's rows are one arm of a UNION ALL; SQLite refuses more than 500 arms in one
    statement ("too many terms in compound SELECT"), so TUMA_SMS_CLAIM_BATCH above 500 failed
    every claim there."""
    phones = [f"+2547130{i:05d}" for i in range(501)]
    with outbox_batched(db.session):
        for phone in phones:
            add_sms(db.session, phone=phone, body="Receipt")
    db.session.commit()
    lanes = claim_lanes(db.session, len(phones), 1)
    assert sorted(lane[0].phone for lane in lanes) == phones
    assert {r.status for r in outbox()} == {"sending"}
