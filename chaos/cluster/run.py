"""``make cluster-test``: several hosts, lose any one of them and lose no money.

    python -m chaos.cluster [--seed N]        (or: make cluster-test CLUSTER_SEED=N)

Builds the hosts of chaos/cluster/net.py, starts the real engines on them (chaos/cluster/hosts.py:
HAProxy, gunicorn, rq workers, PostgreSQL 15 under Patroni with etcd, Redis with Sentinel, the
local Africa's Talking gateway), then:

1. measures (no faults): the CPU each host spends per USSD hop and per transfer (USSD sends,
   then API payouts), from /proc of every process in each namespace;
2. drives load through the load balancer (phones walking the USSD send menu, a merchant's
   system posting payout batches with Idempotency-Keys, retried after a lost answer) while, in an
   order drawn from the seed, it: kills web1; SIGKILLs work1 while it executes a batch; cuts
   work2 off from the database and heals it; kills the Redis primary (a Sentinel promotes the
   replica); powers off the PostgreSQL primary (Patroni promotes the synchronous standby; the
   old one, fenced by being off, comes back as a standby through pg_rewind); cuts the load
   balancer off from a web host and heals it. A probe dials USSD through the load balancer
   four times a second: the seconds it got no menu are each fault's time without service;
3. runs to quiescence and checks (chaos/load.py, shared with ``make chaos``) that every
   transfer a caller was told was accepted is posted exactly once, nothing else was posted,
   every posting has its receipts, and ``ledger check`` passes on the final primary.

It ends with ``N transfers, M faults, 0 lost, 0 doubled, ledger check passed`` and exits non-zero
otherwise. Everything is removed at the end (and at the start, after a crashed run).
"""

import os
import random
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

from chaos.load import LOAD_ENV, LoadAndChecks

from . import hosts as H
from . import net

FAULTS = (
    "kill_web1",
    "kill_work1_mid_batch",
    "cut_work2_from_db",
    "redis_failover",
    "kill_pg_primary",
    "partition_lb_from_web",
)


@dataclass
class Settings:
    seed: int
    transfers: int = 1000  # sizes the pool of unregistered numbers (chaos/load.py: populate)
    ussd_threads: int = 3
    api_batch: int = 25  # payouts per API batch
    api_pace: float = 2.0  # seconds between batches (each answered within milliseconds)
    calibrate_batches: int = 24  # API batches measured without faults
    calibrate_seconds: float = 15.0
    gap_seconds: tuple = (4.0, 8.0)  # load between one fault healed and the next
    quiesce_timeout: float = 240.0
    keep: bool = False  # leave the hosts running (for a look); `python -m chaos.cluster.net down`
    log: object = print


@dataclass
class FaultRecord:
    kind: str
    started: float
    healed: float = 0.0
    detail: str = ""
    outage: float = 0.0  # seconds the probe got no menu


@dataclass
class Calibration:
    window: float = 0.0
    ussd_hops: int = 0
    ussd_transfers: int = 0
    api_transfers: int = 0
    # group -> {"ussd": (front ms, execution ms), "api": (...)}
    cpu_ms: dict = field(default_factory=dict)
    wal_bytes: dict = field(default_factory=dict)  # phase -> (front, execution) WAL bytes
    commits: dict = field(default_factory=dict)  # phase -> (front, execution) commits
    idle_commits_per_s: float = 0.0
    idle_wal_per_s: float = 0.0
    idle_ms_per_s: dict = field(default_factory=dict)


# What each figure counts: the processes of these hosts whose command line has the word
# ("" = every process). PostgreSQL without Patroni, Redis without the Sentinels (and etcd).
GROUPS = {
    "lb": (("lb",), "haproxy"),
    "web": (H.WEB_HOSTS, "gunicorn"),
    "worker": (H.WORK_HOSTS, ""),
    "postgresql": (H.PG_HOSTS, "bin/postgres|postgres:"),
    "  of it pg1": (("pg1",), "bin/postgres|postgres:"),  # the primary while calibrating
    "redis": (("r1", "r2"), ":6379"),
    "coordination": (("pg1", "pg2", "r1", "r2", "arb"), "sentinel|etcd|patroni"),
}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_ms(group: str) -> float:
    """CPU (user + system, with reaped children) of the group's processes now running."""
    tick = os.sysconf("SC_CLK_TCK")
    hosts, words = GROUPS[group]
    total = 0
    for host in hosts:
        for pid in net.pids(net.ns(host)):
            line = _cmdline(pid)
            if words and not any(w in line for w in words.split("|")):
                continue
            if group == "redis" and "sentinel" in line:
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total * 1000 / tick


def cpu_all() -> dict:
    return {g: cpu_ms(g) for g in GROUPS}


class ClusterTest(LoadAndChecks):
    outage_statuses = (500, 502, 503, 504)

    def __init__(self, settings: Settings):
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.fault_rng = random.Random(self.rng.random())
        self.init_load()
        self.stop_load = threading.Event()
        self.api_batches = 0
        self.unanswered_batches = 0
        self.api_budget: int | None = None  # batches the API client sends, None: until stopped
        self.api_pace = settings.api_pace
        self.probes: list[tuple[float, bool]] = []
        self.faults: list[FaultRecord] = []
        self.calibration = Calibration()
        self.counts = {"ussd_hops": 0, "api_transfers": 0, "ussd_transfers": 0}
        self.count_lock = threading.Lock()
        self.ussd_seq = iter(range(10**9))
        self.seq_lock = threading.Lock()

    # -- what the shared load and checks ask of a harness ---------------------------------------
    def ussd_url(self) -> str:
        return f"http://{net.address('lb')}:{H.LB_PORT}/ussd"

    def supervise(self) -> int:
        return self.hosts.supervise()

    # -- set-up ---------------------------------------------------------------------------------
    def environment(self) -> dict:
        url = (
            H.database_url()
            + "&keepalives_idle=5&keepalives_interval=2&keepalives_count=2&tcp_user_timeout=5000"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            DATABASE_URL=url,
            REDIS_SENTINELS=H.sentinels(),
            REDIS_SENTINEL_MASTER=H.SENTINEL_MASTER,
            TUMA_REDIS_SOCKET_TIMEOUT_SECONDS="2",
            AT_API_URL=f"http://{net.address('gw')}:{H.GATEWAY_PORT}",
            TUMA_API_RATE_PER_MINUTE="1000000",
            **LOAD_ENV,
        )
        return env

    def bring_up(self) -> None:
        log = self.s.log
        t0 = time.monotonic()
        net.up()
        H.reset_state()
        self.logdir = tempfile.mkdtemp(prefix="tuma-cluster-")
        self.env = self.environment()
        self.hosts = H.Hosts(self.logdir, self.env, log)
        h = self.hosts
        h.start_etcd()
        h.start_redis("r1")
        h.start_redis("r2", replica_of="r1")
        h.start_sentinels()
        log(f"cluster: etcd, Redis and Sentinels up ({time.monotonic() - t0:.0f} s)")
        h.start_postgres_pair()
        log(f"cluster: PostgreSQL pg1 primary, pg2 synchronous standby ({time.monotonic() - t0:.0f} s)")
        import psycopg

        with psycopg.connect(
            host=net.address(h.pg_leader()), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{H.DATABASE}"')
        h.start_gateway()

    def prepare_data(self) -> None:
        import flask_migrate

        from ussd_app import create_app
        from ussd_app.api.keys import create_key
        from ussd_app.config import database_url
        from ussd_app.extensions import db
        from ussd_app.payments.models import RequestKind
        from ussd_app.payments.submit import record_request

        os.environ.update(self.env)
        self.app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url(self.env["DATABASE_URL"]),
                "REDIS_URL": None,
                "REDIS_SENTINELS": self.env["REDIS_SENTINELS"],
                "REDIS_SENTINEL_MASTER": H.SENTINEL_MASTER,
                "REDIS_SOCKET_TIMEOUT_SECONDS": 2.0,
                "PIN_PEPPER": self.env["PIN_PEPPER"],
                "SECRET_KEY": self.env["SECRET_KEY"],
                "AT_API_URL": self.env["AT_API_URL"],
                "AT_API_KEY": self.env["AT_API_KEY"],
            }
        )
        self.ctx = self.app.app_context()
        self.ctx.push()
        flask_migrate.upgrade(directory=os.path.join(H.ROOT, "migrations"))
        self.populate()
        merchant = self.merchants[0]
        record_request(
            db.session,
            request_id="seed-merchant",
            kind=RequestKind.DEPOSIT.value,
            debit_account_id=self.accounts["agents"][0],
            credit_account_id=merchant.account_id,
            amount=5_000_000_00,
        )
        self.accepted.add("seed-merchant")
        self.report.transfers += 1
        _, self.api_key = create_key(db.session, merchant, "cluster test", ["payout", "read"])
        db.session.commit()

    def start_service(self) -> None:
        h = self.hosts
        for host in H.WEB_HOSTS:
            h.start_web(host)
        for host in H.WORK_HOSTS:
            h.start_worker(host)
        h.start_lb()
        H.wait_for(lambda: sorted(h.lb_up()) == list(H.WEB_HOSTS), "both web hosts UP behind HAProxy", 60)

    # -- the load -------------------------------------------------------------------------------
    def ussd_loop(self) -> None:
        while not self.stop_load.is_set():
            with self.seq_lock:
                seq = next(self.ussd_seq)
            outcome = self.ussd_send(seq)
            with self.count_lock:
                self.counts["ussd_transfers"] += outcome.startswith("accepted")

    def api_loop(self) -> None:
        import requests

        customers = [phone for _, phone in self.accounts["customers"]]
        rng = random.Random(self.s.seed * 7919 + self.api_batches)
        sent = 0
        while not self.stop_load.is_set():
            if self.api_budget is not None and sent >= self.api_budget:
                return
            if sent:
                self.stop_load.wait(self.api_pace)
            sent += 1
            self.api_batches += 1
            n = self.api_batches  # one key per batch over the whole run: a key is one batch
            key = f"cluster-{self.s.seed}-{n}"
            body = {
                "payouts": [
                    {
                        "phone": rng.choice(customers),
                        "amount": rng.randint(10, 99) * 100,
                        "reference": f"P{n}-{i}",
                    }
                    for i in range(self.s.api_batch)
                ]
            }
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    response = requests.post(
                        f"http://{net.address('lb')}:{H.LB_PORT}/api/v1/payouts/batch",
                        json=body,
                        headers={"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": key},
                        timeout=20,
                    )
                except requests.RequestException:
                    time.sleep(0.3)  # no answer: the same key again, as a merchant's system would
                    continue
                if response.status_code == 202:
                    rows = response.json()["results"]
                    ids = [r["id"] for r in rows if r["status"] == "accepted"]
                    self.accepted.update(ids)
                    self.report.transfers += len(ids)
                    with self.count_lock:
                        self.counts["api_transfers"] += len(ids)
                    break
                if response.status_code in (409, *self.outage_statuses):
                    time.sleep(0.3)
                    continue
                self.report.problems.append(
                    f"payout batch {key}: {response.status_code} {response.text[:200]}"
                )
                break
            else:
                self.unanswered_batches += 1
                self.report.problems.append(f"payout batch {key}: no answer in 120 s (never told accepted)")

    def probe_loop(self) -> None:
        import requests

        phone = self.accounts["customers"][0][1]
        while not self.stop_load.is_set():
            ok = False
            try:
                r = requests.post(
                    self.ussd_url(),
                    data={
                        "sessionId": f"probe-{uuid.uuid4().hex}",
                        "serviceCode": "*384*7#",
                        "phoneNumber": phone,
                        "networkCode": "63902",
                        "text": "",
                    },
                    timeout=2,
                )
                ok = r.status_code == 200 and r.text.startswith("CON ")
            except requests.RequestException:
                ok = False
            self.probes.append((time.monotonic(), ok))
            time.sleep(0.25)

    def start_threads(self, ussd: bool, api: bool, probe: bool) -> list[threading.Thread]:
        threads = []
        targets = []
        if ussd:
            targets += [self.ussd_loop] * self.s.ussd_threads
        if api:
            targets.append(self.api_loop)
        if probe:
            targets.append(self.probe_loop)
        for target in targets:
            t = threading.Thread(target=target, daemon=True)
            t.start()
            threads.append(t)
        return threads

    def stop_threads(self, threads) -> None:
        self.stop_load.set()
        for t in threads:
            t.join(timeout=180)
        self.stop_load.clear()

    # -- calibration ----------------------------------------------------------------------------
    def pause_workers(self, sig) -> None:
        for host in H.WORK_HOSTS:
            proc = self.hosts.procs.get((host, "worker"))
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, sig)

    def sample(self) -> tuple[dict, float, int, int]:
        wal, commits = self.wal_and_commits()
        return cpu_all(), time.monotonic(), wal, commits

    def spent(self, before, after) -> tuple[dict, float, float]:
        """CPU-ms per group, WAL bytes and commits between two samples, less the idle rates."""
        c = self.calibration
        seconds = after[1] - before[1]
        cpu = {g: max(0.0, after[0][g] - before[0][g] - c.idle_ms_per_s[g] * seconds) for g in GROUPS}
        wal = max(0.0, after[2] - before[2] - c.idle_wal_per_s * seconds)
        commits = max(0.0, after[3] - before[3] - c.idle_commits_per_s * seconds)
        return cpu, wal, commits

    def calibrate(self) -> None:
        """CPU per USSD hop and per transfer, without faults, in two halves: the front (the
        load balancer, web, Redis, PostgreSQL's share of the hops or the API calls) with the
        workers stopped (SIGSTOP), then the execution (workers, PostgreSQL, Redis) once they
        are let go on what queued up, run until idle: executed in full batches, as under heavy
        load. USSD alone, then the API alone; the idle background subtracted."""
        log = self.s.log
        c = self.calibration
        self.quiesce()
        before = self.sample()
        time.sleep(5)  # the background: health checks, Patroni's loop, heartbeats, maintenance
        after = self.sample()
        seconds = after[1] - before[1]
        c.idle_ms_per_s = {g: (after[0][g] - before[0][g]) / seconds for g in GROUPS}
        c.idle_wal_per_s = (after[2] - before[2]) / seconds
        c.idle_commits_per_s = (after[3] - before[3]) / seconds
        for phase, ussd, api in (("ussd", True, False), ("api", False, True)):
            with self.count_lock:
                self.counts = {"ussd_hops": 0, "api_transfers": 0, "ussd_transfers": 0}
            hops = self.report.ussd["hops"]
            self.api_budget, self.api_pace = self.s.calibrate_batches, 0.0
            self.pause_workers(signal.SIGSTOP)
            try:
                s0 = self.sample()
                threads = self.start_threads(ussd, api, probe=False)
                if ussd:
                    time.sleep(self.s.calibrate_seconds)
                else:
                    threads[-1].join(timeout=300)  # the API client: its batches sent
                self.stop_threads(threads)
                s1 = self.sample()
            finally:
                self.pause_workers(signal.SIGCONT)
            self.quiesce()
            s2 = self.sample()
            self.api_budget, self.api_pace = None, self.s.api_pace
            self.counts["ussd_hops"] = self.report.ussd["hops"] - hops
            front, front_wal, front_commits = self.spent(s0, s1)
            back, back_wal, back_commits = self.spent(s1, s2)
            for g in GROUPS:
                c.cpu_ms.setdefault(g, {})[phase] = (front[g], back[g])
            c.wal_bytes[phase] = (front_wal, back_wal)
            c.commits[phase] = (front_commits, back_commits)
            if phase == "ussd":
                c.ussd_hops, c.ussd_transfers = self.counts["ussd_hops"], self.counts["ussd_transfers"]
            else:
                c.api_transfers = self.counts["api_transfers"]
            log(
                f"cluster: calibration {phase}: {self.counts}; front {s1[1] - s0[1]:.0f} s, "
                f"execution to idle {s2[1] - s1[1]:.0f} s"
            )

    def wal_and_commits(self) -> tuple[int, int]:
        """WAL position (bytes) and committed transactions of the database, on the primary."""
        import psycopg

        with psycopg.connect(
            host=net.address(self.hosts.pg_leader()), user="postgres", dbname=H.DATABASE, autocommit=True
        ) as conn:
            return conn.execute(
                "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, "
                "(SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
            ).fetchone()

    def capacity_table(self) -> list[str]:
        c = self.calibration
        n_hops, n_ussd, n_api = c.ussd_hops or 1, c.ussd_transfers or 1, c.api_transfers or 1
        lines = [
            f"CPU-ms (idle background subtracted) from {c.ussd_transfers} USSD sends ({c.ussd_hops} hops) "
            f"and {c.api_transfers} API payouts; front = the calls, execution = the workers' batches:",
            f"  {'':<13}{'USSD: per hop':>14}{'per send':>10}{'execution':>11}"
            f"{'API: per payout':>17}{'execution':>11}{'idle ms/s':>11}",
        ]
        for g in GROUPS:
            uf, ub = c.cpu_ms[g]["ussd"]
            af, ab = c.cpu_ms[g]["api"]
            lines.append(
                f"  {g:<13}{uf / n_hops:14.2f}{uf / n_ussd:10.2f}{ub / n_ussd:11.2f}"
                f"{af / n_api:17.2f}{ab / n_api:11.2f}{c.idle_ms_per_s[g]:11.0f}"
            )
        for phase, n in (("USSD send", n_ussd), ("API payout", n_api)):
            key = "ussd" if phase == "USSD send" else "api"
            (fw, bw), (fc, bc) = c.wal_bytes[key], c.commits[key]
            lines.append(
                f"  PostgreSQL per {phase}: WAL {fw / n:,.0f} + {bw / n:,.0f} bytes, "
                f"commits {fc / n:.2f} + {bc / n:.2f} (front + execution)"
            )
        lines.append(
            f"  (idle: {c.idle_wal_per_s:,.0f} WAL bytes/s, {c.idle_commits_per_s:.1f} commits/s, subtracted)"
        )
        return lines

    # -- the faults -----------------------------------------------------------------------------
    def busy_on(self, host: str) -> bool:
        """A worker on ``host`` is executing a transfer batch now (rq's own record of it)."""
        from rq import Worker

        from ussd_app.queues import get_redis

        pid = self.hosts.procs[(host, "worker")].pid
        for w in Worker.all(connection=get_redis()):
            if w.pid == pid and w.get_state() == "busy":
                job = w.get_current_job()
                if job is not None and job.func_name == "worker.jobs.execute_transfers":
                    return True
        return False

    def inject(self, kind: str) -> FaultRecord:
        h = self.hosts
        rng = self.fault_rng
        record = FaultRecord(kind, time.monotonic())
        if kind == "kill_web1":
            h.power_off("web1")
            time.sleep(rng.uniform(3, 6))  # the host is down that long, then boots
            h.start_web("web1")
            H.wait_for(lambda: "web1" in h.lb_up(), "web1 back behind HAProxy", 60)
        elif kind == "kill_work1_mid_batch":
            try:
                H.wait_for(lambda: self.busy_on("work1"), "work1 executing a batch", 30, every=0.02)
                record.detail = "while executing a batch"
            except RuntimeError:
                record.detail = "no batch caught in 30 s: killed idle"
            h.power_off("work1")
            time.sleep(rng.uniform(2, 5))
            h.start_worker("work1")
        elif kind == "cut_work2_from_db":
            net.cut("work2", list(H.PG_HOSTS))
            time.sleep(rng.uniform(6, 12))
            net.heal("work2")
        elif kind == "redis_failover":
            old = h.redis_primary()
            other = "r2" if old == "r1" else "r1"
            h.kill(old, "redis")
            H.wait_for(lambda: h.redis_primary() == other, f"Sentinel promotes {other}", 60)
            record.detail = f"{old} killed, {other} promoted"
            h.start_redis(old, replica_of=other)
            H.wait_for(lambda: self.redis_in_sync(old), f"{old} back as a replica", 60)
        elif kind == "kill_pg_primary":
            old = h.pg_leader()
            other = next(p for p in H.PG_HOSTS if p != old)
            h.power_off(old)
            H.wait_for(lambda: h.pg_leader() == other, f"Patroni promotes {other}", 90)
            promoted = time.monotonic() - record.started
            time.sleep(rng.uniform(2, 5))
            # The old primary comes back: Patroni finds the leader key held by the other,
            # rewinds its data directory and starts it as a standby (it never takes a write).
            h.start_patroni(old)
            H.wait_for(lambda: h.sync_standby() == old, f"{old} back as the synchronous standby", 180)
            if not self.in_recovery(old):
                self.report.problems.append(f"{old} came back taking writes (not fenced)")
            record.detail = f"{old} off, {other} promoted in {promoted:.1f} s, {old} rejoined as standby"
        elif kind == "partition_lb_from_web":
            victim = rng.choice(H.WEB_HOSTS)
            net.cut("lb", [victim])
            time.sleep(rng.uniform(6, 10))
            net.heal("lb")
            H.wait_for(lambda: victim in h.lb_up(), f"{victim} back behind HAProxy", 60)
            record.detail = f"lb cut from {victim}"
        record.healed = time.monotonic()
        return record

    def in_recovery(self, host: str) -> bool:
        import psycopg

        with psycopg.connect(
            host=net.address(host), user="postgres", dbname="postgres", connect_timeout=3
        ) as conn:
            return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]

    def redis_in_sync(self, host: str) -> bool:
        import redis

        r = redis.Redis(host=net.address(host), port=H.REDIS_PORT, socket_timeout=1)
        info = r.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def outage(self, record: FaultRecord, until: float) -> float:
        """Seconds in the fault's window (until 10 s after it healed, or the next fault) the
        probe got no menu."""
        end = min(record.healed + 10, until)
        window = [(t, ok) for t, ok in self.probes if record.started <= t <= end]
        down = 0.0
        for (t, ok), (t_next, _) in zip(window, window[1:], strict=False):
            if not ok:
                down += t_next - t
        return down

    def faults_under_load(self) -> None:
        log = self.s.log
        order = list(FAULTS)
        self.fault_rng.shuffle(order)
        log(f"cluster: faults in this order: {', '.join(order)}")
        threads = self.start_threads(ussd=True, api=True, probe=True)
        try:
            for kind in order:
                time.sleep(self.fault_rng.uniform(*self.s.gap_seconds))
                self.supervise()
                log(f"  fault: {kind}")
                try:
                    record = self.inject(kind)
                except Exception as exc:
                    self.report.problems.append(f"fault {kind}: {exc!r}")
                    record = FaultRecord(kind, time.monotonic(), time.monotonic(), detail=f"FAILED: {exc!r}")
                self.faults.append(record)
                self.report.faults[kind] += 1
                log(f"    healed after {record.healed - record.started:.1f} s {record.detail}")
            time.sleep(10)  # load on the healed cluster (and the probe window of the last fault)
        finally:
            self.stop_threads(threads)
        for record, after in zip(self.faults, self.faults[1:] + [None], strict=True):
            record.outage = self.outage(record, after.started if after else float("inf"))

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> bool:
        log = self.s.log
        started = time.monotonic()
        log(f"cluster: seed {self.s.seed} (CLUSTER_SEED={self.s.seed} replays)")
        saved_env = dict(os.environ)
        self.ctx = None
        try:
            self.bring_up()
            self.prepare_data()
            self.start_service()
            log(f"cluster: service up at {time.monotonic() - started:.0f} s; measuring CPU without faults")
            self.calibrate()
            for line in self.capacity_table():
                log(line)
            log(f"cluster: load and faults at {time.monotonic() - started:.0f} s")
            self.faults_under_load()
            log(f"cluster: faults done at {time.monotonic() - started:.0f} s; running to quiescence")
            self.quiesce()
            log(f"cluster: quiet at {time.monotonic() - started:.0f} s; checking on {self.hosts.pg_leader()}")
            self.verify()
            self.verify_payouts()
        except Exception as exc:
            self.report.problems.append(f"the run stopped: {exc!r}")
            import traceback

            traceback.print_exc()
        finally:
            if self.ctx is not None:
                from ussd_app.extensions import db

                db.session.remove()
                db.engine.dispose()
                self.ctx.pop()
            os.environ.clear()
            os.environ.update(saved_env)
            if not self.s.keep:
                if hasattr(self, "hosts"):
                    self.hosts.stop_all()
                net.down()
                H.remove_state()  # the databases' and Redis's files; the logs stay
        self.report.seconds = time.monotonic() - started
        self.print_report()
        return self.report.ok

    def verify_payouts(self) -> None:
        """Nothing paid out that the merchant's system was not answered for: every payout in the
        database is a row of a batch answered 202 (a batch never answered would be the
        exception, and is reported as a problem by itself)."""
        from sqlalchemy import select

        from ussd_app.extensions import db
        from ussd_app.payments.models import RequestKind, TransferRequest

        ids = set(
            db.session.execute(
                select(TransferRequest.id).where(TransferRequest.kind == RequestKind.PAYOUT.value)
            ).scalars()
        )
        db.session.rollback()
        unasked = ids - self.accepted
        if unasked and not self.unanswered_batches:
            self.report.problems.append(f"{len(unasked)} payouts recorded that no answered batch holds")

    def print_report(self) -> None:
        log = self.s.log
        r = self.report
        log(f"requests by status: {r.by_status}")
        log(f"USSD sessions: {dict(r.ussd)}")
        log("faults (seconds without service: the USSD probe through the load balancer got no menu):")
        for f in self.faults:
            log(
                f"  {f.kind:<24} {f.outage:5.1f} s without service, healed in {f.healed - f.started:5.1f} s  {f.detail}"
            )
        for title, items in (("LOST", r.lost), ("DOUBLED", r.doubled), ("PROBLEM", r.problems)):
            for item in items[:50]:
                log(f"{title}: {item}")
        log(f"cluster: {r.seconds:.0f} s; logs in {getattr(self, 'logdir', '-')}")
        log(
            f"{r.transfers} transfers, {sum(r.faults.values())} faults, {len(r.lost)} lost, "
            f"{len(r.doubled)} doubled, ledger check {'passed' if r.ledger_ok else 'FAILED'}"
        )


def main(seed: int | None = None, keep: bool = False) -> int:
    if seed is None:
        seed = (
            int(os.environ["CLUSTER_SEED"])
            if os.environ.get("CLUSTER_SEED")
            else random.SystemRandom().randrange(10**6)
        )
    settings = Settings(seed=seed, keep=keep, log=lambda line: print(line, flush=True))
    test = ClusterTest(settings)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return 0 if test.run() else 1
