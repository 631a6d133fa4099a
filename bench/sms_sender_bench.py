"""Time handing outbox rows to the local Africa's Talking gateway: the sender as it was at
``--old`` (one row at a time: claim, call, record) against the working tree's (claim batches),
in one run, on the same database, gateway and SDK.

    .venv/bin/python bench/sms_sender_bench.py                      # a fresh SQLite file
    .venv/bin/python bench/sms_sender_bench.py --database-url postgresql+psycopg://...

The database must be one the benchmark may migrate and write outbox rows to (it deletes the
rows it wrote); rounds alternate old and new so neither gets a warmer cache. Prints the median
time per implementation and the ratio, for each ``--latency-ms``: the local gateway answers at
once, so a latency stands in for the network between us and Africa's Talking (the gateway
sleeps that long before answering each call).
"""

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The last commit whose sender went one row at a time.
ONE_AT_A_TIME = "0bb42bf6f976c9915756260c2702a200ec6c2f71"


def old_sender(rev: str):
    """``ussd_app/sms/sender.py`` as it was at ``rev``, imported beside the current one."""
    source = subprocess.run(
        ["git", "show", f"{rev}:ussd_app/sms/sender.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("ussd_app.sms.sender_at_rev")
    module.__package__ = "ussd_app.sms"
    module.__file__ = f"{rev}:ussd_app/sms/sender.py"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102  # our own file, from git
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=ONE_AT_A_TIME, help="git revision of the one-at-a-time sender")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--latency-ms", default="0,50", help="comma-separated, one run each")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    args = parser.parse_args(argv)

    import flask_migrate
    from sqlalchemy import delete

    from devtools.gateway import serve_in_thread
    from ussd_app import create_app
    from ussd_app.africas_talking import client_for
    from ussd_app.config import database_url
    from ussd_app.extensions import db
    from ussd_app.sms import sender as new
    from ussd_app.sms.outbox import OutboxMessage, add_sms

    old = old_sender(args.old)
    url = (
        database_url(args.database_url) or f"sqlite:///{tempfile.mkdtemp(prefix='tuma-sms-bench-')}/b.sqlite3"
    )
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
    answer = gateway.gateway.messaging  # the bound method; the blueprint calls the attribute
    latency = 0.0

    def slow(form, api_key):
        time.sleep(latency)
        return answer(form, api_key)

    gateway.gateway.messaging = slow
    results = []
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            db.session.execute(delete(OutboxMessage))
            db.session.commit()
            client = client_for(app.config)
            dialect = db.engine.dialect.name
            for latency_ms in (float(x) for x in args.latency_ms.split(",")):
                latency = latency_ms / 1000
                timings: dict[str, list[float]] = {"one at a time": [], "claim batches": []}
                for round_ in range(args.rounds):
                    for name, module in (("one at a time", old), ("claim batches", new)):
                        for i in range(args.rows):
                            add_sms(
                                db.session, phone=f"+2547{round_:02d}{i:06d}", body=f"Receipt {i} ({name})"
                            )
                        db.session.commit()
                        seen = gateway.gateway.requests_seen
                        started = time.perf_counter()
                        counts = module.send_due(db.session, client, args.rows)
                        elapsed = time.perf_counter() - started
                        assert counts["sent"] == args.rows, counts
                        assert gateway.gateway.requests_seen - seen == args.rows
                        timings[name].append(elapsed)
                        db.session.execute(delete(OutboxMessage))
                        db.session.commit()
                        print(
                            f"latency {latency_ms:g} ms, round {round_ + 1}, {name:14} {elapsed * 1000:8.1f} ms"
                        )
                old_ms, new_ms = (statistics.median(timings[k]) * 1000 for k in timings)
                results.append(
                    f"{args.rows} rows on {dialect}, gateway latency {latency_ms:g} ms: "
                    f"one at a time {old_ms:.0f} ms ({old_ms / args.rows:.2f} ms/SMS), "
                    f"claim batches of {app.config['SMS_CLAIM_BATCH']} {new_ms:.0f} ms "
                    f"({new_ms / args.rows:.2f} ms/SMS): {old_ms / new_ms:.1f}x (median of {args.rounds})"
                )
    finally:
        gateway.stop()
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
