"""Ledger throughput through the real queue and workers, beside pgbench and an rq no-op job.

    python bench/ledger_bench.py [--transfers 20000] [--workers 2] [--accounts 100000]

Needs PostgreSQL and Redis (BENCH_PG, default postgresql://postgres@127.0.0.1/<db>; BENCH_REDIS,
default redis://127.0.0.1:6379/11). Creates and drops its own databases. Prints one row per
scenario: transfers/s, and ratios to pgbench TPC-B (scale 1, same client count) and to the rq
no-op job rate measured in the same run. `ledger check` must pass after every scenario.
"""

import argparse
import bisect
import itertools
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1/postgres")
PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql://postgres@127.0.0.1")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qtAc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def fresh_database(name: str) -> str:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    return f"{PG_BASE}/{name}"


def pgbench_tps(clients: int, seconds: int) -> float:
    fresh_database("tuma_pgbench")
    env = dict(os.environ, PGHOST="127.0.0.1", PGUSER="postgres")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", "tuma_pgbench"], check=True, capture_output=True, env=env
    )
    out = subprocess.run(
        ["pgbench", "-c", str(clients), "-j", str(clients), "-T", str(seconds), "tuma_pgbench"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    psql("DROP DATABASE IF EXISTS tuma_pgbench WITH (FORCE)")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def noop_jobs_per_second(n: int = 2000) -> float:
    from redis import Redis
    from rq import Queue

    redis = Redis.from_url(REDIS)
    redis.flushdb()
    queue = Queue("bench-noop", connection=redis)
    for _ in range(n):
        queue.enqueue("bench.noop.noop", result_ttl=0)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, '.'); from redis import Redis; from rq import SimpleWorker, Queue;"
            f"r = Redis.from_url('{REDIS}'); SimpleWorker([Queue('bench-noop', connection=r)], connection=r).work(burst=True, logging_level='WARNING')",
        ],
        check=True,
        cwd=ROOT,
    )
    return n / (time.perf_counter() - start)


class Zipf:
    def __init__(self, n: int, s: float, rng: random.Random):
        weights = [1 / (k**s) for k in range(1, n + 1)]
        self.cdf = list(itertools.accumulate(weights))
        self.rng = rng

    def __call__(self) -> int:
        return bisect.bisect_left(self.cdf, self.rng.random() * self.cdf[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--scenarios", default="uniform,zipf,hot,fee")
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    db_url = fresh_database("tuma_bench")
    os.environ.update(DATABASE_URL=db_url, REDIS_URL=REDIS)

    import flask_migrate
    from sqlalchemy import func, insert, select

    from ussd_app import create_app
    from ussd_app.extensions import db
    from ussd_app.ledger import Account, AccountKind, TransferSpec, create_transfers, house_account
    from ussd_app.ledger.check import check
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.payments.submit import announce
    from ussd_app.queues import get_redis

    app = create_app()
    rng = random.Random(42)
    results = {}
    with app.app_context():
        get_redis().flushdb()
        flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
        session = db.session
        session.execute(
            insert(Account),
            [
                dict(
                    kind="customer",
                    flags=1,
                    debits_pending=0,
                    debits_posted=0,
                    credits_pending=0,
                    credits_posted=0,
                )
                for _ in range(args.accounts)
            ],
        )
        session.commit()
        ids = list(
            session.execute(
                select(Account.id).where(Account.kind == "customer").order_by(Account.id)
            ).scalars()
        )
        trust = house_account(session, AccountKind.TRUST).id
        for chunk in range(0, len(ids), 5000):
            create_transfers(
                session,
                [
                    TransferSpec(f"fund-{i}", trust, i, 10_000_000, "float_issue")
                    for i in ids[chunk : chunk + 5000]
                ],
            )
            session.commit()
        hot = ids[0]
        zipf = Zipf(len(ids), 1.1, rng)

        def pairs(name):
            for _ in range(args.transfers):
                if name == "hot":
                    d = rng.choice(ids[1:])
                    yield d, hot
                elif name == "zipf":
                    d, c = ids[zipf()], ids[zipf()]
                    while c == d:
                        c = ids[zipf()]
                    yield d, c
                else:
                    d, c = rng.sample(ids, 2)
                    yield d, c

        for name in args.scenarios.split(","):
            base = datetime.now(UTC).replace(tzinfo=None)
            rows = []
            for k, (d, c) in enumerate(pairs(name)):
                rid = uuid.uuid4().hex
                rows.append(
                    dict(
                        id=rid,
                        code=transaction_code(rid),
                        kind="send",
                        debit_account_id=d,
                        credit_account_id=c,
                        amount=rng.randint(1, 500) * 100,
                        fee=(700 if name == "fee" else 0),
                        reference=None,
                        status="queued",
                        attempts=0,
                        created_at=base + timedelta(microseconds=k),
                    )
                )
            for chunk in range(0, len(rows), 5000):
                session.execute(insert(TransferRequest), rows[chunk : chunk + 5000])
            session.commit()
            env = dict(os.environ, TUMA_TRANSFER_BATCH_SIZE=str(args.batch))
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "worker", "--no-cron", "--queues", "transfers"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(args.workers)
            ]
            from rq import Worker

            deadline = time.monotonic() + 30
            while len(Worker.all(connection=get_redis())) < args.workers and time.monotonic() < deadline:
                time.sleep(0.05)
            start = time.perf_counter()
            for _ in range(args.transfers // args.batch + args.workers):
                announce(force=True)
            queued = (
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            )
            while session.execute(queued).scalar_one():
                session.rollback()
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            session.rollback()
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=30)
            findings = check(session)
            ok = all(f.ok for f in findings)
            session.rollback()
            posted = session.execute(
                select(func.count())
                .select_from(TransferRequest)
                .where(TransferRequest.status == "posted", TransferRequest.created_at >= base)
            ).scalar_one()
            results[name] = dict(tps=args.transfers / elapsed, posted=posted, ledger_check=ok)
            print(
                f"{name:8s} {args.transfers / elapsed:9.0f} transfers/s  ({posted} posted, ledger check {'passed' if ok else 'FAILED'})",
                flush=True,
            )
        db.engine.dispose()

    results["pgbench_tpcb"] = pgbench_tps(args.workers, args.pgbench_seconds)
    results["rq_noop_jobs"] = noop_jobs_per_second()
    print(f"pgbench TPC-B scale 1, {args.workers} clients: {results['pgbench_tpcb']:.0f} tps")
    print(f"rq no-op job (SimpleWorker): {results['rq_noop_jobs']:.0f} jobs/s")
    print()
    print("| scenario | transfers/s | × pgbench | × no-op job | ledger check |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in args.scenarios.split(","):
        r = results[name]
        print(
            f"| {name} | {r['tps']:.0f} | {r['tps'] / results['pgbench_tpcb']:.2f} | {r['tps'] / results['rq_noop_jobs']:.1f} | {'passed' if r['ledger_check'] else 'FAILED'} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    psql("DROP DATABASE IF EXISTS tuma_bench WITH (FORCE)")
    return 0 if all(results[n]["ledger_check"] for n in args.scenarios.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
