"""Receipt latency at a modest steady load: the sender before lanes against the working tree's, in
one run, alternating, on the same database, worker setup and local gateway.

    .venv/bin/python bench/sms_latency_ab.py --database-url postgresql+psycopg://.../tuma_x \\
        [--rate 20] [--seconds 8] [--rounds 3]

What ``bench/ussd_bench.py``'s end-to-end figure measures after the confirm, without the USSD
hops: transfer requests are queued at ``--rate`` a second (each rings the transfers doorbell, as
a confirm does), one ``python -m worker --no-cron`` (all queues in one process, as in that
bench) executes them and sends their two receipts each through the local gateway (a process of
its own). For each transfer: posted → the last of its receipts handed over (``executed_at`` →
``sent_at``), p50/p99, per implementation and round. The worker of an "old" round runs the
sender at ``--old`` (read from git), a "new" round the working tree's. The database must be one
the benchmark may migrate and fill (customers, transfers, outbox rows). Only ratios within one
run mean anything on a shared machine.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The last commit whose sender claimed batches of one row per number (before lanes).
BEFORE_LANES = "8c9a2a5"


def run_worker(which: str, rev: str) -> int:
    """``python -m worker --no-cron`` with the sender at ``rev`` (which == "old") or as it is."""
    if which == "old":
        from bench.sms_sender_bench import old_sender
        from ussd_app.sms import sender

        sender.send_due = old_sender(rev).send_due  # worker/jobs.py calls sender.send_due
    from worker.__main__ import main as worker_main

    return worker_main(["--no-cron"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def centile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--old", default=BEFORE_LANES)
    parser.add_argument("--rate", type=float, default=20, help="transfers a second (two receipts each)")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--order", default="old,new")
    parser.add_argument(
        "--busy", type=int, default=0, help="processes spinning the CPU meanwhile (the web tier's load)"
    )
    parser.add_argument(
        "--old-tree",
        default=None,
        help="run the old rounds' worker from this checkout (all of it, not only the sender)",
    )
    parser.add_argument("--log", default=None, help="keep each worker's log in <this>.<round>.<which>")
    parser.add_argument("--worker", choices=("old", "new", "busy"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL): a PostgreSQL database this may fill")

    from bench.sms_sender_bench import GatewayProcess

    if args.worker == "busy":
        while True:  # the web tier's argon2 and Flask work, as far as the scheduler can tell
            sum(range(10_000))
    gateway = None if args.worker else GatewayProcess()
    os.environ.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        AT_API_URL=os.environ.get("AT_API_URL") if args.worker else gateway.url,
        AT_API_KEY="bench",
        PIN_PEPPER="bench",
        TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
        TUMA_VELOCITY_MAX_COUNT="0",
        TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
    )
    if args.worker:
        return run_worker(args.worker, args.old)

    import random

    import flask_migrate
    from rq import Worker
    from sqlalchemy import func, insert, select

    from bench.population import customers
    from ussd_app import create_app
    from ussd_app.clock import utcnow
    from ussd_app.extensions import db
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.payments.submit import announce
    from ussd_app.queues import get_redis
    from ussd_app.sms.outbox import OutboxMessage

    app = create_app()
    rng = random.Random(7)
    spans: dict[str, list[list[float]]] = {"old": [], "new": []}
    posted_spans: dict[str, list[list[float]]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    busy = [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "busy"], cwd=ROOT)
        for _ in range(args.busy)
    ]
    try:
        with app.app_context():
            session = db.session
            get_redis().flushdb()
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            have = session.execute(
                select(func.count()).select_from(db.Model.metadata.tables["users"])
            ).scalar()
            if have < args.users:
                customers(session, args.users, balance=10_000_000_000, tier="full")
            ids = list(
                session.execute(
                    select(db.Model.metadata.tables["users"].c.account_id).where(
                        db.Model.metadata.tables["users"].c.role == "customer"
                    )
                ).scalars()
            )
            for round_ in range(args.rounds):
                for which in args.order.split(","):
                    command = [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--worker",
                        which,
                        "--old",
                        args.old,
                    ]
                    if which == "old" and args.old_tree:
                        command = [sys.executable, "-m", "worker", "--no-cron"]  # the whole worker as it was
                    worker = subprocess.Popen(
                        command,
                        cwd=args.old_tree if which == "old" and args.old_tree else ROOT,
                        env=dict(os.environ, AT_API_URL=gateway.url),
                        stdout=subprocess.DEVNULL,
                        stderr=open(f"{args.log}.{round_ + 1}.{which}", "w")
                        if args.log
                        else subprocess.DEVNULL,
                    )
                    deadline = time.monotonic() + 30
                    while not Worker.all(connection=get_redis()) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    cpu_before = cpu_seconds(worker.pid)
                    since = utcnow()
                    n = int(args.rate * args.seconds)
                    start = time.monotonic()
                    for k in range(n):
                        pause = start + k / args.rate - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        d, c = rng.sample(ids, 2)
                        rid = uuid.uuid4().hex
                        session.execute(
                            insert(TransferRequest),
                            [
                                dict(
                                    id=rid,
                                    code=transaction_code(rid),
                                    kind="send",
                                    debit_account_id=d,
                                    credit_account_id=c,
                                    amount=rng.randint(1, 500) * 100,
                                    fee=0,
                                    reference=None,
                                    status="queued",
                                    attempts=0,
                                    created_at=utcnow(),
                                )
                            ],
                        )
                        session.commit()
                        announce(rid)
                    unfinished = (
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(OutboxMessage.status.in_(("pending", "sending")))
                    )
                    queued = (
                        select(func.count())
                        .select_from(TransferRequest)
                        .where(TransferRequest.status == "queued")
                    )
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline and (
                        session.execute(queued).scalar_one() or session.execute(unfinished).scalar_one()
                    ):
                        session.rollback()
                        time.sleep(0.05)
                    rows = session.execute(
                        select(
                            TransferRequest.created_at,
                            TransferRequest.executed_at,
                            func.max(OutboxMessage.sent_at),
                        )
                        .join(OutboxMessage, OutboxMessage.transfer_request_id == TransferRequest.id)
                        .where(TransferRequest.created_at >= since, OutboxMessage.sent_at.is_not(None))
                        .group_by(TransferRequest.id, TransferRequest.created_at, TransferRequest.executed_at)
                    ).all()
                    session.rollback()
                    cpu[which].append((cpu_seconds(worker.pid) - cpu_before) / max(1, len(rows)) * 1000)
                    worker.terminate()
                    worker.wait(timeout=30)
                    while Worker.all(connection=get_redis()):
                        time.sleep(0.05)
                    ms = [(sent - executed).total_seconds() * 1000 for _, executed, sent in rows]
                    posted = [(executed - created).total_seconds() * 1000 for created, executed, _ in rows]
                    spans[which].append(ms)
                    posted_spans[which].append(posted)
                    print(
                        f"round {round_ + 1} {which}: {len(rows)}/{n} transfers with receipts sent; "
                        f"confirm → posted p50 {centile(posted, 0.5):.0f} ms; posted → handed over "
                        f"p50 {centile(ms, 0.5):.0f} / p99 {centile(ms, 0.99):.0f} ms; worker CPU {cpu[which][-1]:.1f} ms a transfer",
                        flush=True,
                    )
    finally:
        for p in busy:
            p.kill()
            p.wait()
        if gateway is not None:
            gateway.stop()
    print(f"\n{args.rate:g} transfers/s for {args.seconds:g} s a round, {args.rounds} rounds, one worker:")
    p50 = {}
    for which in spans:
        if not spans[which]:
            continue
        every = [v for run in spans[which] for v in run]
        p50[which] = statistics.median([centile(run, 0.5) for run in spans[which]])
        print(
            f"  {which}: posted → handed over p50 {p50[which]:.0f} ms (rounds "
            f"{', '.join(f'{centile(r, 0.5):.0f}' for r in spans[which])}), p99 over all "
            f"{centile(every, 0.99):.0f} ms; confirm → posted p50 "
            f"{statistics.median([centile(r, 0.5) for r in posted_spans[which]]):.0f} ms; worker CPU "
            f"{statistics.median(cpu[which]):.1f} ms a transfer (its two receipts included)"
        )
    if len(p50) == 2:
        print(f"  new ÷ old p50: {p50['new'] / p50['old']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
