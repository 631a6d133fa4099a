"""What runs on each host of the cluster test, started inside its namespace (chaos/cluster/net.py).

Every process is started here with ``ip netns exec tuma-<host>`` in a session of its own and
stopped by its own process group (or, for a host that "dies", every process of the namespace).
Files live under ``STATE`` (removed at the start of a run), logs under the run's log directory.

- ``arb``, ``r1``, ``r2``: etcd (three members, the DCS of Patroni) and a Redis Sentinel each;
  ``r1`` and ``r2`` a Redis server each (``r1`` the first primary).
- ``pg1``, ``pg2``: Patroni managing PostgreSQL 15 (``synchronous_mode``: a commit returns
  once the standby has it), ``use_pg_rewind`` to bring an old primary back as a standby.
- ``web1``, ``web2``: gunicorn; ``lb``: HAProxy health-checking ``/healthz``.
- ``work1``, ``work2``: ``python -m worker`` (transfers, SMS, events, maintenance queues).
- ``gw``: the local Africa's Talking gateway (``python -m devtools.gateway``).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from chaos.load import stop_group

from . import net

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = "/var/tmp/tuma-cluster"  # noqa: S108  # root-owned, removed and made again by each run
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_PORT = 5432
REDIS_PORT = 6379
SENTINEL_PORT = 26379
ETCD_CLIENT, ETCD_PEER = 2379, 2380
WEB_PORT = 8000
LB_PORT = 80
LB_STATS_PORT = 8404
GATEWAY_PORT = 8025
PATRONI_PORT = 8008
SENTINEL_MASTER = "tuma"
DATABASE = "tuma"
ETCD_HOSTS = ("arb", "r1", "r2")
SENTINEL_HOSTS = ("arb", "r1", "r2")
PG_HOSTS = ("pg1", "pg2")
WEB_HOSTS = ("web1", "web2")
WORK_HOSTS = ("work1", "work2")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where the patroni package lives


def database_url() -> str:
    """The app's DATABASE_URL: both PostgreSQL hosts, and only the one that takes writes."""
    hosts = "&".join(f"host={net.address(h)}:{PG_PORT}" for h in PG_HOSTS)
    return f"postgresql://postgres@/{DATABASE}?{hosts}&target_session_attrs=read-write&connect_timeout=2"


def sentinels() -> str:
    return ",".join(f"{net.address(h)}:{SENTINEL_PORT}" for h in SENTINEL_HOSTS)


def wait_for(condition, what: str, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(every)
    raise RuntimeError(f"not within {timeout:.0f} s: {what} (last error: {last!r})")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((net.address(host), port)) == 0


class Hosts:
    def __init__(self, logdir: str, app_env: dict, log=print):
        self.logdir = logdir
        self.app_env = app_env
        self.log = log
        self.procs: dict[tuple[str, str], subprocess.Popen] = {}
        self.generation = Counter()
        self.lock = threading.Lock()
        self.down_hosts: set[str] = set()  # hosts the test has "powered off"

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, host: str, name: str, argv: list[str], *, user: str | None = None, env=None, cwd=ROOT):
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        self.generation[(host, name)] += 1
        path = os.path.join(self.logdir, f"{host}-{name}-{self.generation[(host, name)]}.log")
        with open(path, "w") as logfile:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", net.ns(host), *argv],
                cwd=cwd,
                env=env or self.app_env,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[(host, name)] = proc
        return proc

    def alive(self, host: str, name: str) -> bool:
        proc = self.procs.get((host, name))
        return proc is not None and proc.poll() is None

    def kill(self, host: str, name: str, sig=signal.SIGKILL) -> None:
        stop_group(self.procs.get((host, name)), sig, wait=30)

    def power_off(self, host: str) -> None:
        """Every process of the host SIGKILLed at once, as a host losing power."""
        self.down_hosts.add(host)
        net.kill_host(net.ns(host))
        for (h, _), proc in self.procs.items():
            if h == host:
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for host, name in list(self.procs):
            self.kill(host, name, signal.SIGTERM if name in ("postgres", "patroni") else signal.SIGKILL)

    # -- the DCS and Redis ----------------------------------------------------------------------
    def start_etcd(self) -> None:
        cluster = ",".join(f"{h}=http://{net.address(h)}:{ETCD_PEER}" for h in ETCD_HOSTS)
        for host in ETCD_HOSTS:
            ip = net.address(host)
            self.spawn(
                host,
                "etcd",
                [
                    "etcd",
                    "--name",
                    host,
                    "--data-dir",
                    f"{STATE}/{host}/etcd",
                    "--listen-client-urls",
                    f"http://{ip}:{ETCD_CLIENT}",
                    "--advertise-client-urls",
                    f"http://{ip}:{ETCD_CLIENT}",
                    "--listen-peer-urls",
                    f"http://{ip}:{ETCD_PEER}",
                    "--initial-advertise-peer-urls",
                    f"http://{ip}:{ETCD_PEER}",
                    "--initial-cluster",
                    cluster,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "tuma-cluster-test",
                    "--log-level",
                    "warn",
                ],
                env=dict(os.environ),
            )
        for host in ETCD_HOSTS:
            wait_for(lambda host=host: port_open(host, ETCD_CLIENT), f"etcd on {host}")

    def redis_argv(self, host: str, replica_of: str | None = None) -> list[str]:
        argv = [
            "redis-server",
            "--bind",
            net.address(host),
            "--port",
            str(REDIS_PORT),
            "--protected-mode",
            "no",
            "--dir",
            f"{STATE}/{host}",
            "--appendonly",
            "yes",  # a restarted server has its data; a replica follows its primary's
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ]
        if replica_of:
            argv += ["--replicaof", net.address(replica_of), str(REDIS_PORT)]
        return argv

    def start_redis(self, host: str, replica_of: str | None = None) -> None:
        os.makedirs(f"{STATE}/{host}", exist_ok=True)
        self.spawn(host, "redis", self.redis_argv(host, replica_of), env=dict(os.environ))
        wait_for(lambda: port_open(host, REDIS_PORT), f"redis on {host}")

    def start_sentinels(self) -> None:
        for host in SENTINEL_HOSTS:
            os.makedirs(f"{STATE}/{host}", exist_ok=True)
            conf = f"{STATE}/{host}/sentinel.conf"
            with open(conf, "w") as f:
                f.write(
                    f"port {SENTINEL_PORT}\nbind {net.address(host)}\nprotected-mode no\n"
                    f"dir {STATE}/{host}\n"
                    f"sentinel monitor {SENTINEL_MASTER} {net.address('r1')} {REDIS_PORT} 2\n"
                    f"sentinel down-after-milliseconds {SENTINEL_MASTER} 2000\n"
                    f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                    f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
                )
            self.spawn(host, "sentinel", ["redis-server", conf, "--sentinel"], env=dict(os.environ))
        import redis

        for host in SENTINEL_HOSTS:
            s = redis.Redis(host=net.address(host), port=SENTINEL_PORT, socket_timeout=2)
            wait_for(
                lambda s=s: (
                    s.sentinel_master(SENTINEL_MASTER)["num-other-sentinels"] == 2
                    and s.sentinel_master(SENTINEL_MASTER)["num-slaves"] == 1
                ),
                f"sentinel on {host} knows the others and the replica",
            )

    def redis_primary(self) -> str:
        """The host the Sentinels name as the Redis primary."""
        import redis

        for host in SENTINEL_HOSTS:
            try:
                s = redis.Redis(host=net.address(host), port=SENTINEL_PORT, socket_timeout=1)
                ip = s.sentinel_get_master_addr_by_name(SENTINEL_MASTER)[0]
                ip = ip.decode() if isinstance(ip, bytes) else ip
                return next(h for h in net.HOSTS if net.address(h) == ip)
            except Exception:  # noqa: S112  # a Sentinel down: ask the next
                continue
        raise RuntimeError("no Sentinel answers")

    # -- PostgreSQL under Patroni ---------------------------------------------------------------
    def patroni_config(self, host: str) -> str:
        ip = net.address(host)
        data = f"{STATE}/{host}/pg"
        etcd = ",".join(f"{net.address(h)}:{ETCD_CLIENT}" for h in ETCD_HOSTS)
        config = {
            "scope": "tuma",
            "name": host,
            "log": {"level": "WARNING"},
            "restapi": {"listen": f"{ip}:{PATRONI_PORT}", "connect_address": f"{ip}:{PATRONI_PORT}"},
            "etcd3": {"hosts": etcd},
            "bootstrap": {
                "dcs": {
                    "ttl": 10,
                    "loop_wait": 1,
                    "retry_timeout": 3,
                    "maximum_lag_on_failover": 0,
                    # A commit returns only once the standby has it (Patroni keeps
                    # synchronous_standby_names naming the standby in sync), and only that
                    # standby may be promoted: a failover loses no acknowledged transfer.
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "synchronous_commit": "on",
                            "wal_level": "replica",
                            "wal_log_hints": "on",
                            "hot_standby": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "512MB",
                            "max_connections": 200,
                            "shared_buffers": "128MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "data-checksums", {"locale": "C"}],
                "pg_hba": [
                    "local all all trust",
                    "host all all 10.77.0.0/24 trust",
                    "host replication all 10.77.0.0/24 trust",
                ],
            },
            "postgresql": {
                "listen": f"{ip}:{PG_PORT}",
                "connect_address": f"{ip}:{PG_PORT}",
                "data_dir": data,
                "bin_dir": PG_BIN,
                "pgpass": f"{STATE}/{host}/pgpass",
                "authentication": {
                    "superuser": {"username": "postgres", "password": "cluster-test"},
                    "replication": {"username": "replicator", "password": "cluster-test"},
                    "rewind": {"username": "postgres", "password": "cluster-test"},
                },
                "parameters": {"unix_socket_directories": f"{STATE}/{host}/run"},
                "pg_hba": [
                    "local all all trust",
                    "host all all 10.77.0.0/24 trust",
                    "host replication all 10.77.0.0/24 trust",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }
        path = f"{STATE}/{host}/patroni.yml"
        with open(path, "w") as f:
            json.dump(config, f, indent=1)  # JSON is YAML
        return path

    def start_patroni(self, host: str) -> None:
        for sub in ("", "/run"):
            os.makedirs(f"{STATE}/{host}{sub}", exist_ok=True)
        config = self.patroni_config(host)
        shutil.chown(f"{STATE}/{host}", "postgres", "postgres")
        shutil.chown(f"{STATE}/{host}/run", "postgres", "postgres")
        shutil.chown(config, "postgres", "postgres")
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "HOME": f"{STATE}/{host}"}
        self.down_hosts.discard(host)
        self.spawn(host, "patroni", [SYSTEM_PYTHON, "/usr/bin/patroni", config], user="postgres", env=env)

    def patroni(self, host: str) -> dict:
        import requests

        return requests.get(f"http://{net.address(host)}:{PATRONI_PORT}/patroni", timeout=1).json()

    def pg_leader(self) -> str | None:
        for host in PG_HOSTS:
            if host in self.down_hosts:
                continue
            try:
                if self.patroni(host).get("role") in ("master", "primary"):
                    return host
            except Exception:  # noqa: S112  # a host down or cut off: not the leader
                continue
        return None

    def sync_standby(self) -> str | None:
        """The standby the primary waits for (pg_stat_replication), or None."""
        import psycopg

        leader = self.pg_leader()
        if leader is None:
            return None
        with psycopg.connect(
            host=net.address(leader), port=PG_PORT, user="postgres", dbname="postgres", connect_timeout=2
        ) as conn:
            row = conn.execute(
                "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'"
            ).fetchone()
        return row[0] if row else None

    def start_postgres_pair(self) -> None:
        self.start_patroni("pg1")
        wait_for(lambda: self.pg_leader() == "pg1", "pg1 the Patroni leader", timeout=90)
        self.start_patroni("pg2")
        wait_for(lambda: self.sync_standby() == "pg2", "pg2 a synchronous standby", timeout=120)

    # -- the service ----------------------------------------------------------------------------
    def start_gateway(self) -> None:
        self.spawn(
            "gw",
            "gateway",
            [
                sys.executable,
                "-m",
                "devtools.gateway",
                "--host",
                net.address("gw"),
                "--port",
                str(GATEWAY_PORT),
            ],
        )
        wait_for(lambda: port_open("gw", GATEWAY_PORT), "the gateway")

    def start_web(self, host: str) -> None:
        self.down_hosts.discard(host)
        self.spawn(
            host,
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                f"{net.address(host)}:{WEB_PORT}",
                "--timeout",
                "30",
                "--log-level",
                "warning",
                "wsgi:app",
            ],
        )

    def start_worker(self, host: str) -> None:
        self.down_hosts.discard(host)
        self.spawn(host, "worker", [sys.executable, "-m", "worker"])

    def supervise(self) -> int:
        """As systemd's Restart=always on a live host: a worker that exited is started again."""
        restarted = 0
        with self.lock:
            for host in WORK_HOSTS:
                if host not in self.down_hosts and not self.alive(host, "worker"):
                    self.start_worker(host)
                    restarted += 1
        return restarted

    def haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server {h} {net.address(h)}:{WEB_PORT} check inter 500ms fall 2 rise 2 "
            f"observe layer4 error-limit 3 on-error mark-down"
            for h in WEB_HOSTS
        )
        text = f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 25s
    retries 2
    option redispatch
    option http-server-close
frontend ussd
    bind {net.address("lb")}:{LB_PORT}
    default_backend web
frontend stats
    bind {net.address("lb")}:{LB_STATS_PORT}
    stats enable
    stats uri /stats
backend web
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""
        path = f"{STATE}/lb/haproxy.cfg"
        os.makedirs(f"{STATE}/lb", exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_lb(self) -> None:
        config = self.haproxy_config()
        check = subprocess.run(["haproxy", "-c", "-f", config], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError("haproxy config: " + check.stdout + check.stderr)
        self.spawn("lb", "haproxy", ["haproxy", "-db", "-f", config], env=dict(os.environ))
        wait_for(lambda: port_open("lb", LB_PORT), "haproxy")

    def lb_up(self) -> list[str]:
        """The web hosts HAProxy sends traffic to now."""
        import csv
        import io

        import requests

        text = requests.get(f"http://{net.address('lb')}:{LB_STATS_PORT}/stats;csv", timeout=2).text
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return [
            r["svname"]
            for r in rows
            if r["pxname"] == "web" and r["svname"] in WEB_HOSTS and r["status"] == "UP"
        ]


def remove_state() -> None:
    shutil.rmtree(STATE, ignore_errors=True)


def reset_state() -> None:
    shutil.rmtree(STATE, ignore_errors=True)
    os.makedirs(STATE, exist_ok=True)
