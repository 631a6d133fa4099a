"""Payouts per second through ``POST /api/v1/payouts/batch``, beside the ledger's own uniform
rate measured in the same run, on the same database, with the same workers.

    python bench/api_bench.py [--payouts 10000] [--accounts 20000] [--workers 2] [--runs 3]

Needs PostgreSQL and Redis (BENCH_PG_BASE, default postgresql://postgres@127.0.0.1; BENCH_REDIS,
default redis://127.0.0.1:6379/12). Creates and drops its own database.

- **uniform ledger**: ``--payouts`` send requests between random customers, recorded in bulk
  (as bench/ledger_bench.py does), executed by the workers: transfers/s from the first
  announcement to the last posting.
- **API batch**: the same number of payouts from one merchant to random customers, sent as
  batches of up to 10,000 rows to the real app (its WSGI test client: no HTTP server in the
  way, the whole of the request otherwise), executed by the same workers: payouts/s from the
  first POST to the last posting, so it includes recording them through the API.

``ledger check`` must pass after both, with every request posted.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import STEPS, fresh_database, kill_idle, minutes_line, psql, spawn  # noqa: E402

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
DB_NAME = os.environ.get("BENCH_API_DB", "tuma_api_bench")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payouts", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500, help="requests per worker transaction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    STEPS.now("setup")
    db_url = fresh_database(DB_NAME)
    os.environ.update(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS,
        TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
        TUMA_VELOCITY_MAX_COUNT="0",
        TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
        TUMA_API_RATE_PER_MINUTE="1000000",
        TUMA_API_MAX_BODY_BYTES=str(16 * 1024 * 1024),
    )

    import flask_migrate
    from rq import Worker
    from sqlalchemy import func, insert, select

    from bench.population import customers
    from ussd_app import create_app
    from ussd_app.api.keys import create_key
    from ussd_app.extensions import db
    from ussd_app.ledger import AccountKind, TransferSpec, create_transfers, house_account
    from ussd_app.ledger.check import check
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.payments.submit import announce
    from ussd_app.queues import get_redis
    from ussd_app.users import User, create_user

    def start_workers() -> list:
        """The workers, kept for all the runs (as bench/ledger_bench.py keeps a figure's):
        their start-up is not what a run measures, and starting them for each of the six
        runs cost seconds each time. Started before the population is written, so that their
        imports overlap it; ``wait_for_workers`` waits until they are registered and idle."""
        STEPS.now("start-ups")
        env = dict(os.environ, TUMA_TRANSFER_BATCH_SIZE=str(args.batch))
        procs = [
            spawn(["-m", "worker", "--no-cron", "--queues", "transfers"], ROOT, env)
            for _ in range(args.workers)
        ]
        STEPS.now("setup")
        return procs

    def wait_for_workers() -> None:
        STEPS.now("start-ups")
        deadline = time.monotonic() + 30
        while len(Worker.all(connection=get_redis())) < args.workers and time.monotonic() < deadline:
            time.sleep(0.05)
        STEPS.now("other")

    def stop_workers(procs: list) -> None:
        """Their work done and checked: ended at once (bench/common.py's kill_idle)."""
        STEPS.now("start-ups")
        kill_idle(procs, get_redis())
        STEPS.now("other")

    app = create_app()
    rng = random.Random(17)
    results = {"uniform": [], "api_batch": [], "ledger_check": True}
    with app.app_context():
        get_redis().flushdb()
        flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
        session = db.session
        procs = start_workers()
        try:
            ids = customers(session, args.accounts, balance=10_000_000_000, tier="full")
        except BaseException:
            stop_workers(procs)
            raise
        phones = dict(session.execute(select(User.account_id, User.phone)).all())
        shop = create_user(
            session, phone="+254799000001", name="Bench Shop", role="merchant", pin=None, till="99001"
        )
        trust = house_account(session, AccountKind.TRUST).id
        create_transfers(session, [TransferSpec("fund-shop", trust, shop.account_id, 10**15, "float_issue")])
        _, key = create_key(session, shop, "bench", ["payout", "read"])
        shop_account = shop.account_id
        session.commit()
        client = app.test_client()
        STEPS.now("other")

        def workers_run(record) -> float:
            """Call ``record()`` (which queues the work), ring the running workers, wait until
            nothing is queued; seconds from ``record``'s start to the last posting."""
            STEPS.now("measured")
            start = time.perf_counter()
            record()
            for _ in range(args.workers):  # each full batch queues the next: one chain per worker
                announce(force=True)
            queued = (
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            )
            while session.execute(queued).scalar_one():
                session.rollback()
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            STEPS.now("other")
            session.rollback()
            return elapsed

        def verify(since: datetime, kind: str) -> None:
            STEPS.now("checks")
            ok = all(f.ok for f in check(session))
            posted = session.execute(
                select(func.count())
                .select_from(TransferRequest)
                .where(
                    TransferRequest.created_at >= since,
                    TransferRequest.kind == kind,
                    TransferRequest.status == "accepted",
                )
            ).scalar_one()
            session.rollback()
            complete = posted == args.payouts
            results["ledger_check"] = results["ledger_check"] and ok and complete
            print(f"    ledger check {'passed' if ok else 'FAILED'}, {posted} {kind} posted", flush=True)
            STEPS.now("other")

        def uniform() -> float:
            base = datetime.now(UTC).replace(tzinfo=None)

            def record():
                rows = []
                for k in range(args.payouts):
                    d, c = rng.sample(ids, 2)
                    rid = uuid.uuid4().hex
                    rows.append(
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
                            created_at=base + timedelta(microseconds=k),
                        )
                    )
                for chunk in range(0, len(rows), 5000):
                    session.execute(insert(TransferRequest), rows[chunk : chunk + 5000])
                session.commit()

            elapsed = workers_run(record)
            rate = args.payouts / elapsed
            print(f"  uniform ledger: {rate:8.0f} transfers/s", flush=True)
            verify(base, "send")
            return rate

        def api_batch() -> float:
            base = datetime.now(UTC).replace(tzinfo=None)
            payees = [phones[i] for i in rng.choices(ids, k=args.payouts)]

            def record():
                for start in range(0, args.payouts, 10_000):
                    rows = [
                        {"phone": p, "amount": rng.randint(1, 500) * 100}
                        for p in payees[start : start + 10_000]
                    ]
                    answer = client.post(
                        "/api/v1/payouts/batch",
                        json={"payouts": rows},
                        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
                    )
                    assert answer.status_code == 202 and answer.json["rejected"] == 0, answer.json
                db.session.remove()

            elapsed = workers_run(record)
            rate = args.payouts / elapsed
            print(f"  API batch:      {rate:8.0f} payouts/s", flush=True)
            verify(base, "payout")
            return rate

        try:
            wait_for_workers()
            for _ in range(args.runs):
                results["uniform"].append(uniform())
                results["api_batch"].append(api_batch())
        finally:
            stop_workers(procs)
        assert shop_account
        db.engine.dispose()
    with STEPS("setup"):
        psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    results["minutes_per_step"] = STEPS.minutes()
    print(table(results, args))
    print(f"Minutes per step: {minutes_line(results['minutes_per_step'])}.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0 if results["ledger_check"] else 1


def table(results: dict, args) -> str:
    def fig(runs):
        return f"{statistics.median(runs):.0f} ({min(runs):.0f}–{max(runs):.0f})"

    uniform, api = statistics.median(results["uniform"]), statistics.median(results["api_batch"])
    return "\n".join(
        [
            f"API: {args.payouts:,} payouts per run through POST /api/v1/payouts/batch (batches of up to 10,000 rows, "
            f"recorded by the app, executed by {args.workers} workers, one receipt each) beside {args.payouts:,} "
            f"uniform sends recorded in bulk, same database and workers; median (min–max) of {args.runs} runs.",
            "",
            "| workload | per second | × uniform ledger |",
            "| --- | ---: | ---: |",
            f"| uniform ledger (sends) | {fig(results['uniform'])} | 1.00 |",
            f"| payouts through the batch endpoint | {fig(results['api_batch'])} | {api / uniform:.2f} |",
            "",
            "ledger check after every run, every request posted: "
            + ("passed" if results["ledger_check"] else "FAILED"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
