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
  uses the ORM session as before; the main engine keeps ``pool_pre_ping`` for all of them.

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
    reads = current_app.extensions.get(ENGINE)
    if isinstance(session, scoped_session):  # db.session: this request's session
        session = session()
    if reads is None or session.in_transaction():
        return take(session.execute(statement, params))
    try:
        return _once(reads, statement, params, take)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # The server dropped the connection (a restart, a failover, an operator ending it):
        # SQLAlchemy has invalidated the pool; a read is safe to run again, on a new one.
        log.warning("hop read on a dropped database connection: read again on a new one")
    return _once(reads, statement, params, take)


def _once(reads, statement, params, take):
    with reads.connect() as connection:
        return take(connection.execute(statement, params))  # taken before it goes back
