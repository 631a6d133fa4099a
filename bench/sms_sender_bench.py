"""Receipts handed to the local Africa's Talking gateway per second: the sender as it was at
``--old`` (claim batches of one row per number) against the working tree's (lanes), in one run,
on the same database, gateway (over real HTTP) and SDK.

    .venv/bin/python bench/sms_sender_bench.py                      # a fresh SQLite file
    .venv/bin/python bench/sms_sender_bench.py --database-url postgresql+psycopg://...

Two workloads: a merchant paid ``--rows`` times in a burst (every receipt to one number), and
the same number of receipts to as many numbers. The database must be one the benchmark may
migrate and write outbox rows to (it deletes the rows it wrote); rounds alternate old and new
so neither gets a warmer cache. The old sender hands one row of a number over per claim batch,
so it gets ``--old-rows`` of the one-number burst (a rate does not need all 5,000 at 60/s).
After each run the gateway's received log is read: every row reached it exactly once, and each
number's messages in the order they were written; a run that breaks that has no result.
Prints receipts/s handed over, the median (min-max) of ``--rounds``, for each implementation,
workload and ``--latency-ms`` (the gateway sleeps that long before answering each call: the
network between us and Africa's Talking), and a bare loop of SDK calls to the same gateway,
one after another (the most one number's lane can do, since each waits for the one before).
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import STEPS, minutes_line  # noqa: E402

# The last commit whose sender claimed batches of one row per number (before lanes).
ONE_PER_NUMBER = "35479b125ca3d3d268acde84534f3d477fcd6b99"


def old_sender(rev: str):
    """``ussd_app/sms/sender.py`` as it was at ``rev`` (one module then; a package since), imported
    beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{rev}:ussd_app/sms/sender.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("ussd_app.sms.sender_at_rev")
    module.__package__ = "ussd_app.sms"
    module.__file__ = f"{rev}:ussd_app/sms/sender.py"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102  # our own file, from git
    return module


class GatewayProcess:
    """``python -m devtools.gateway`` in a process of its own, on a free port."""

    def __init__(self):
        import socket

        import requests

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.gateway", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/messages", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def received_log(gateway) -> list[tuple[str, str]]:
    """What the gateway received, in the order it accepted them: (number, text)."""
    if isinstance(gateway, GatewayProcess):
        import requests

        return [
            (m["to"], m["message"])
            for m in requests.get(f"{gateway.url}/messages", timeout=30).json()["messages"]
        ]
    return [(m.to, m.message) for m in gateway.gateway.inbox()]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=None, help="git revision of the one-per-number sender")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument(
        "--old-rows", type=int, default=300, help="of the one-number burst, for the old sender"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--latency-ms", default="0", help="comma-separated, one run each (thread gateway)")
    parser.add_argument(
        "--gateway",
        choices=("process", "thread"),
        default="process",
        help="the local gateway in a process of its own (as Africa's Talking is), or in a thread of this one",
    )
    parser.add_argument(
        "--job-limit",
        type=int,
        default=None,
        help="rows per send_due call, as SMS_BATCH_SIZE is per job (default: all in one call)",
    )
    parser.add_argument(
        "--workloads", default="one number,many numbers", help="comma-separated: one number, many numbers"
    )
    parser.add_argument("--json", default=None, help="also write the figures (the last latency's) here")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    args = parser.parse_args(argv)

    import flask_migrate
    from sqlalchemy import delete, select

    from devtools.gateway import serve_in_thread
    from ussd_app import create_app
    from ussd_app.africas_talking import client_for
    from ussd_app.config import database_url
    from ussd_app.extensions import db
    from ussd_app.sms import sender as new
    from ussd_app.sms.outbox import OutboxMessage, add_sms, batched

    old_rev = args.old or ONE_PER_NUMBER
    old = old_sender(old_rev)
    url = (
        database_url(args.database_url) or f"sqlite:///{tempfile.mkdtemp(prefix='tuma-sms-bench-')}/b.sqlite3"
    )
    if args.gateway == "process":
        if args.latency_ms != "0":
            parser.error("--latency-ms needs --gateway thread")
        with STEPS("start-ups"):
            gateway = GatewayProcess()
    else:
        gateway = serve_in_thread()
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench",
            "PIN_PEPPER": "bench",
            "AT_API_URL": gateway.url,
            "AT_API_KEY": "bench-key",
            "AT_SENDER_ID": "TUMA",
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    latency = 0.0
    if args.gateway == "thread":
        answer = gateway.gateway.messaging  # the bound method; the blueprint calls the attribute

        def slow(form, api_key):
            time.sleep(latency)
            return answer(form, api_key)

        gateway.gateway.messaging = slow
    implementations = (("one per number per claim", old), ("lanes", new))
    results = []
    try:
        with app.app_context():
            STEPS.now("setup")
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            db.session.execute(delete(OutboxMessage))
            db.session.commit()
            client = client_for(app.config)
            dialect = db.engine.dialect.name
            for latency_ms in (float(x) for x in args.latency_ms.split(",")):
                latency = latency_ms / 1000
                rates: dict[tuple[str, str], list[float]] = defaultdict(list)
                for round_ in range(args.rounds):
                    for workload in args.workloads.split(","):
                        for name, module in implementations:
                            STEPS.now("setup")
                            rows = args.rows
                            if workload == "one number" and module is old:
                                rows = min(rows, args.old_rows)
                            # The rows in one statement, as a transfer batch writes its receipts
                            # (outbox.batched: the same rows in the same order; 5,000 added one
                            # by one took ~1.8 s a round).
                            with batched(db.session):
                                for i in range(rows):
                                    phone = (
                                        "+254711000001"
                                        if workload == "one number"
                                        else f"+2547{round_:02d}{i:06d}"
                                    )
                                    add_sms(
                                        db.session, phone=phone, body=f"Receipt {i} ({name}, round {round_})"
                                    )
                            db.session.commit()
                            written = [
                                (phone, body)
                                for phone, body in db.session.execute(
                                    select(OutboxMessage.phone, OutboxMessage.body).order_by(OutboxMessage.id)
                                )
                            ]
                            seen = len(received_log(gateway))
                            STEPS.now("measured")
                            started = time.perf_counter()
                            counts = {"sent": 0}
                            while counts["sent"] < rows:
                                got = module.send_due(db.session, client, args.job_limit or rows)
                                if not got["sent"]:
                                    break
                                counts["sent"] += got["sent"]
                            elapsed = time.perf_counter() - started
                            STEPS.now("checks")
                            # The received log: each row once, each number's in the order written.
                            received = received_log(gateway)[seen:]
                            assert counts["sent"] == rows, counts
                            assert sorted(received) == sorted(written), "a receipt lost or sent twice"
                            by_number: dict[str, list[str]] = defaultdict(list)
                            for phone, body in received:
                                by_number[phone].append(body)
                            for phone, bodies in by_number.items():
                                assert bodies == [b for p, b in written if p == phone], (
                                    f"{phone}: out of order"
                                )
                            rates[(workload, name)].append(rows / elapsed)
                            STEPS.now("setup")
                            db.session.execute(delete(OutboxMessage))
                            db.session.commit()
                            print(
                                f"latency {latency_ms:g} ms, round {round_ + 1}, {workload:12}, {name:24} "
                                f"{rows} in {elapsed * 1000:8.1f} ms: {rows / elapsed:7.0f}/s",
                                flush=True,
                            )
                    # The ceiling of one number's lane: SDK calls one after another.
                    STEPS.now("measured")
                    started = time.perf_counter()
                    calls = min(args.rows, 500)
                    with client.kept_alive():
                        for i in range(calls):
                            client.send("+254711000002", f"bare {i}")
                    rates[("one number", "bare SDK calls in turn")].append(
                        calls / (time.perf_counter() - started)
                    )
                    STEPS.now("other")
                results.append(
                    f"{dialect}, gateway in a {args.gateway}, latency {latency_ms:g} ms, {args.rows} receipts "
                    f"(SMS_CLAIM_BATCH {app.config['SMS_CLAIM_BATCH']}, SMS_LANE_DEPTH "
                    f"{app.config['SMS_LANE_DEPTH']}), receipts/s handed over, median (min–max) of "
                    f"{args.rounds}, order per number checked in the gateway's log:"
                )
                for (workload, name), values in rates.items():
                    results.append(f"  {workload:12}  {name:26} {spread(values):>24}")
                for workload in args.workloads.split(","):
                    before = statistics.median(rates[(workload, implementations[0][0])])
                    after = statistics.median(rates[(workload, implementations[1][0])])
                    results.append(f"  {workload:12}  lanes ÷ one per number: {after / before:.1f}x")
    finally:
        with STEPS("start-ups"):
            gateway.stop()
    print("\n".join(results))
    print(f"Minutes per step: {minutes_line(STEPS.minutes())}.")
    if args.json:
        figures = {
            f"{workload} / {name}": dict(median=statistics.median(v), min=min(v), max=max(v))
            for (workload, name), v in rates.items()
        }
        with open(args.json, "w") as fh:
            json.dump(
                dict(
                    dialect=dialect,
                    rows=args.rows,
                    old_rows=args.old_rows,
                    rounds=args.rounds,
                    job_limit=args.job_limit,
                    lane_depth=app.config["SMS_LANE_DEPTH"],
                    claim_batch=app.config["SMS_CLAIM_BATCH"],
                    figures=figures,
                    minutes_per_step=STEPS.minutes(),
                ),
                fh,
                indent=2,
            )
    return 0


def table(results: dict) -> str:
    """The ``make bench`` row: one merchant paid ``rows`` times, receipts/s handed over."""
    fig = results["figures"]
    fmt = lambda f: f"{f['median']:,.0f} ({f['min']:,.0f}–{f['max']:,.0f})"  # noqa: E731
    lanes, old = fig["one number / lanes"], fig["one number / one per number per claim"]
    bare = fig.get("one number / bare SDK calls in turn")
    lines = [
        f"Receipts to one number (a merchant paid {results['rows']:,} times in a burst) handed to the local "
        f"gateway (a process of its own, over HTTP) by the sender's code in jobs of {results['job_limit'] or results['rows']} "
        f"rows (SMS_BATCH_SIZE), {results['dialect']}; median (min–max) of {results['rounds']} runs, each number's "
        "order checked in the gateway's log after every run.",
        "",
        "| sender | receipts/s handed over | ratio |",
        "| --- | ---: | ---: |",
        f"| one merchant paid {results['rows']:,} times: lanes (SMS_LANE_DEPTH {results['lane_depth']}, "
        f"{results['claim_batch']} side by side) | {fmt(lanes)} | "
        f"{lanes['median'] / old['median']:.1f}× |",
        f"| one row per number per claim (the sender before lanes; {results['old_rows']} receipts) | {fmt(old)} | 1.0× |",
    ]
    if bare:
        lines.append(
            f"| bare SDK calls one after another, one connection (a lane's ceiling) | {fmt(bare)} | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
