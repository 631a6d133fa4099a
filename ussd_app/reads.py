"""A menu hop's reads: one statement, one round trip.

A USSD menu hop that reads the database reads one thing (the caller's facts, a recipient, the
payer's spending today, now and then the tariff in force) and writes nothing. Through the ORM
session on PostgreSQL that one statement cost four round trips (the pool's pre-ping, BEGIN, the
SELECT, COMMIT) and some 700 Python calls. Here it is one: the prebuilt Core statement (plain
rows, never ORM entities) on a connection of a second, small engine (``ENGINE``) that is in
autocommit mode (no BEGIN, no COMMIT) and does not ping a connection before use. A read is
idempotent, so instead of pinging, a read that finds its connection dropped (a PostgreSQL
restart or failover: SQLAlchemy raises ``DBAPIError`` with ``connection_invalidated`` and
invalidates the pool) is run once more on a fresh connection.

What it sees is what the session saw: each hop's session ran these reads in a transaction of
their own at READ COMMITTED, where every statement sees what was committed before it started;
one autocommit statement sees the same, and never anything uncommitted.

- When the hop's ``session`` already has a transaction open (it read or wrote something
  earlier in the hop), the read runs in it, as before: no second connection, and it sees the
  transaction's own writes.
- On SQLite (the embedded default) the read runs in the session: in process, no round trips.
- Everything else (the worker, the API, the back office, every transaction, the PIN check)
  uses the ORM session as before; the main engine pings every check-out for all of them
  (``database._ping_on_checkout``), but for the PIN hop's first statement (``first_statement``).

On that engine a statement is not executed through SQLAlchemy's execution (its cache key
walked, an execution context, a result object: some 200 Python calls a read, more than the
round trip's own work): it is compiled once per app and statement (``_prepared``: the SQL
SQLAlchemy would send, its constant parameters, its bind processors) and run on the pooled
connection's own cursor, a row a tuple. Only a statement whose result columns need no
processing and whose parameters are plain binds goes that way; anything else takes
SQLAlchemy's path as before. The engine's ``before_cursor_execute`` listeners (the tests' and
the benchmarks' counts of statements) are called as SQLAlchemy calls them, with ``None`` for
the connection and the context; errors are SQLAlchemy's ``DBAPIError``, as before.

The second engine's pool keeps one connection (``POOL_SIZE``): a gunicorn sync worker serves
one hop at a time and a hop runs one read at a time; ``MAX_OVERFLOW`` more are opened (and
closed when given back) only when threads of one process read at once (the dev server).
A process that serves no hop (the worker) never opens one. docs/architecture.md counts them.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import scoped_session

log = logging.getLogger(__name__)

ENGINE = "tuma_hop_reads"  # app.extensions: the engine of the hop's reads (PostgreSQL only)
PREPARED = "tuma_hop_reads_prepared"  # app.extensions: {statement: _Prepared or None}
POOL_SIZE = 1
MAX_OVERFLOW = 10


def init_app(app, url, options: dict) -> None:
    """Make the hop reads' engine for a PostgreSQL app (``url`` and the main engine's
    ``options``: the same server, the same connection settings; no connection is opened
    until a hop reads)."""
    options = {
        **options,
        "pool_pre_ping": False,  # a dropped connection is found by the read itself: retried
        "isolation_level": "AUTOCOMMIT",  # one statement, no BEGIN/COMMIT
        "pool_reset_on_return": None,  # nothing to roll back in autocommit
    }
    if "poolclass" not in options:  # a pool of the configuration's own kind is left as it is
        options.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
    app.extensions[ENGINE] = create_engine(url, **options)
    app.extensions[PREPARED] = {}


def engine(app=None):
    """The hop reads' engine of ``app`` (the current one), or None (SQLite: the session reads)."""
    return (app or current_app).extensions.get(ENGINE)


def dispose(app) -> None:
    reads = engine(app)
    if reads is not None:
        reads.dispose()


def first(session, statement, params: dict):
    """The first row of ``statement`` (a prebuilt Core select) with ``params``, or None."""
    return _run(session, statement, params, Result.first)


def rows(session, statement, params: dict) -> list:
    """Every row of ``statement`` (a prebuilt Core select) with ``params``."""
    return _run(session, statement, params, Result.all)


def _run(session, statement, params, take):
    extensions = current_app.extensions
    reads = extensions.get(ENGINE)
    if isinstance(session, scoped_session):  # db.session: this request's session
        # (Not made only to be asked: a hop that has none has no transaction open.)
        session = session() if session.registry.has() or reads is None else None
    if reads is None or (session is not None and session.in_transaction()):
        return take(session.execute(statement, params))
    prepared = _prepared(extensions, reads, statement, params)
    once = _once if prepared is None else _once_prepared
    try:
        return once(reads, prepared or statement, params, take)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # The server dropped the connection (a restart, a failover, an operator ending it):
        # it is invalidated; a read is safe to run again, on a new one.
        log.warning("hop read on a dropped database connection: read again on a new one")
    return once(reads, prepared or statement, params, take)


def _once(reads, statement, params, take):
    with reads.connect() as connection:
        return take(connection.execute(statement, params))  # taken before it goes back


class _Prepared:
    """A statement as the hop reads' engine sends it: the SQL, the parameters that are the
    statement's own (bind processors applied), and the processors of the caller's."""

    __slots__ = ("sql", "fixed", "processors", "keys")

    def __init__(self, sql: str, fixed: dict, processors: dict, keys: frozenset):
        self.sql, self.fixed, self.processors, self.keys = sql, fixed, processors, keys


def _prepared(extensions, reads, statement, params: dict) -> _Prepared | None:
    """``statement`` compiled once for the engine ``reads`` (None: it takes SQLAlchemy's path)."""
    cache = extensions[PREPARED]
    try:
        prepared = cache[statement]
    except KeyError:
        prepared = cache[statement] = _prepare(reads.dialect, statement, params)
    if prepared is not None and prepared.keys != params.keys():
        return None  # asked with other parameters than it was prepared for: SQLAlchemy's way
    return prepared


def _prepare(dialect, statement, params: dict) -> _Prepared | None:
    """What SQLAlchemy would send for ``statement`` (``construct_expanded_state``: the SQL with
    its IN lists of constants expanded, every parameter's value and bind processor), with the
    statement's own values processed once. None when one of the caller's parameters is
    expanded too (the SQL would change with its value) or a result column would be processed:
    SQLAlchemy's own path then, as before."""
    try:
        compiled = statement.compile(dialect=dialect)
        for column in statement.selected_columns:
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
                return None
        state = compiled.construct_expanded_state(params)
        if any(key in state.parameter_expansion for key in params) or state.positiontup is not None:
            return None
        # The processors SQLAlchemy's execution applies: the statement's, and the expanded
        # lists' (``DefaultExecutionContext._init_compiled``).
        processors = {**compiled._bind_processors, **state.processors}
        fixed = {}
        for key, value in state.parameters.items():
            if key not in params:
                process = processors.get(key)
                fixed[key] = process(value) if process is not None else value
        mine = {key: processors[key] for key in params if processors.get(key) is not None}
        return _Prepared(state.statement, fixed, mine, frozenset(params))
    except Exception as exc:  # noqa: BLE001 - not preparable: SQLAlchemy's path, as before
        log.debug("hop read not prepared (%s): SQLAlchemy's path", type(exc).__name__)
        return None


def _once_prepared(reads, prepared: _Prepared, params: dict, take):
    values = prepared.fixed.copy()
    processors = prepared.processors
    for key, value in params.items():
        process = processors.get(key) if processors else None
        values[key] = process(value) if process is not None else value
    sql = prepared.sql
    dialect = reads.dialect
    fairy = reads.raw_connection()
    dbapi_connection, cursor = fairy.dbapi_connection, None
    try:
        cursor = dbapi_connection.cursor()
        listeners = reads.dispatch.before_cursor_execute
        if listeners:
            for listener in listeners:
                listener(None, cursor, sql, values, None, False)
        cursor.execute(sql, values)
        return cursor.fetchone() if take is Result.first else cursor.fetchall()
    except dialect.loaded_dbapi.Error as exc:
        dropped = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if dropped:
            fairy.invalidate(exc)
        raise DBAPIError.instance(
            sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=dropped, dialect=dialect
        ) from exc
    finally:
        if cursor is not None and not cursor.closed:
            cursor.close()
        fairy.close()  # back to the pool (or closed, when invalidated)
