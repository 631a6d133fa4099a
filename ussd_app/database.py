"""The database: PostgreSQL from ``DATABASE_URL``, or the embedded SQLite file.

SQLite is set up the way a ledger needs it: WAL (readers do not block the writer), a busy
timeout (writers wait instead of failing), foreign keys on, and every transaction started
with ``BEGIN IMMEDIATE`` so a transaction that reads and then writes can never fail halfway
with "database is locked" because another writer got in between.
"""

import contextvars
import logging
import os
import select as selectors
import time
from datetime import UTC

from sqlalchemy import Boolean, String, any_, bindparam, event, insert, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session

from . import reads
from .extensions import db, migrate

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled connection used less than this long ago, to which the server sent nothing since, is
# handed to a statement run by ``first_statement`` without the pool's ping (see there).
IDLE_PING_SECONDS = 5.0
_IDLE_SINCE = "tuma_idle_since"  # a pooled connection's info: when it was last given back
_unpinged = contextvars.ContextVar("tuma_unpinged_checkout", default=False)


def is_postgres(session_or_engine) -> bool:
    bind = getattr(session_or_engine, "bind", None) or session_or_engine.get_bind()
    return bind.dialect.name == "postgresql"


def among(session, column, values):
    """``column IN values`` for a batch's worth of values. On PostgreSQL it is
    ``column = ANY(:array)``: one parameter however many values, so the statement's text is
    the same for every batch and the driver parses and prepares it once, instead of parsing
    hundreds of placeholders each time (a fifth of a transfer batch's time before this)."""
    values = list(values)
    if is_postgres(session):
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def _arrays(session, table, columns: list[str], rows: list[dict]) -> tuple[list[str], list]:
    """One ``CAST(:name AS type[])`` per column and its bind parameter: the column's values
    across ``rows``. Every row must name exactly these columns."""
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"{table.name}: every row must name the same columns")
    dialect = session.get_bind().dialect
    casts, params = [], []
    for i, name in enumerate(columns):
        column = table.c[name]
        # A cast to VARCHAR(n) cuts a longer value short without a word; cast to VARCHAR and
        # let the INSERT's own assignment to the column refuse it, as COPY and executemany do.
        # (The driver casts each bound array to its type as well: the same applies there.)
        kind, bound = column.type.compile(dialect=dialect), column.type
        if kind.startswith("VARCHAR("):
            kind, bound = "VARCHAR", String()
        casts.append(f"CAST(:c{i} AS {kind}[])")
        params.append(bindparam(f"c{i}", [row[name] for row in rows], type_=ARRAY(bound)))
    return casts, params


# Column types whose values go to PostgreSQL as they are in Python (no SQLAlchemy bind
# processing), so binary COPY can send them: the psycopg type whose binary form each takes. The
# server reads each field with its column's own input (a varchar's length is still checked).
_COPY_TYPES = {
    "BIGINT": "int8",
    "INTEGER": "int4",
    "SMALLINT": "int2",
    "VARCHAR": "text",
    "TEXT": "text",
    "TIMESTAMP WITHOUT TIME ZONE": "timestamp",
    "BOOLEAN": "bool",
}


_INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1)}


def _copy_types(table, columns: list[str], dialect) -> list[str] | None:
    """The psycopg type of each column for a binary COPY, or None when one of them needs
    SQLAlchemy's own processing (JSON, an Enum, a TypeDecorator...)."""
    types = []
    for name in columns:
        column_type = table.c[name].type
        # A Boolean's bind processing only refuses what is not a bool: ``_copy_rows`` does too.
        if column_type.bind_processor(dialect) is not None and not isinstance(column_type, Boolean):
            return None
        compiled = column_type.compile(dialect=dialect).split("(", 1)[0].strip()
        if compiled not in _COPY_TYPES:
            return None
        types.append(_COPY_TYPES[compiled])
    return types


# SQLAlchemy's statement events do not see a COPY (it goes on the driver's connection): whoever
# must know of one (the crash tests' fault checkpoints, devtools/faults.py) asks to hear of it
# here, so this module imports none of them.
_copy_listeners: list = []


def on_copy(listener) -> None:
    """Call ``listener(connection, table_name)`` before each COPY into a table, with the
    SQLAlchemy connection it runs on (its ``info`` is the one the engine's events see)."""
    _copy_listeners.append(listener)


def _copy_rows(session, table, columns: list[str], types: list[str], rows: list[dict]) -> int:
    """``rows`` into ``table`` by one binary ``COPY ... FROM STDIN`` on the session's connection,
    in the caller's transaction; the rows copied. The driver's errors come back as SQLAlchemy's
    (a unique violation is an IntegrityError, as from ``execute``), so callers that retry a
    conflicting batch see what they would have seen from an INSERT."""
    connection = session.connection()
    driver = connection.connection.driver_connection
    # Table and column names come from our models, never from input; the values go as data.
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    for listener in _copy_listeners:
        listener(connection, table.name)
    # An aware moment is stored as UTC, as PostgreSQL casts one for a session in UTC.
    moments = [i for i, kind in enumerate(types) if kind == "timestamp"]
    # psycopg's binary int2/int4 fields keep the low bits of a larger int without a word
    # (2**32 + 5 is stored as 5); an INSERT refuses it: so is it refused here, before COPY.
    narrow = [(i, _INT_RANGES[kind]) for i, kind in enumerate(types) if kind in _INT_RANGES]
    # psycopg's binary bool field takes any value's truth ("no" is true); SQLAlchemy's Boolean
    # refuses all but a bool: so is it refused here.
    flags = [i for i, kind in enumerate(types) if kind == "bool"]
    for row in rows:
        for i, (low, high) in narrow:
            value = row[columns[i]]
            if value is not None and not low <= value <= high:
                raise sa_exc.DataError(
                    sql, None, ValueError(f"{table.name}.{columns[i]}: {value} out of range for {types[i]}")
                )
        for i in flags:
            value = row[columns[i]]
            if value is not None and not isinstance(value, bool):
                raise sa_exc.DataError(
                    sql, None, ValueError(f"{table.name}.{columns[i]}: {value!r} is not a bool")
                )
    try:
        with driver.cursor() as cursor:
            with cursor.copy(sql) as copy:
                copy.set_types(types)
                for row in rows:
                    values = [row[name] for name in columns]
                    for i in moments:
                        if values[i] is not None and values[i].tzinfo is not None:
                            values[i] = values[i].astimezone(UTC).replace(tzinfo=None)
                    copy.write_row(values)
            return cursor.rowcount
    except OverflowError as exc:  # an int8 field's value beyond 64 bits (the driver refuses it)
        raise sa_exc.DataError(sql, None, exc) from exc
    except connection.dialect.loaded_dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(
            sql, None, exc, connection.dialect.loaded_dbapi.Error, dialect=connection.dialect
        ) from exc


def insert_rows(session, table, rows: list[dict]) -> None:
    """Insert ``rows``, in their order, in the caller's transaction. Every row names the same
    columns, including any with a Python-side default in the model (PostgreSQL's path does
    not apply those); the database's own defaults (ids, ``server_default``) fill the rest.
    On PostgreSQL the rows go by binary COPY when every column's type allows it (transfers,
    outbox rows): PostgreSQL reads binary fields without parsing text and psycopg writes them
    in C, where an array per column cost ~40 µs of Python per row to dump and the server
    another unnest. Otherwise as one array per column in one statement (``INSERT ... SELECT
    FROM unnest(...)``). Both enforce every constraint and fire every trigger; neither takes
    ON CONFLICT. SQLite, in process, takes executemany."""
    if not rows:
        return
    if not is_postgres(session):
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError(f"{table.name}: every row must name the same columns")
    types = _copy_types(table, columns, session.get_bind().dialect)
    if types is not None:
        # COPY fills the rows in the order written: serial ids follow it, as one by one.
        count = _copy_rows(session, table, columns, types, rows)
        if count != len(rows):
            raise RuntimeError(f"{table.name}: inserted {count} of {len(rows)} rows")
        return
    casts, params = _arrays(session, table, columns, rows)
    # Table and column names come from our models, never from input; the values are bound.
    names, arrays = ", ".join(columns), ", ".join(casts)
    # In the rows' order (WITH ORDINALITY): serial ids follow it, as they would one by one.
    source = f"unnest({arrays}) WITH ORDINALITY AS v({names}, row_order)"
    sql = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {source} ORDER BY row_order"  # noqa: S608  # nosec B608
    result = session.execute(text(sql).bindparams(*params))
    if result.rowcount != len(rows):
        raise RuntimeError(f"{table.name}: inserted {result.rowcount} of {len(rows)} rows")


def update_rows(session, table, key: str, rows: list[dict]) -> None:
    """Set, for each of ``rows``, its columns on the row of ``table`` whose ``key`` it names
    (keys distinct; every row naming the same columns), in the caller's transaction. Each row
    must match exactly one row of the table, else RuntimeError, and the caller's transaction
    must roll back (``execute_batch`` does): a balance written to no account is money lost.
    On PostgreSQL, one statement (``UPDATE ... FROM unnest(...)``), as ``insert_rows``; on
    SQLite, executemany."""
    if not rows:
        return
    columns = [name for name in rows[0] if name != key]
    if is_postgres(session):
        casts, params = _arrays(session, table, [key, *columns], rows)
        # Table and column names come from our models, never from input; the values are bound.
        sets = ", ".join(f"{name} = v.{name}" for name in columns)
        names, arrays, t = ", ".join([key, *columns]), ", ".join(casts), table.name
        sql = f"UPDATE {t} SET {sets} FROM unnest({arrays}) AS v({names}) WHERE {t}.{key} = v.{key}"  # noqa: S608  # nosec B608
        result = session.execute(text(sql).bindparams(*params))
    else:
        statement = (
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({name: bindparam(f"_new_{name}") for name in columns})
        )
        result = session.execute(
            statement, [{"_key": row[key], **{f"_new_{name}": row[name] for name in columns}} for row in rows]
        )
    if result.rowcount != len(rows):
        raise RuntimeError(f"{table.name}: updated {result.rowcount} of {len(rows)} rows")


def _ping_on_checkout(engine: Engine) -> None:
    """The pool's pre-ping, done by a ``checkout`` listener: every connection handed out that
    was used before is pinged (SELECT 1) and, found dead, replaced by a new one (the pool
    reconnects on the ``DisconnectionError`` raised, and forgets the connections older than
    it, as ``pool_pre_ping`` does), so the API, the back office, the worker and every
    transaction are as safe as with ``pool_pre_ping``. One exception: a check-out for
    ``first_statement`` (the USSD PIN hop's row lock) is not pinged when the connection was
    given back less than IDLE_PING_SECONDS ago and the server sent it nothing since (a
    connection ended by the server, by ``pg_terminate_backend`` or a shutdown, has its FATAL
    message or its close waiting on the socket: one ``poll`` of it, no round trip); the
    statement itself finds a connection that died anyway and is run again on a new one."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _given_back(dbapi_connection, record):
        if dbapi_connection is not None:  # (None: invalidated)
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _handed_out(dbapi_connection, record, _proxy):
        since = record.info.get(_IDLE_SINCE)
        if since is None:  # a new connection, never given back: pre-ping does not ping it either
            return
        recent = time.monotonic() - since < IDLE_PING_SECONDS
        if recent and _unpinged.get() and not _sent_to(dbapi_connection):
            return
        # SQLAlchemy's own pre-ping (its ``handle_error`` events, its test for a disconnect).
        if not dialect._do_ping_w_event(dbapi_connection):
            raise sa_exc.InvalidatePoolError()


def _sent_to(dbapi_connection) -> bool:
    """Whether the server sent anything to a connection at rest in the pool (nothing comes to
    one unless the server ended it), or it cannot be told: then it is pinged."""
    try:
        poller = selectors.poll()
        poller.register(dbapi_connection.fileno(), selectors.POLLIN)
        return bool(poller.poll(0))
    except Exception:  # noqa: BLE001 - closed, or no socket to ask: ping it
        return True


def first_statement(session, statement, params: dict):
    """``statement`` (a read or a row lock: safe to run again) run as the first of ``session``'s
    transaction, its result. On a connection the pool hands out without its ping when it was
    used within IDLE_PING_SECONDS and the server sent it nothing since (``_ping_on_checkout``):
    one round trip fewer. A connection that died anyway (the statement, or the BEGIN before it,
    finds it: SQLAlchemy invalidates it) is given up with the transaction, which had done
    nothing yet, and the statement runs once more on a new one (pinged as every check-out).
    When the transaction has begun already, the statement runs in it as any other."""
    if isinstance(session, scoped_session):  # db.session: this request's
        session = session()
    if session.in_transaction():
        return session.connection().execute(statement, params)
    token = _unpinged.set(True)
    try:
        connection = session.connection()
    finally:
        _unpinged.reset(token)
    try:
        return connection.execute(statement, params)
    except sa_exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("first statement on a dropped database connection: run again on a new one")
        session.rollback()
    return session.connection().execute(statement, params)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def init_app(app) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "tuma.sqlite3")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        # Pinged at check-out by ``_ping_on_checkout`` (pre-ping's work, but for one statement
        # that finds a dead connection itself); a configuration's own True keeps SQLAlchemy's.
        options.setdefault("pool_pre_ping", False)
        # Naive timestamps in the database are UTC, as they are on SQLite.
        options.setdefault("connect_args", {"options": "-c timezone=utc"})
    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # A menu hop's one-statement reads: autocommit, no pre-ping (reads.py says why).
        reads.init_app(app, app.config["SQLALCHEMY_DATABASE_URI"], app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _configure_sqlite(db.engine)
        elif not app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"]:
            _ping_on_checkout(db.engine)


def db_clock_us(session) -> int:
    """Microseconds since the epoch by the database's clock, the one clock every process shares."""
    if is_postgres(session):
        sql = "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint"
    else:
        sql = "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    return int(session.execute(text(sql)).scalar_one())
