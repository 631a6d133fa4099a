"""In-process A/B of a transfer batch's cost: two source trees, rounds alternating.

    python bench/ledger_writes_ab.py --trees /work/main,. [--rounds 3] [--transfers 5500]
        [--accounts 20000] [--scenario uniform|fee] [--profile out.prof]

Each round runs, for each tree in turn, a child process with that tree's code and migrations on
a fresh PostgreSQL database (BENCH_PG_BASE, default postgresql://postgres@127.0.0.1; database
``tuma_ab_<pid>``, dropped after): customers as the ledger bench makes them, ``--transfers``
queued sends between random pairs (the same seed for every tree), then ``execute_batch`` in a
loop in this one process, one worker, batches of 500. Per run: wall seconds, the worker's CPU
seconds (its own clock), the PostgreSQL backend's CPU seconds (its /proc/<pid>/stat, so the
database must run on this machine) and the statements sent. Needs Redis (BENCH_REDIS).

With ``--callgrind``, each child runs under valgrind's callgrind, instrumented only while its
batches run (``--instr-atstart=no``, switched on and off with ``callgrind_control``): the
worker's instructions for the batches, a count the machine's load does not change (its CPU
seconds do: on this shared 2-core machine, by 30% between rounds). Slow: keep
``--transfers`` and ``--accounts`` small (e.g. 2000 and 5000).

The migrations' logging setup (alembic's ``fileConfig``: the root logger at WARN) leaves the
child without the INFO lines a worker writes. With ``--logs`` the child logs as ``python -m
worker`` does (the app's JSON lines at INFO, written to /dev/null as the ledger bench's
workers' are), so the batches' cost includes their log lines (the trace lines of
``ops/tracing.py`` among them).
"""

import argparse
import glob
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql://postgres@127.0.0.1")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/11")
# callgrind's dumps go to a directory of this run's (removed at the end), not into the tree measured.
CALLGRIND_OUT = os.path.join(
    os.environ.get("LEDGER_AB_CALLGRIND_DIR", tempfile.gettempdir()), "callgrind.out"
)


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qtAc", sql], check=True, capture_output=True
    )


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(args) -> None:
    name = f"tuma_ab_{os.getpid()}"
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    os.environ.update(
        DATABASE_URL=f"{PG_BASE}/{name}",
        REDIS_URL=REDIS,
        TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
        TUMA_VELOCITY_MAX_COUNT="0",
        TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
    )
    sys.path.insert(0, os.getcwd())
    from datetime import UTC, datetime, timedelta

    import flask_migrate
    from sqlalchemy import event, func, insert, select, text

    from bench.population import customers
    from ussd_app import create_app
    from ussd_app.extensions import db
    from ussd_app.ledger.check import check
    from ussd_app.payments.execute import execute_batch
    from ussd_app.payments.models import TransferRequest, transaction_code

    app = create_app()
    rng = random.Random(7)
    out = {}
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=os.path.join(os.getcwd(), "migrations"))
            if args.logs:
                from ussd_app import logging_setup

                root = logging.getLogger()
                for handler in list(root.handlers):  # alembic's console handler
                    root.removeHandler(handler)
                root.addHandler(logging.StreamHandler(open(os.devnull, "w")))
                logging_setup.configure()  # JSON, the root at INFO
            session = db.session
            ids = customers(session, args.accounts, balance=10_000_000_000, tier="full", kiswahili_every=3)
            base = datetime.now(UTC).replace(tzinfo=None)
            rows = []
            for k in range(args.transfers):
                d, c = rng.sample(ids, 2)
                rid = uuid.UUID(int=rng.getrandbits(128)).hex
                rows.append(
                    dict(
                        id=rid,
                        code=transaction_code(rid),
                        kind="send",
                        debit_account_id=d,
                        credit_account_id=c,
                        amount=rng.randint(1, 500) * 100,
                        fee=(700 if args.scenario == "fee" else 0),
                        reference=None,
                        status="queued",
                        attempts=0,
                        created_at=base + timedelta(microseconds=k),
                    )
                )
            session.execute(insert(TransferRequest), rows)
            session.commit()
            with db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text("ANALYZE"))
            statements = [0]

            @event.listens_for(db.engine, "before_cursor_execute")
            def count(*_):
                statements[0] += 1

            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            session.commit()
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
            b0, c0, w0 = backend_cpu(pid), time.process_time(), time.perf_counter()
            me = str(os.getpid())
            if args.callgrind:
                subprocess.run(["callgrind_control", "-i", "on", me], check=True, capture_output=True)
            if profiler:
                profiler.enable()
            done = 0
            while True:
                n = execute_batch(session, 500)
                done += n
                if n == 0:
                    break
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            wall, cpu, pg = time.perf_counter() - w0, time.process_time() - c0, backend_cpu(pid) - b0
            instructions = None
            if args.callgrind:
                subprocess.run(["callgrind_control", "-d", "batches", me], check=True, capture_output=True)
                subprocess.run(["callgrind_control", "-i", "off", me], check=True, capture_output=True)
                dump = max(glob.glob(f"{CALLGRIND_OUT}.{me}.*"), key=os.path.getmtime)
                with open(dump) as fh:
                    instructions = next(
                        int(line.split()[1]) for line in fh if line.startswith(("totals:", "summary:"))
                    )
                for leftover in glob.glob(f"{CALLGRIND_OUT}.{me}*"):
                    os.remove(leftover)
            posted = session.execute(
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "accepted")
            ).scalar_one()
            ok = all(f.ok for f in check(session))
            session.rollback()
            out = dict(
                done=done,
                posted=posted,
                check=ok,
                wall=wall,
                cpu=cpu,
                pg=pg,
                statements=statements[0],
                tps=done / wall,
                instructions=instructions,
            )
            db.session.remove()
            db.engine.dispose()
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print("RESULT " + json.dumps(out), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", default="/work/main,.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transfers", type=int, default=5500)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--scenario", default="uniform")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--callgrind", action="store_true", help="count the batches' instructions")
    parser.add_argument("--logs", action="store_true", help="log as a worker does (JSON at INFO)")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    trees = [os.path.abspath(t) for t in args.trees.split(",")]
    if args.callgrind:
        os.environ["LEDGER_AB_CALLGRIND_DIR"] = tempfile.mkdtemp(prefix="ledger-ab-callgrind-")
    results = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else reversed(trees):
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                f"--transfers={args.transfers}",
                f"--accounts={args.accounts}",
                f"--scenario={args.scenario}",
            ]
            if args.logs:
                cmd.append("--logs")
            if args.profile:
                cmd.append(f"--profile={args.profile}.{os.path.basename(tree)}.{r}")
            if args.callgrind:
                cmd = [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={os.path.join(os.environ['LEDGER_AB_CALLGRIND_DIR'], 'callgrind.out')}.%p",
                    *cmd,
                    "--callgrind",
                ]
            proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:])
                return 1
            res = json.loads(line[7:])
            results[tree].append(res)
            print(
                f"round {r} {tree}: {res['tps']:.0f} transfers/s, worker CPU {res['cpu']:.2f} s, "
                f"PostgreSQL CPU {res['pg']:.2f} s, wall {res['wall']:.2f} s, {res['statements']} statements, "
                f"posted {res['posted']}, check {'passed' if res['check'] else 'FAILED'}"
                + (
                    f", {res['instructions'] / res['done']:,.0f} instructions a transfer"
                    if res["instructions"]
                    else ""
                ),
                flush=True,
            )
    if args.callgrind:
        shutil.rmtree(os.environ["LEDGER_AB_CALLGRIND_DIR"], ignore_errors=True)
    print()
    for tree, runs in results.items():
        med = {k: statistics.median(x[k] for x in runs) for k in ("tps", "cpu", "pg", "wall", "statements")}
        print(
            f"{tree}: median {med['tps']:.0f} transfers/s, worker CPU {med['cpu']:.2f} s, "
            f"PostgreSQL CPU {med['pg']:.2f} s, {med['statements']:.0f} statements"
            + (
                f", {statistics.median(x['instructions'] / x['done'] for x in runs):,.0f} instructions a transfer"
                if args.callgrind
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
