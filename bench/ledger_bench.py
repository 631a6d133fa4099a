"""Ledger throughput through the real queue and workers, beside pgbench and an rq no-op job.

    python bench/ledger_bench.py [--transfers 12000] [--workers 2] [--accounts 100000]
        [--paired uniform,fee] [--runs 3]

Needs PostgreSQL and Redis (BENCH_PG, default postgresql://postgres@127.0.0.1/<db>; BENCH_REDIS,
default redis://127.0.0.1:6379/11). Creates and drops its own databases (BENCH_DB_PREFIX, default
tuma: tuma_bench and tuma_pgbench; a session benching beside another gives its own). Prints one row per
scenario: transfers/s, and ratios to pgbench TPC-B (scale 1, same client count) and to the rq
no-op job rate measured in the same run. `ledger check` must pass after every scenario.

How the ratio to pgbench is measured. On a shared machine the throughput of both sides drifts
by tens of percent within minutes (pgbench alone read 1,370-2,309 tps across two whole runs), so
a ratio of a ledger median taken in one minute to a pgbench median taken minutes later measures
the drift as much as the ledger. For each workload in ``--paired`` (default: uniform and fee,
the two with a pgbench target), every ledger run i has its own pgbench run right beside it
(pgbench after the ledger run for even i, before it for odd i, so a steady drift does not
favour one side), and the workload's ratio is the **median of its paired ratios**
(ledger run i / pgbench run i), shown with their min-max. The other workloads are divided by
the median of all the pgbench runs of this invocation (marked so in the table). The pgbench
row is the median (min-max) of all its runs; with ``--paired ''`` pgbench runs ``--runs`` times
after the ledger, as before. The rq no-op job runs at the end (it flushes the Redis database the
workers use); its ratio is a median's, and its margin to its target is large.
"""

import argparse
import bisect
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")
# Two sessions benching side by side each give their own prefix, or one drops the other's database.
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "tuma")

from bench.common import (  # noqa: E402,F401  # run_all and others import them from here
    PG_BASE,
    STEPS,
    copy_rows,
    fresh_database,
    kill_idle,
    minutes_line,
    psql,
    spawn,
    stop,
    vacuumed,
)


def pgbench_database() -> None:
    """A fresh database for pgbench, initialised at scale 1."""
    fresh_database(f"{DB_PREFIX}_pgbench")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", "1", f"{DB_PREFIX}_pgbench"],
        check=True,
        capture_output=True,
        env=dict(os.environ, PGHOST="127.0.0.1", PGUSER="postgres"),
    )


def pgbench_tps(clients: int, seconds: int, ready=None) -> float:
    """One pgbench run on a fresh database; ``ready``: a future of ``pgbench_database`` already
    under way (made while a ledger run was checked)."""
    env = dict(os.environ, PGHOST="127.0.0.1", PGUSER="postgres")
    with STEPS("setup", "pgbench's database"):
        if ready is None:
            pgbench_database()
        else:
            ready.result()
    with STEPS("measured", "pgbench"):
        out = subprocess.run(
            ["pgbench", "-c", str(clients), "-j", str(clients), "-T", str(seconds), f"{DB_PREFIX}_pgbench"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    with STEPS("setup", "pgbench's database"):
        psql(f"DROP DATABASE IF EXISTS {DB_PREFIX}_pgbench WITH (FORCE)")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def noop_jobs_per_second(n: int = 2000) -> float:
    from redis import Redis
    from rq import Queue

    with STEPS("setup", "no-op jobs queued"):
        redis = Redis.from_url(REDIS)
        redis.flushdb()
        queue = Queue("bench-noop", connection=redis)
        # In one pipeline (one at a time took seconds): the same jobs, queued the same.
        queue.enqueue_many([Queue.prepare_data("bench.noop.noop", result_ttl=0) for _ in range(n)])
    with STEPS("measured", "rq no-op"):
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
    parser.add_argument("--transfers", type=int, default=12_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    parser.add_argument("--scenarios", default="uniform,zipf,hot,fee")
    parser.add_argument("--scaling", default="1,2,4", help="worker counts for the scaling runs (uniform)")
    parser.add_argument("--pgbench-seconds", type=int, default=6)
    parser.add_argument(
        "--paired",
        default="uniform,fee",
        help="workloads whose every run has a pgbench run beside it (ratio: median of the pairs)",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    with STEPS("setup"):
        db_url = fresh_database(f"{DB_PREFIX}_bench")
    # Every account is a full-tier customer's wallet, so each transfer pays for what a real one
    # does: the limit checks run and two receipts are written. The limits are set above what
    # the skewed workloads reach in a day and the velocity rules are off, so every transfer
    # posts (a refusal or a hold would measure something else).
    os.environ.update(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS,
        TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
        TUMA_VELOCITY_MAX_COUNT="0",
        TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
    )

    import flask_migrate
    from rq import Queue, Worker
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from bench.population import customers
    from ussd_app import create_app
    from ussd_app.extensions import db
    from ussd_app.ledger.check import check
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.payments.submit import announce
    from ussd_app.queues import TRANSFERS_QUEUE, get_redis
    from ussd_app.sms.outbox import OutboxMessage

    app = create_app()
    rng = random.Random(42)
    results: dict = {"scenarios": {}, "scaling": {}}
    pgbench_runs: list[float] = []  # every pgbench run of this invocation, paired or not
    ledger_ok = True
    background = ThreadPoolExecutor(max_workers=2)
    with app.app_context():
        with STEPS("setup", "migrations"):
            get_redis().flushdb()
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            session = db.session
        running: list = []  # the worker processes, kept from one figure to the next

        def start_workers(n: int) -> None:
            env = dict(os.environ, TUMA_TRANSFER_BATCH_SIZE=str(args.batch))
            running.extend(
                spawn(["-m", "worker", "--no-cron", "--queues", "transfers"], ROOT, env) for _ in range(n)
            )

        # The first figure's workers start now and import while the population is written
        # (workers_at waits for them): their start-up, seconds of CPU each, overlaps the setup.
        with STEPS("start-ups", "workers started"):
            start_workers(args.workers if args.scenarios else 0)
        with STEPS("setup", "population"):
            try:
                ids = customers(
                    session, args.accounts, balance=10_000_000_000, tier="full", kiswahili_every=3
                )
                vacuumed(db.engine)
            except BaseException:
                kill_idle(running, get_redis())
                raise
        hot = ids[0]
        zipf = Zipf(len(ids), 1.1, rng)

        def pairs(name):
            for _ in range(args.transfers):
                if name == "hot":
                    yield rng.choice(ids[1:]), hot
                elif name == "zipf":
                    d, c = ids[zipf()], ids[zipf()]
                    while c == d:
                        c = ids[zipf()]
                    yield d, c
                else:
                    d, c = rng.sample(ids, 2)
                    yield d, c

        def workers_at(workers: int) -> None:
            """``workers`` worker processes, registered and idle: the ones running are kept (for
            a figure's runs, and from one figure to the next), the extra ones ended (their work
            done and checked), missing ones started. Their start-up is not what a run measures,
            and starting them again for every run (then for every figure) cost seconds each time."""
            if len(running) > workers:
                with STEPS("start-ups", "workers stopped"):
                    kill_idle(running[workers:], get_redis())
                    del running[workers:]
            if len(running) < workers:
                with STEPS("start-ups", "workers started"):
                    start_workers(workers - len(running))
            with STEPS("start-ups", "workers started"):
                deadline = time.monotonic() + 30
                while len(Worker.all(connection=get_redis())) < workers and time.monotonic() < deadline:
                    time.sleep(0.05)
                registered = len(Worker.all(connection=get_redis()))
                if registered < workers:  # the runs go on, but say so: they had fewer workers
                    alive = sum(p.poll() is None for p in running)
                    print(
                        f"  only {registered} of {workers} workers registered after 30 s ({alive} alive)",
                        flush=True,
                    )

        def queue_requests(name: str, into, commit: bool = True) -> datetime:
            """``args.transfers`` requests of workload ``name`` recorded queued in session
            ``into`` and committed (``commit``; else the caller commits); when the first was
            made."""
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
            copy_rows(into, TransferRequest, rows)
            if commit:
                into.commit()
            return base

        def workers_idle() -> None:
            """Until no job is queued or started (seen twice, 50 ms apart): nothing of the run
            just measured can take requests queued from now on."""
            queue = Queue(TRANSFERS_QUEUE, connection=get_redis())
            quiet = 0
            while quiet < 2:
                idle = not queue.count and all(w.state == "idle" for w in Worker.all(connection=get_redis()))
                quiet = quiet + 1 if idle else 0
                time.sleep(0.05)

        ahead: dict[str, Future] = {}  # the next run's requests, queued while a run is checked

        def one_run(
            name: str,
            workers: int,
            then: str | None = None,
            extra_workers: int = 0,
            pgbench_next: bool = False,
        ) -> float:
            """Queue ``args.transfers`` requests, let the ``workers`` running processes execute
            them; transfers/s. The ledger is checked after every run. ``then``: the workload of
            the run that follows right after this one (no pgbench run between), whose requests
            are written in another session while this run is checked and committed when the
            next run begins (the check reads none of them: they are queued, made after this
            run's, have no receipts, and are not committed yet);
            ``extra_workers`` more workers are started meanwhile, for the next figure, or the
            database of the pgbench run that comes next is made (``pgbench_next``)."""
            nonlocal ledger_ok
            STEPS.now("setup", "requests queued")
            if name in ahead:  # queued during the last run's check, committed now
                base, other = ahead.pop(name).result()
                other.commit()
                other.close()
            else:
                base = queue_requests(name, session)
            STEPS.now("measured", "ledger")
            start = time.perf_counter()
            for _ in range(workers):  # each full batch queues the next, so one chain per worker
                announce(force=True)
            queued = (
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            )
            while session.execute(queued).scalar_one():
                session.rollback()
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            STEPS.now("checks", "ledger check")
            session.rollback()
            if then is not None or extra_workers:
                workers_idle()
                start_workers(extra_workers)
            if then is not None:

                def queue_next(name: str = then, engine=db.engine) -> tuple:
                    # Not committed until the next run begins: a job of this run still on its
                    # way (rq's worker between taking it and showing busy) finds none of them.
                    other = Session(engine)
                    return queue_requests(name, other, commit=False), other

                ahead[then] = background.submit(queue_next)
            if pgbench_next:
                ahead["pgbench"] = background.submit(pgbench_database)
            with STEPS("checks", "vacuum"):  # as pgbench before each of its runs
                vacuumed(db.engine)
            ok = all(f.ok for f in check(session))
            # Every transfer posted, with its two receipts: refusals or holds would be a
            # different (cheaper) workload, not this one.
            STEPS.now("checks", "counts")
            posted = session.execute(
                select(func.count())
                .select_from(TransferRequest)
                .where(TransferRequest.created_at >= base, TransferRequest.status == "accepted")
            ).scalar_one()
            receipts = session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .join(TransferRequest, OutboxMessage.transfer_request_id == TransferRequest.id)
                .where(TransferRequest.created_at >= base)
            ).scalar_one()
            session.rollback()
            if then is not None:
                STEPS.now("setup", "requests queued")
                ahead[then].exception()  # written before this step ends (raised by the next run if it failed)
            STEPS.now("other")
            complete = posted == args.transfers and receipts == 2 * args.transfers
            ledger_ok = ledger_ok and ok and complete
            tps = args.transfers / elapsed
            print(
                f"  {name:8s} {workers} workers: {tps:8.0f} transfers/s, ledger check {'passed' if ok else 'FAILED'}, "
                f"{posted} posted, {receipts} receipts{'' if complete else ' (INCOMPLETE)'}",
                flush=True,
            )
            return tps

        def figure(runs: list[float]) -> dict:
            return dict(median=statistics.median(runs), min=min(runs), max=max(runs))

        def pgbench_run() -> float:
            tps = pgbench_tps(args.workers, args.pgbench_seconds, ahead.pop("pgbench", None))
            pgbench_runs.append(tps)
            print(f"  pgbench  {args.workers} clients: {tps:8.0f} tps", flush=True)
            return tps

        def runs(name: str, workers: int, paired: bool = False, after: tuple | None = None) -> dict:
            """``args.runs`` runs of ``name``; ``paired``: each beside a pgbench run (even
            runs before their pgbench run, odd ones after it), the ratio being the median of
            the pairs' ratios (the module's docstring says why). ``after``: the workload and
            worker count of the figure that follows."""
            workers_at(workers)
            tps, pg = [], []
            for i in range(args.runs):
                if paired and i % 2:
                    pg.append(pgbench_run())
                # The next run's requests queued during this one's check, unless a pgbench run
                # comes between (this run's pgbench, for an even run of a paired workload); the
                # next figure's extra workers started during the last run's check.
                last = i + 1 == args.runs
                follows = not (paired and i % 2 == 0) and (not last or after is not None)
                then = (after[0] if last else name) if follows else None
                extra = max(0, after[1] - workers) if last and after is not None else 0
                tps.append(
                    one_run(name, workers, then=then, extra_workers=extra, pgbench_next=paired and not i % 2)
                )
                if paired and not i % 2:
                    pg.append(pgbench_run())
            result = figure(tps)
            if paired:
                ratios = [t / p for t, p in zip(tps, pg, strict=True)]
                result["vs_pgbench"] = {**figure(ratios), "runs": ratios}
                print(
                    f"  {name}: × pgbench, median of the pairs {result['vs_pgbench']['median']:.2f}",
                    flush=True,
                )
            return {**result, "runs": tps}

        paired = {name for name in args.paired.split(",") if name}
        scenarios = [name for name in args.scenarios.split(",") if name]
        # The figures in order: (where, key, workload, workers, paired).
        schedule = [("scenarios", name, name, args.workers, name in paired) for name in scenarios]
        scaling = [int(w) for w in args.scaling.split(",") if w]
        schedule += [
            ("scaling", w, "uniform", w, False)
            for w in scaling
            if not (w == args.workers and "uniform" in scenarios)
        ]
        try:
            for k, (where, key, name, workers, pair) in enumerate(schedule):
                after = schedule[k + 1][2:4] if k + 1 < len(schedule) else None
                results[where][key] = runs(name, workers, paired=pair, after=after)
            if args.workers in scaling and "uniform" in scenarios:
                results["scaling"][args.workers] = results["scenarios"]["uniform"]  # the same runs
            results["scaling"] = {w: results["scaling"][w] for w in scaling}  # in --scaling's order
        finally:
            for waiting in ahead.values():  # none left unless a run failed
                if waiting.exception() is None and isinstance(waiting.result(), tuple):
                    waiting.result()[1].close()
            workers_at(0)
        db.engine.dispose()

    if not pgbench_runs:  # nothing paired: pgbench after the ledger, as the bench did before
        for _ in range(args.runs):
            pgbench_runs.append(pgbench_tps(args.workers, args.pgbench_seconds))
    results["pgbench_tpcb"] = {**figure(pgbench_runs), "runs": pgbench_runs}
    results["rq_noop_jobs"] = figure([noop_jobs_per_second() for _ in range(args.runs)])
    results["ledger_check"] = ledger_ok
    with STEPS("setup"):
        psql(f"DROP DATABASE IF EXISTS {DB_PREFIX}_bench WITH (FORCE)")
    results["minutes_per_step"] = STEPS.minutes()
    print(table(results, args))
    print(f"Minutes per step: {minutes_line(results['minutes_per_step'])}; {STEPS.detail_line()}.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0 if ledger_ok else 1


def vs_pgbench(results: dict, name: str) -> float:
    """Workload ``name``'s ratio to pgbench: the median of its paired ratios when its runs were
    paired with pgbench runs, else its median over the median of all pgbench runs."""
    scenario = results["scenarios"][name]
    if "vs_pgbench" in scenario:
        return scenario["vs_pgbench"]["median"]
    return scenario["median"] / results["pgbench_tpcb"]["median"]


def table(results: dict, args) -> str:
    noop = results["rq_noop_jobs"]["median"]
    fmt = lambda f: f"{f['median']:.0f} ({f['min']:.0f}–{f['max']:.0f})"  # noqa: E731
    paired = [name for name, f in results["scenarios"].items() if "vs_pgbench" in f]
    lines = [
        f"Ledger: {args.transfers:,} transfers per run through the queue into PostgreSQL, {args.accounts:,} accounts "
        "(each a full-tier customer's wallet: limits checked, two SMS receipts written per transfer), "
        f"batches of {args.batch}, {args.workers} workers; median (min–max) of {args.runs} runs.",
    ]
    if paired:
        lines.append(
            f"× pgbench for {', '.join(paired)}: each ledger run beside its own pgbench run (alternately "
            "before and after it), the median (min–max) of the {} paired ratios; for the others (*), "
            "their median over the median of all pgbench runs.".format(args.runs)
        )
    lines += [
        "",
        "| workload | transfers/s | × pgbench TPC-B | × rq no-op job |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, f in results["scenarios"].items():
        if "vs_pgbench" in f:
            v = f["vs_pgbench"]
            ratio = f"{v['median']:.2f} ({v['min']:.2f}–{v['max']:.2f})"
        else:
            ratio = f"{vs_pgbench(results, name):.2f}{'*' if paired else ''}"
        lines.append(f"| {name} | {fmt(f)} | {ratio} | {f['median'] / noop:.1f} |")
    hot, uniform = results["scenarios"].get("hot"), results["scenarios"].get("uniform")
    if hot and uniform:
        lines.append(f"| hot ÷ uniform | {hot['median'] / uniform['median']:.2f} | | |")
    lines.append(
        f"| pgbench TPC-B scale 1, {args.workers} clients | {fmt(results['pgbench_tpcb'])} tps | 1.00 | |"
    )
    lines.append(f"| rq no-op job, SimpleWorker | {fmt(results['rq_noop_jobs'])} jobs/s | | 1.0 |")
    if results["scaling"]:
        lines += ["", "| workers (uniform) | transfers/s |", "| ---: | ---: |"]
        lines += [f"| {w} | {fmt(f)} |" for w, f in results["scaling"].items()]
    lines += [
        "",
        "ledger check after every run, every transfer posted with its two receipts: "
        + ("passed" if results["ledger_check"] else "FAILED"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
