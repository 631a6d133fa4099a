"""Receipt latency at a modest steady load: the sender at ``--old`` (before lanes) against the
working tree's, side by side in the same seconds, so both see the same machine.

    .venv/bin/python bench/sms_latency_ab.py --database-url postgresql://.../tuma_x \\
        [--rate 17 --seconds 6 --burst 1.5] [--rounds 6] [--old REV | --old-tree DIR]
        [--old-worker-args="--dequeue default"] [--new-env TUMA_SMS_BATCH_SIZE=32]

The figures in bench/analysis.md ("Receipt latency after lanes") were taken with
``--rate 17 --seconds 6 --burst 1.5 --rounds 6``.

What ``bench/ussd_bench.py``'s end-to-end figure measures after the confirm, without the USSD
hops: transfer requests are queued at ``--rate`` a second (each rings the transfers doorbell, as
a confirm does) and one ``python -m worker --no-cron`` (all queues in one process, as in that
bench) executes them and sends their two receipts each to the local gateway (a process of its
own). For each transfer: posted → the last of its receipts handed over (``executed_at`` →
``sent_at``) and confirm → posted.

The two senders run at once, each with its own worker, database (``--database-url`` and the
same name with ``_b``; made and migrated if missing, filled with customers, outbox rows left)
and Redis (a ``redis-server`` of this script's own on a free port each), fed one request each
per tick: on a machine shared with other work, a run one after the other measures the
machine's moods; side by side both meet the same ones. The two databases swap senders each
round. Prints each round's p50 / p99 and the median of the rounds' p50s per sender.
"""

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The last commit whose sender claimed batches of one row per number (before lanes).
BEFORE_LANES = "8c9a2a5"

LOAD_ENV = dict(
    AT_API_KEY="bench",
    PIN_PEPPER="bench",
    # Full-tier wallets with limits far above the run and velocity rules off: every send posts.
    TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
    TUMA_VELOCITY_MAX_COUNT="0",
    TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
)


def run_worker(which: str, rev: str, extra: list[str]) -> int:
    """``python -m worker --no-cron`` with the sender at ``rev`` (which == "old") or as it is."""
    if which == "old":
        from bench.sms_sender_bench import old_sender
        from ussd_app.sms import sender

        sender.send_due = old_sender(rev).send_due  # worker/jobs.py calls sender.send_due
    from worker.__main__ import main as worker_main

    return worker_main(["--no-cron", *extra])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def centile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from ussd_app.config import database_url

    url = database_url(url)
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


class Side:
    """One database, Redis and worker, and the requests fed to it."""

    def __init__(self, url: str, users: int):
        import flask_migrate
        from sqlalchemy import func, select

        from bench.population import customers
        from ussd_app import create_app
        from ussd_app.extensions import db

        ensure_database(url)
        self.redis_port = free_port()
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.env = dict(
            os.environ, DATABASE_URL=url, REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", **LOAD_ENV
        )
        from ussd_app.config import database_url

        self.app = create_app(
            {"SQLALCHEMY_DATABASE_URI": database_url(url), "REDIS_URL": self.env["REDIS_URL"]}
        )
        self.worker = None
        with self.app.app_context():
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            users_table = db.Model.metadata.tables["users"]
            if db.session.execute(select(func.count()).select_from(users_table)).scalar() < users:
                customers(db.session, users, balance=10_000_000_000, tier="full")
            self.accounts = list(
                db.session.execute(
                    select(users_table.c.account_id).where(users_table.c.role == "customer")
                ).scalars()
            )
            db.session.remove()

    def start(
        self,
        which: str,
        rev: str,
        gateway_url: str,
        log: str | None,
        old_tree: str | None = None,
        extra: str | None = None,
        env: dict | None = None,
    ) -> None:
        from rq import Worker

        from ussd_app.clock import utcnow
        from ussd_app.queues import get_redis

        self.which = which
        command = [sys.executable, os.path.abspath(__file__), "--worker", which, "--old", rev]
        if extra:
            command += [f"--worker-args={extra}"]
        if which == "old" and old_tree:
            command = [
                sys.executable,
                "-m",
                "worker",
                "--no-cron",
                *(extra or "").split(),
            ]  # all of it as it was
        self.worker = subprocess.Popen(
            command,
            cwd=old_tree if which == "old" and old_tree else ROOT,
            env=dict(self.env, AT_API_URL=gateway_url, **(env or {})),
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w") if log else subprocess.DEVNULL,  # noqa: SIM115
        )
        with self.app.app_context():
            deadline = time.monotonic() + 60
            while not Worker.all(connection=get_redis()) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.since = utcnow()
        self.cpu = cpu_seconds(self.worker.pid)

    def request(self, rng: random.Random) -> None:
        """One send, queued and announced as a USSD confirm does."""
        from sqlalchemy import insert

        from ussd_app.clock import utcnow
        from ussd_app.extensions import db
        from ussd_app.payments.models import TransferRequest, transaction_code
        from ussd_app.payments.submit import announce

        with self.app.app_context():
            debit, credit = rng.sample(self.accounts, 2)
            rid = uuid.uuid4().hex
            db.session.execute(
                insert(TransferRequest),
                [
                    dict(
                        id=rid,
                        code=transaction_code(rid),
                        kind="send",
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=rng.randint(1, 500) * 100,
                        fee=0,
                        reference=None,
                        status="queued",
                        attempts=0,
                        created_at=utcnow(),
                    )
                ],
            )
            db.session.commit()
            announce(rid)
            db.session.remove()

    def finish(self) -> dict:
        """Wait for the work to drain, stop the worker; the spans of this round."""
        from sqlalchemy import func, select

        from ussd_app.extensions import db
        from ussd_app.payments.models import TransferRequest
        from ussd_app.sms.outbox import OutboxMessage

        with self.app.app_context():
            session = db.session
            unfinished = (
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(("pending", "sending")))
            )
            queued = (
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                session.execute(queued).scalar_one() or session.execute(unfinished).scalar_one()
            ):
                session.rollback()
                time.sleep(0.05)
            cpu = cpu_seconds(self.worker.pid) - self.cpu
            rows = session.execute(
                select(
                    TransferRequest.created_at, TransferRequest.executed_at, func.max(OutboxMessage.sent_at)
                )
                .join(OutboxMessage, OutboxMessage.transfer_request_id == TransferRequest.id)
                .where(TransferRequest.created_at >= self.since, OutboxMessage.sent_at.is_not(None))
                .group_by(TransferRequest.id, TransferRequest.created_at, TransferRequest.executed_at)
            ).all()
            db.session.remove()
        self.stop()
        return dict(
            sms=[(sent - executed).total_seconds() * 1000 for _, executed, sent in rows],
            posted=[(executed - created).total_seconds() * 1000 for created, executed, _ in rows],
            cpu_ms=cpu * 1000 / max(1, len(rows)),
        )

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.worker = None

    def close(self) -> None:
        self.stop()
        with self.app.app_context():
            from ussd_app.extensions import db

            db.engine.dispose()
        self.redis.terminate()
        self.redis.wait(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--old", default=BEFORE_LANES)
    parser.add_argument(
        "--rate", type=float, default=15, help="transfers a second to each sender (two receipts each)"
    )
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument(
        "--burst",
        type=float,
        default=None,
        help="seconds: each round's requests come within this long at the start of the round instead "
        "of spread over it (as bench/ussd_mix.lua's interleaved conversations reach their confirm "
        "hop together)",
    )
    parser.add_argument(
        "--old-tree",
        default=None,
        help="a checkout (e.g. git archive of a commit) whose whole worker, not only its sender, runs as 'old'",
    )
    parser.add_argument("--log", default=None, help="keep each worker's log in <this>.<round>.<which>")
    parser.add_argument(
        "--old-worker-args", default="", help="more arguments for the old side's python -m worker"
    )
    parser.add_argument(
        "--new-worker-args",
        default="",
        help="more arguments for the new side's python -m worker (e.g. '--dequeue default', '--queues sms transfers')",
    )
    parser.add_argument(
        "--new-env",
        default="",
        help="NAME=value,... set for the new side's worker only (e.g. TUMA_SMS_BATCH_SIZE=32)",
    )
    parser.add_argument("--worker-args", default="", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("old", "new"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.old, args.worker_args.split())
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("--database-url (or DATABASE_URL): a PostgreSQL database this may fill")

    os.environ.update(LOAD_ENV)
    from bench.sms_sender_bench import GatewayProcess

    gateway = GatewayProcess()
    sides: list[Side] = []
    results: dict[str, list[dict]] = {"old": [], "new": []}
    rng = random.Random(7)
    try:
        sides = [Side(args.database_url, args.users), Side(args.database_url + "_b", args.users)]
        for round_ in range(args.rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for side, which in zip(sides, order, strict=True):
                side.start(
                    which,
                    args.old,
                    gateway.url,
                    f"{args.log}.{round_ + 1}.{which}" if args.log else None,
                    old_tree=args.old_tree,
                    extra=args.new_worker_args if which == "new" else args.old_worker_args,
                    env=dict(pair.split("=", 1) for pair in args.new_env.split(",") if pair)
                    if which == "new"
                    else None,
                )
            n = int(args.rate * args.seconds)
            start = time.monotonic()
            for k in range(n):
                at = k / args.rate if args.burst is None else k * args.burst / n
                pause = start + at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                for side in sides if k % 2 == 0 else sides[::-1]:
                    side.request(rng)
            for side in sides:
                got = side.finish()
                results[side.which].append(got)
                print(
                    f"round {round_ + 1} {side.which}: {len(got['sms'])}/{n} transfers with receipts; "
                    f"confirm → posted p50 {centile(got['posted'], 0.5):.0f} ms; posted → handed over "
                    f"p50 {centile(got['sms'], 0.5):.0f} / p99 {centile(got['sms'], 0.99):.0f} ms; "
                    f"worker CPU {got['cpu_ms']:.1f} ms a transfer",
                    flush=True,
                )
    finally:
        for side in sides:
            side.close()
        gateway.stop()
    print(
        f"\n{args.rate:g} transfers/s to each sender for {args.seconds:g} s a round, {args.rounds} rounds, "
        f"side by side, one worker each; posted → receipts handed over:"
    )
    p50 = {}
    for which, rounds in results.items():
        if not rounds:
            continue
        p50[which] = statistics.median([centile(r["sms"], 0.5) for r in rounds])
        p99 = statistics.median([centile(r["sms"], 0.99) for r in rounds])
        each = ", ".join(f"{centile(r['sms'], 0.5):.0f}" for r in rounds)
        print(
            f"  {which}: p50 {p50[which]:.0f} ms, p99 {p99:.0f} ms (medians of the rounds; rounds' p50 "
            f"{each}); confirm → posted p50 "
            f"{statistics.median([centile(r['posted'], 0.5) for r in rounds]):.0f} ms; worker CPU "
            f"{statistics.median([r['cpu_ms'] for r in rounds]):.1f} ms a transfer"
        )
    if len(p50) == 2:
        print(f"  new ÷ old, p50: {p50['new'] / p50['old']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
