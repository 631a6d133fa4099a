"""Redis behind Sentinel (``REDIS_SENTINELS``, ``ussd_app/queues.py: connect``): a USSD session
and the queued work survive the Redis primary's death, the app following the Sentinels to the
promoted replica on its own; and the multi-host ``DATABASE_URL`` of a PostgreSQL pair is
accepted (docs/deploy.md).

Real processes, started here on free ports: a primary, its replica and three Sentinels."""

import shutil
import subprocess
import time

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from chaos.harness import free_port
from tests.conftest import PG_URL
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, person, session_doc
from ussd_app.config import database_url
from ussd_app.queues import TRANSFERS_QUEUE, ScriptClient, connect, get_queue, sentinel_addresses
from ussd_app.security import InsecureConfig, check_config
from ussd_app.ussd import sessions

REDIS_SERVER = shutil.which("redis-server")
MASTER = "tuma-test"


def _wait(condition, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except redis_lib.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class SentinelGroup:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    def _start(self, name: str, argv: list[str]) -> None:
        self.procs[name] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        base = [REDIS_SERVER, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        base += ["--dir", str(self.tmp)]
        self._start("primary", base + ["--port", str(self.primary_port)])
        follow = ["--replicaof", "127.0.0.1", str(self.primary_port)]
        self._start("replica", base + ["--port", str(self.replica_port), *follow])
        replica = redis_lib.Redis(port=self.replica_port)
        _wait(lambda: replica.info("replication").get("master_link_status") == "up", "replica in sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.tmp / f"sentinel-{i}.conf"  # a Sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 400\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
            )
            self._start(f"sentinel-{i}", [REDIS_SERVER, str(conf), "--sentinel"])
        for port in self.sentinel_ports:
            s = redis_lib.Redis(port=port)
            # Each Sentinel knows the replica and the two others before any test kills anything.
            _wait(
                lambda s=s: (
                    s.sentinel_master(MASTER)["num-other-sentinels"] == 2
                    and s.sentinel_master(MASTER)["num-slaves"] == 1
                ),
                "sentinels agreed",
            )

    def master_port(self) -> int:
        s = redis_lib.Redis(port=self.sentinel_ports[0])
        return int(s.sentinel_get_master_addr_by_name(MASTER)[1])

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    @property
    def setting(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)


@pytest.fixture
def sentinels(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def sentinel_app(app, config, sentinels):
    """The test app, its Redis clients (the pooled one and the scripts' one) made from the
    Sentinel settings alone (no REDIS_URL)."""
    config(REDIS_URL=None, REDIS_SENTINELS=sentinels.setting, REDIS_SENTINEL_MASTER=MASTER, REDIS_DB=3)
    own = app.extensions["redis"], app.extensions["redis_scripts"]
    app.extensions["redis"], app.extensions["redis_scripts"] = connect(app), ScriptClient(app)
    try:
        yield app
    finally:
        app.extensions["redis"].close()
        app.extensions["redis_scripts"].close()
        app.extensions["redis"], app.extensions["redis_scripts"] = own


def test_a_ussd_session_and_queued_work_outlive_the_redis_primary(sentinel_app, sentinels):
    person(**CUSTOMER)
    person(**SECOND_CUSTOMER)
    client = sentinel_app.test_client()
    r = sentinel_app.extensions["redis"]
    phone = Phone(client, CUSTOMER["phone"])
    phone.dial()
    asked = phone.send("1")
    assert asked.startswith("CON ") and "number" in asked, asked
    first_port = sentinels.master_port()
    assert first_port == sentinels.primary_port
    assert r.connection_pool.connection_kwargs["db"] == 3
    # The hop's session went through the scripts' client to the same primary and database.
    [session_key] = r.keys("tuma:ussd:session:*")
    get_queue(TRANSFERS_QUEUE).enqueue("worker.jobs.maintain")
    # Replication is asynchronous: what the primary acknowledged in the last instant before it
    # died can be lost (docs/deploy.md). Here the writes are on the replica before the kill.
    assert r.execute_command("WAIT", 1, 5000) == 1

    sentinels.kill("primary")
    _wait(lambda: sentinels.master_port() == sentinels.replica_port, "replica promoted", timeout=15)

    # The same client, never told of the change: the first call may fail (its socket was to the
    # dead primary), then the Sentinels name the new one.
    _wait(lambda: r.set("tuma:test:after", "1"), "a write through the same client")
    assert r.connection_pool.get_master_address()[1] == sentinels.replica_port
    # The session goes on where it was: the next screen asks for the amount. The scripts'
    # client still held its connection to the dead primary: the hop's first script found it
    # broken, and redis-py's retry (queues.SCRIPT_RETRY) asked the Sentinels and sent it again.
    body = phone.send("0" + SECOND_CUSTOMER["phone"][4:])
    assert body.startswith("CON ") and "mount" in body, body
    session_id = session_key.decode().rsplit(":", 1)[1]
    assert session_doc(r, session_id)["last_reply"] == body  # written back on the new primary
    assert [job.func_name for job in get_queue(TRANSFERS_QUEUE).get_jobs()] == ["worker.jobs.maintain"]


def test_settings_that_production_refuses(app):
    good = dict(app.config, REDIS_SENTINELS="10.0.0.1:26379, 10.0.0.2:26379,[fd00::3]:26379")
    check_config(good)
    assert sentinel_addresses(good["REDIS_SENTINELS"]) == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26379),
        ("fd00::3", 26379),
    ]
    with pytest.raises(InsecureConfig, match="REDIS_SENTINELS"):
        check_config(dict(app.config, REDIS_SENTINELS="10.0.0.1"))
    pair = "postgresql+psycopg://tuma@/tuma?host=10.0.0.11:5432&host=10.0.0.12:5432"
    check_config(dict(app.config, SQLALCHEMY_DATABASE_URI=pair))  # outside production: allowed
    production = dict(
        app.config,
        TUMA_ENV="production",
        SECRET_KEY="s" * 32,
        PIN_PEPPER="p" * 32,
        AT_API_KEY="k" * 32,
        WEBHOOK_SECRET="w" * 32,
    )
    check_config(dict(production, SQLALCHEMY_DATABASE_URI=pair + "&target_session_attrs=read-write"))
    # Without it libpq takes the first host that answers: after a failover, a fenced old
    # primary or a standby; production refuses to start rather than write there.
    with pytest.raises(InsecureConfig, match="target_session_attrs=read-write"):
        check_config(dict(production, SQLALCHEMY_DATABASE_URI=pair))


@pytest.mark.skipif(not PG_URL, reason="DATABASE_URL not set")
def test_a_multi_host_database_url_skips_a_host_that_is_down():
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    dead = free_port()  # nothing listens there: libpq goes on to the next host
    hosts = [f"127.0.0.1:{dead}", f"{url.host or '127.0.0.1'}:{url.port or 5432}"]
    multi = url.set(host=None, port=None, query={"host": hosts, "target_session_attrs": "read-write"})
    engine = create_engine(multi)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT NOT pg_is_in_recovery()")).scalar_one()
    finally:
        engine.dispose()
    # DATABASE_URL as an operator writes it (docs/deploy.md) reaches the same driver.
    written = (
        "postgresql://tuma@/tuma?host=10.0.0.11:5432&host=10.0.0.12:5432&target_session_attrs=read-write"
    )
    assert make_url(database_url(written)).query["host"] == ("10.0.0.11:5432", "10.0.0.12:5432")


def test_a_script_reply_that_came_too_late_is_never_read_as_another_hops(sentinel_app, sentinels, config):
    """A hop whose script timed out (the primary stalled past REDIS_SOCKET_TIMEOUT_SECONDS)
    answers "busy"; the script's reply, arriving later on the scripts' one held connection, must
    not be read as the answer to the next hop's script: that would hand one caller another's
    session (its conversation, the caller's cached facts) and every later hop the one before's.
    redis-py's Sentinel-managed connection does not close itself on a timeout (its
    ``read_response`` defaults ``disconnect_on_error`` to False, where a pool's check-out finds
    the stray reply; a single connection has no check-out)."""
    person(**CUSTOMER)
    person(**SECOND_CUSTOMER)
    config(REDIS_SOCKET_TIMEOUT_SECONDS=1.0)
    sentinel_app.extensions["redis_scripts"].close()
    sentinel_app.extensions["redis_scripts"] = ScriptClient(sentinel_app)
    client = sentinel_app.test_client()
    juma = Phone(client, CUSTOMER["phone"])
    assert juma.dial().startswith("CON ")
    asked = juma.send("1")
    assert asked.startswith("CON ") and "number" in asked, asked

    # A stall of the primary's writes (scripts included; the Sentinels' PINGs are answered, so
    # they see no failure), ended once Juma's hop has given up on its script.
    primary = redis_lib.Redis(port=sentinels.master_port())
    primary.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
    try:
        assert juma.send("0" + SECOND_CUSTOMER["phone"][4:]) == "END Sorry, we are busy. Please dial again."
    finally:
        primary.execute_command("CLIENT", "UNPAUSE")  # Juma's script runs now, and answers late
        primary.close()

    wanjiru = Phone(client, SECOND_CUSTOMER["phone"])
    home = wanjiru.dial()
    assert home.startswith("CON ") and "mount" not in home and "Send money" in home, home
    stored = sessions.load(wanjiru.session_id)
    assert stored.phone == SECOND_CUSTOMER["phone"]
    assert sessions.load(juma.session_id).phone == CUSTOMER["phone"]
    again = wanjiru.send("2")  # and the next hop gets its own answer too
    assert again.startswith("CON ") and "Send money" not in again, again


def test_a_hop_after_a_switchover_reaches_the_new_primary_though_the_old_one_lives_on(
    sentinel_app, sentinels
):
    """An operator's switchover (``SENTINEL FAILOVER``): the old primary is not dead but made a
    replica. The scripts' client held its connection to it; the next hop's scripts must reach
    the promoted one (never write to, or read a stale session from, the demoted one)."""
    person(**CUSTOMER)
    person(**SECOND_CUSTOMER)
    client = sentinel_app.test_client()
    r = sentinel_app.extensions["redis"]
    phone = Phone(client, CUSTOMER["phone"])
    phone.dial()
    asked = phone.send("1")
    assert asked.startswith("CON ") and "number" in asked, asked
    assert r.execute_command("WAIT", 1, 5000) == 1

    sentinel = redis_lib.Redis(port=sentinels.sentinel_ports[0])
    try:
        assert sentinel.sentinel_failover(MASTER)
    finally:
        sentinel.close()
    _wait(lambda: sentinels.master_port() == sentinels.replica_port, "replica promoted", timeout=15)
    old = redis_lib.Redis(port=sentinels.primary_port)
    try:
        _wait(lambda: old.info("replication")["role"] == "slave", "old primary demoted", timeout=15)
    finally:
        old.close()

    body = phone.send("0" + SECOND_CUSTOMER["phone"][4:])
    assert body.startswith("CON ") and "mount" in body, body
    new = redis_lib.Redis(port=sentinels.replica_port, db=3)
    try:
        [key] = new.keys("tuma:ussd:session:*")
        assert session_doc(new, key.decode().rsplit(":", 1)[1])["last_reply"] == body  # on the new primary
    finally:
        new.close()
