"""CPU per receipt to one number: the sender at ``--old`` (a git revision, imported beside the
working tree's) against the working tree's, rounds alternating, against one local gateway (a
process of its own, over HTTP). Counts, not just rates, so a busy machine still tells them apart:
CPU seconds of this process (the sender: its job thread and its lanes), of the database's
backends for this database (PostgreSQL, read from /proc) and of the gateway process, per row;
statements per row. The gateway's log is checked after every run (each once, in order).

    .venv/bin/python bench/sms_cpu_ab.py --old main --database-url postgresql://...
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import cpu_seconds as cpu_of  # noqa: E402
from bench.sms_sender_bench import GatewayProcess, old_sender, received_log  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-limit", type=int, default=100)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    args = parser.parse_args(argv)

    import flask_migrate
    from sqlalchemy import delete, event, select, text

    from ussd_app import create_app
    from ussd_app.africas_talking import client_for
    from ussd_app.config import database_url
    from ussd_app.extensions import db
    from ussd_app.sms import sender as new
    from ussd_app.sms.outbox import OutboxMessage, add_sms

    old = old_sender(args.old)
    gateway = GatewayProcess()
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url(args.database_url),
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench",
            "PIN_PEPPER": "bench",
            "AT_API_URL": gateway.url,
            "AT_API_KEY": "bench-key",
            "AT_SENDER_ID": "TUMA",
        }
    )
    figures: dict = {}
    statements = [0]
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            db.session.execute(delete(OutboxMessage))
            db.session.commit()
            event.listen(
                db.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1)
            )
            client = client_for(app.config)
            dbname = db.engine.url.database
            for round_ in range(args.rounds):
                pairs = (("old", old), ("new", new)) if round_ % 2 == 0 else (("new", new), ("old", old))
                for name, module in pairs:
                    for i in range(args.rows):
                        add_sms(db.session, phone="+254711000001", body=f"Receipt {i} {name} {round_}")
                    db.session.commit()
                    written = [
                        (p, b)
                        for p, b in db.session.execute(
                            select(OutboxMessage.phone, OutboxMessage.body).order_by(OutboxMessage.id)
                        )
                    ]
                    backends = [
                        pid
                        for (pid,) in db.session.execute(
                            text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}
                        )
                    ]
                    db.session.commit()
                    seen = len(received_log(gateway))
                    s0, c0, d0, g0 = (
                        statements[0],
                        time.process_time(),
                        cpu_of(backends),
                        cpu_of([gateway.process.pid]),
                    )
                    started = time.perf_counter()
                    sent = 0
                    while sent < args.rows:
                        got = module.send_due(db.session, client, args.job_limit)
                        if not got["sent"]:
                            break
                        sent += got["sent"]
                    elapsed = time.perf_counter() - started
                    row = figures.setdefault(
                        name, {"rate": [], "sender": [], "database": [], "gateway": [], "statements": []}
                    )
                    row["rate"].append(args.rows / elapsed)
                    row["sender"].append((time.process_time() - c0) / args.rows * 1000)
                    row["database"].append((cpu_of(backends) - d0) / args.rows * 1000)
                    row["gateway"].append((cpu_of([gateway.process.pid]) - g0) / args.rows * 1000)
                    row["statements"].append((statements[0] - s0) / args.rows)
                    received = received_log(gateway)[seen:]
                    assert sent == args.rows and received == written, "lost, doubled or out of order"
                    db.session.execute(delete(OutboxMessage))
                    db.session.commit()
                    print(
                        f"round {round_ + 1} {name}: "
                        + ", ".join(f"{k} {v[-1]:.2f}" for k, v in row.items()),
                        flush=True,
                    )
    finally:
        gateway.stop()
    print(
        f"one number, {args.rows} rows, jobs of {args.job_limit}; medians of {args.rounds} (ms CPU per row; rate /s):"
    )
    for key in ("rate", "sender", "database", "gateway", "statements"):
        a, b = statistics.median(figures["old"][key]), statistics.median(figures["new"][key])
        print(f"  {key:10} old {a:8.3f}  new {b:8.3f}  new ÷ old {b / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
