"""Faults under load: real gunicorn, real workers, real PostgreSQL, a Redis of our own.

    python -m chaos [--transfers 3000] [--seed N]       (or: make chaos; CHAOS_SEED=N replays)

Thousands of transfers of every kind that exists (P2P sends through the USSD webhook and
recorded directly, cash-in and cash-out at agents, buy goods, protected purchases with the
buyer's confirmation or their expiry, sends to unregistered numbers later registered or
refunded) flow while, at random moments, the harness SIGKILLs a worker (and starts another),
restarts Redis empty, terminates every database connection (``pg_terminate_backend``), makes
the SMS gateway answer 500 for a few seconds (an outage: the senders' circuit opens, and its
probe closes it once the gateway answers) or hang, and kills and restarts gunicorn.

Then it heals everything, lets the workers (with the maintenance job re-announcing stale
requests) run to quiescence, and checks: ``ledger check`` passes; every request reached exactly
one final state; every request the harness saw accepted exists; no request accepted more legs
than it has; every executed request has its SMS, all sent. It prints a summary line
``N transfers, M faults injected, 0 lost, 0 doubled, ledger check passed`` and exits non-zero
on any failure.

The seed fixes the transfers and the faults (their kinds, order and the moments they are
drawn for); process scheduling still varies between runs.
"""

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from chaos.load import LOAD_ENV, LoadAndChecks, Report, stop_group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_KINDS = ("kill_worker", "restart_redis", "terminate_db", "sms_500", "sms_hang", "restart_web")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def chaos_database_url(base: str | None, suffix: str = "chaos") -> str:
    """``<DATABASE_URL's database>_<suffix>`` on the same server (created and dropped here)."""
    base = base or "postgresql://postgres@127.0.0.1/tuma"
    parts = urlsplit(base.replace("postgresql+psycopg://", "postgresql://", 1))
    name = parts.path.lstrip("/") or "tuma"
    return urlunsplit(parts._replace(path=f"/{name}_{suffix}"))


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def _admin(url: str, sql: str) -> None:
    import psycopg

    admin, _ = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql)


@dataclass
class Settings:
    seed: int
    transfers: int = 3000
    faults: int = 24
    fault_kinds: tuple = FAULT_KINDS  # drawn from at random; or, with fault_each, each once
    fault_each: bool = False
    database_url: str = ""
    redis_port: int = 6390
    web_workers: int = 2
    workers: int = 2
    ussd_threads: int = 3
    pace: float = 0.0  # seconds between direct submissions (0: as fast as recorded)
    quiesce_timeout: float = 240.0
    keep_database: bool = False
    log: object = print


class Cluster:
    """The processes under test, each started here and stopped by its own pid."""

    def __init__(self, settings: Settings, env: dict, logdir: str):
        self.s = settings
        self.env = env
        self.logdir = logdir
        self.redis = None
        self.web = None
        self.web_port = free_port()
        self.workers: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.generation = Counter()

    def _spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        self.generation[name] += 1
        with open(os.path.join(self.logdir, f"{name}-{self.generation[name]}.log"), "w") as log:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )

    def _kill(self, proc: subprocess.Popen | None, sig=signal.SIGKILL) -> None:
        stop_group(proc, sig)

    # -- Redis (ours, never the shared one) -------------------------------------------------
    def start_redis(self) -> None:
        self.redis = self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.s.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
        wait_port(self.s.redis_port)

    def restart_redis(self, down_seconds: float) -> None:
        self._kill(self.redis)  # its contents are lost: no persistence
        time.sleep(down_seconds)  # the outage itself, not a wait for a condition
        self.start_redis()

    # -- gunicorn ---------------------------------------------------------------------------
    def start_web(self) -> None:
        self.web = self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(self.s.web_workers),
                "-b",
                f"127.0.0.1:{self.web_port}",
                "--log-level",
                "warning",
                "wsgi:app",
            ],
        )
        wait_port(self.web_port)

    def restart_web(self) -> None:
        self._kill(self.web)
        self.start_web()

    # -- workers ----------------------------------------------------------------------------
    def start_worker(self) -> None:
        self.workers.append(self._spawn("worker", [sys.executable, "-m", "worker"]))

    def kill_worker(self, rng: random.Random) -> None:
        with self.lock:
            alive = [w for w in self.workers if w.poll() is None]
            if not alive:
                return
            victim = rng.choice(alive)
        self._kill(victim)

    def supervise(self) -> int:
        """Replace dead workers (killed, or exited when Redis vanished); how many replaced."""
        replaced = 0
        with self.lock:
            for i, w in enumerate(self.workers):
                if w.poll() is not None:
                    self.workers[i] = self._spawn("worker", [sys.executable, "-m", "worker"])
                    replaced += 1
        return replaced

    def stop(self) -> None:
        for w in self.workers:
            self._kill(w, signal.SIGTERM)
        self._kill(self.web, signal.SIGTERM)
        self._kill(self.redis)


class Chaos(LoadAndChecks):
    def __init__(self, settings: Settings):
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.init_load()
        self.stop_faults = threading.Event()

    def ussd_url(self) -> str:
        return f"http://127.0.0.1:{self.cluster.web_port}/ussd"

    def supervise(self) -> int:
        return self.cluster.supervise()

    # -- set-up -------------------------------------------------------------------------------
    def environment(self, gateway_url: str) -> dict:
        url = self.s.database_url
        return dict(
            os.environ,
            DATABASE_URL=url,
            REDIS_URL=f"redis://127.0.0.1:{self.s.redis_port}/0",
            AT_API_URL=gateway_url,
            **LOAD_ENV,
        )

    def fresh_database(self) -> None:
        _, name = _admin_url(self.s.database_url)
        _admin(self.s.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _admin(self.s.database_url, f'CREATE DATABASE "{name}"')

    def drop_database(self) -> None:
        _, name = _admin_url(self.s.database_url)
        _admin(self.s.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- the load -----------------------------------------------------------------------------
    def plan(self) -> list[str]:
        kinds = (
            ["send"] * 22
            + ["ussd_send"] * 10
            + ["deposit"] * 12
            + ["withdrawal"] * 12
            + ["buy_goods"] * 12
            + ["protected"] * 10
            + ["confirm_delivery"] * 5
            + ["send_unregistered"] * 10
            + ["register"] * 4
            + ["pay_bill_like_send"] * 3
        )
        return [self.rng.choice(kinds) for _ in range(self.s.transfers)]

    def submit(self, build) -> str | None:
        """Record a request built by ``build(session)`` and announce it; retried under the same
        id through database and Redis faults. The id once committed, or None."""
        from sqlalchemy.exc import SQLAlchemyError

        from ussd_app.extensions import db
        from ussd_app.payments.submit import announce

        committed = None
        for _attempt in range(40):
            try:
                if committed is None:
                    ids = build(db.session)
                    db.session.commit()
                    committed = ids
                    if not ids:
                        return None
                    self.accepted.update(ids)
                announce(committed[0])
                return committed[0]
            except SQLAlchemyError:
                db.session.rollback()
                time.sleep(0.1)  # the database is being restarted under us: try again
            except Exception as exc:  # Redis down: a lost announcement only delays it
                if committed is not None:
                    return committed[0]
                db.session.rollback()
                if "Redis" not in type(exc).__name__ and "Connection" not in type(exc).__name__:
                    raise
                time.sleep(0.1)
        if committed is None:
            self.report.problems.append("a direct submission never committed")
        return committed[0] if committed else None

    def direct(self, op: str, seq: int) -> None:
        from sqlalchemy import select

        from ussd_app.payments import holds
        from ussd_app.payments.models import RequestKind, TransferRequest
        from ussd_app.payments.submit import mint_request_id, record_request
        from ussd_app.tariffs import commission, quote
        from ussd_app.users import create_user, find_by_phone

        rng = self.rng
        customers = self.accounts["customers"]
        amount = rng.randint(10, 999) * 100
        rid = mint_request_id()
        payer, payer_phone = rng.choice(customers)
        payee, _ = rng.choice([c for c in customers if c[0] != payer])
        agent = rng.choice(self.accounts["agents"])
        merchant = rng.choice(self.accounts["merchants"])
        hold_key = rng.random()
        new_phone = rng.choice(self.unregistered) if self.unregistered else None
        if new_phone is None and op in ("send_unregistered", "register"):
            op = "send"

        def rec(kind, debit, credit, **kw):
            def build(session):
                record_request(
                    session,
                    request_id=rid,
                    kind=kind.value,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=amount,
                    # fees are quoted inside the retried transaction (they read the tariff)
                    **{k: v() if callable(v) else v for k, v in kw.items()},
                )
                return [rid]

            return build

        if op in ("send", "pay_bill_like_send"):
            build = rec(RequestKind.SEND, payer, payee, fee=lambda: quote("send", amount))
        elif op == "deposit":
            build = rec(RequestKind.DEPOSIT, agent, payer)
        elif op == "withdrawal":
            amount = max(amount, 100_00)
            build = rec(
                RequestKind.WITHDRAWAL,
                payer,
                agent,
                fee=lambda: quote("withdrawal", amount),
                commission=lambda: commission("withdrawal", amount),
            )
        elif op == "buy_goods":
            build = rec(RequestKind.BUY_GOODS, payer, merchant, fee=lambda: quote("buy_goods", amount))
        elif op == "protected":
            build = rec(
                RequestKind.PROTECTED_PURCHASE,
                payer,
                merchant,
                fee=lambda: quote("buy_goods", amount),
                hold_seconds=int(self.env["TUMA_PROTECTED_HOLD_SECONDS"]),
            )
        elif op == "send_unregistered":
            build = rec(
                RequestKind.SEND_UNREGISTERED,
                payer,
                self.suspense_id,
                fee=lambda: quote("send", amount),
                reference=new_phone,
                hold_seconds=int(self.env["TUMA_SUSPENSE_HOLD_SECONDS"]),
            )
        elif op == "confirm_delivery":

            def build(session):
                waiting = holds.pending_holds(session, RequestKind.PROTECTED_PURCHASE)
                if not waiting:
                    return []
                hold = waiting[int(hold_key * len(waiting))]
                request = holds.resolve(session, hold, RequestKind.PROTECTED_POST)
                return [request.id] if request is not None else []

        elif op == "register":
            if new_phone in self.registered_later:
                return

            def build(session):
                if find_by_phone(session, new_phone) is not None:
                    return []  # registered by an earlier attempt whose answer was lost
                existing = session.execute(
                    select(TransferRequest.id).where(
                        TransferRequest.kind == RequestKind.SEND_UNREGISTERED.value,
                        TransferRequest.reference == new_phone,
                    )
                ).first()
                if existing is None:
                    return []
                user = create_user(
                    session, phone=new_phone, name="Newly Registered", role="customer", pin=None
                )
                session.flush()
                return [r.id for r in holds.post_to_new_customer(session, user)] or []

            rid_list = self.submit(build)
            if rid_list is not None or self._registered(new_phone):
                self.registered_later.append(new_phone)
                self.unregistered.remove(new_phone)
            return
        else:
            raise ValueError(op)
        if self.submit(build) is not None:
            self.report.transfers += 1

    # -- the faults ---------------------------------------------------------------------------
    def inject(self, kind: str) -> None:
        c = self.cluster
        log = self.s.log
        if kind == "kill_worker":
            c.kill_worker(self.fault_rng)
        elif kind == "restart_redis":
            c.restart_redis(self.fault_rng.uniform(0.2, 1.5))
        elif kind == "terminate_db":
            _, name = _admin_url(self.s.database_url)
            _admin(
                self.s.database_url,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            )
        elif kind == "sms_500":
            # An outage of a few seconds, as a gateway's are: every call answered 500 until it
            # ends. (Not "the next N calls fail": the senders' circuit calls it once a pause, so
            # N failures would last minutes of doubling pauses, not the gateway's few seconds.)
            self.gateway.gateway.outage(500)
            threading.Timer(self.fault_rng.uniform(1, 8), self.gateway.gateway.recover).start()
        elif kind == "sms_hang":
            self.gateway.gateway.hold_next(self.fault_rng.randint(1, 4))
            threading.Timer(self.fault_rng.uniform(2, 6), self.gateway.gateway.release).start()
        elif kind == "restart_web":
            c.restart_web()
        self.report.faults[kind] += 1
        log(f"  fault: {kind}")

    def fault_loop(self, schedule: list[tuple[float, str]]) -> None:
        start = time.monotonic()
        for at, kind in schedule:
            while not self.stop_faults.is_set() and time.monotonic() - start < at:
                self.cluster.supervise()
                self.stop_faults.wait(0.1)
            if self.stop_faults.is_set():
                return
            try:
                self.inject(kind)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                self.report.problems.append(f"could not inject {kind}: {exc!r}")

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Report:
        import tempfile

        from devtools.gateway import Gateway, serve_in_thread

        started = time.monotonic()
        log = self.s.log
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the gateway's access log
        log(
            f"chaos: seed {self.s.seed} (CHAOS_SEED={self.s.seed} replays), {self.s.transfers} transfers planned"
        )
        self.fresh_database()
        self.gateway = serve_in_thread(Gateway())
        self.env = self.environment(self.gateway.url)
        logdir = tempfile.mkdtemp(prefix="tuma-chaos-")
        self.cluster = Cluster(self.s, self.env, logdir)
        saved_env = dict(os.environ)
        os.environ.update(self.env)
        app = None
        try:
            import flask_migrate

            from ussd_app import create_app
            from ussd_app.config import database_url
            from ussd_app.extensions import db
            from ussd_app.payments.holds import suspense_account_id

            self.cluster.start_redis()
            # Config reads the environment once, at import: this process's settings explicitly.
            app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": database_url(self.env["DATABASE_URL"]),
                    "REDIS_URL": self.env["REDIS_URL"],
                    "PIN_PEPPER": self.env["PIN_PEPPER"],
                    "SECRET_KEY": self.env["SECRET_KEY"],
                    "AT_API_URL": self.env["AT_API_URL"],
                }
            )
            with app.app_context():
                flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
                self.populate()
                self.suspense_id = suspense_account_id(db.session)
                db.session.commit()
                self.cluster.start_web()
                for _ in range(self.s.workers):
                    self.cluster.start_worker()
                log(f"chaos: set up in {time.monotonic() - started:.0f} s")
                self.load_and_faults(app)
                log(f"chaos: load done at {time.monotonic() - started:.0f} s; healing, running to quiescence")
                self.gateway.gateway.release()
                self.gateway.gateway.recover()
                self.cluster.supervise()
                self.quiesce()
                log(f"chaos: quiet at {time.monotonic() - started:.0f} s; checking")
                self.verify()
            log(f"chaos: logs in {logdir}")
        finally:
            self.stop_faults.set()
            self.gateway.gateway.release()
            self.gateway.gateway.recover()
            self.cluster.stop()
            self.gateway.stop()
            if app is not None:
                with app.app_context():
                    db.engine.dispose()
            os.environ.clear()
            os.environ.update(saved_env)
            if not self.s.keep_database:
                self.drop_database()
        self.report.seconds = time.monotonic() - started
        return self.report

    def load_and_faults(self, app) -> None:
        plan = self.plan()
        self.fault_rng = random.Random(self.rng.random())
        # Faults spread over the expected load time, at moments drawn from the seed.
        span = max(5.0, self.s.transfers * 0.012)
        if self.s.fault_each:
            kinds = list(self.s.fault_kinds)
        else:
            kinds = [self.fault_rng.choice(self.s.fault_kinds) for _ in range(self.s.faults)]
        schedule = sorted((self.fault_rng.uniform(0.5, span), kind) for kind in kinds)
        faults = threading.Thread(target=self.fault_loop, args=(schedule,), daemon=True)
        faults.start()
        ussd_seqs = [i for i, op in enumerate(plan) if op == "ussd_send"]
        ussd_threads = []
        chunks = [ussd_seqs[i :: self.s.ussd_threads] for i in range(self.s.ussd_threads)]
        for chunk in chunks:

            def run_chunk(chunk=chunk):
                for seq in chunk:
                    self.ussd_send(seq)

            thread = threading.Thread(target=run_chunk, daemon=True)
            thread.start()
            ussd_threads.append(thread)
        for seq, op in enumerate(plan):
            if op != "ussd_send":
                self.direct(op, seq)
                if self.s.pace:
                    time.sleep(self.s.pace)
        for thread in ussd_threads:
            thread.join()
        faults.join()  # every scheduled fault is injected, even when the load ran fast
        self.s.log(f"chaos: {len(plan)} operations submitted; faults: {dict(self.report.faults)}")


def run(settings: Settings) -> Report:
    return Chaos(settings).run()


def print_report(report: Report, log=print, chaos: Chaos | None = None) -> None:
    log(f"requests by status: {report.by_status}")
    log(f"requests by kind: {report.by_kind}")
    log(f"USSD sessions: {dict(report.ussd)}")
    log(f"faults: {dict(report.faults)}")
    for title, items in (("LOST", report.lost), ("DOUBLED", report.doubled), ("PROBLEM", report.problems)):
        for item in items[:50]:
            log(f"{title}: {item}")
        if len(items) > 50:
            log(f"{title}: ... and {len(items) - 50} more")
    log(f"chaos: {report.seconds:.0f} s")
    log(report.summary())
