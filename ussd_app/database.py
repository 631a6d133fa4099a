"""The database: PostgreSQL from ``DATABASE_URL``, or the embedded SQLite file.

SQLite is set up the way a ledger needs it: WAL (readers do not block the writer), a busy
timeout (writers wait instead of failing), foreign keys on, and every transaction started
with ``BEGIN IMMEDIATE`` so a transaction that reads and then writes can never fail halfway
with "database is locked" because another writer got in between.
"""

import os

from sqlalchemy import any_, bindparam, event, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine

from .extensions import db, migrate

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
        options.setdefault("pool_pre_ping", True)
        # Naive timestamps in the database are UTC, as they are on SQLite.
        options.setdefault("connect_args", {"options": "-c timezone=utc"})
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _configure_sqlite(db.engine)


def db_clock_us(session) -> int:
    """Microseconds since the epoch by the database's clock, the one clock every process shares."""
    if is_postgres(session):
        sql = "SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint"
    else:
        sql = "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    return int(session.execute(text(sql)).scalar_one())
