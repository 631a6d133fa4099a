"""Webhook deliveries per second: events POSTed, signed, to the local receiver
(``devtools.receiver``) by the delivery job's own code (claim batch, side-by-side POSTs, record),
on one database, in one process.

    .venv/bin/python bench/webhooks_bench.py                      # a fresh SQLite file
    .venv/bin/python bench/webhooks_bench.py --database-url postgresql+psycopg://... --events 2000

The database must be one the benchmark may migrate and write to (use a scratch database). The
receiver answers at once; ``--latency-ms`` makes it wait that long per call, standing in for the
network to a merchant's server.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import STEPS, minutes_line  # noqa: E402


def run(args) -> dict:
    import flask_migrate
    from sqlalchemy import delete, func, select

    from devtools.receiver import Receiver, serve_in_thread
    from ussd_app import create_app
    from ussd_app.config import database_url
    from ussd_app.events import delivery, emit
    from ussd_app.events.endpoints import configure
    from ussd_app.events.models import Delivery, DeliveryStatus, Event
    from ussd_app.extensions import db
    from ussd_app.users import create_user, find_by_phone

    url = (
        database_url(args.database_url)
        or f"sqlite:///{tempfile.mkdtemp(prefix='tuma-hooks-bench-')}/b.sqlite3"
    )
    STEPS.now("start-ups")
    receiver = Receiver()
    running = serve_in_thread(receiver)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench",
            "PIN_PEPPER": "bench",
            "EVENT_CLAIM_BATCH": args.batch,
        }
    )
    rates = []
    STEPS.now("setup")
    with app.app_context():
        flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
        merchant = find_by_phone(db.session, "+254700009999") or create_user(
            db.session, phone="+254700009999", name="Bench Shop", role="merchant", pin="2468", till="990099"
        )
        configured = configure(db.session, merchant.account_id, url=f"{running.url}/hooks/bench")
        db.session.commit()
        receiver.secret = configured.secret
        if args.latency_ms:
            receiver.delay_next(args.latency_ms / 1000, times=10**9)
        for round_ in range(args.rounds):
            stamp = f"{time.time_ns()}-{round_}"
            emit.write(
                db.session,
                [
                    (
                        "payment.received",
                        merchant.account_id,
                        f"bench-{stamp}-{i}",
                        {"transaction": f"B{i:09d}", "amount": 100_00, "currency": "KES", "reference": None},
                    )
                    for i in range(args.events)
                ],
            )
            db.session.commit()
            STEPS.now("measured")
            start = time.perf_counter()
            while delivery.deliver_due(db.session, args.events)["delivered"]:
                pass
            seconds = time.perf_counter() - start
            STEPS.now("checks")
            delivered = db.session.execute(
                select(func.count()).where(Delivery.status == DeliveryStatus.DELIVERED.value)
            ).scalar_one()
            assert delivered == args.events, f"{delivered} of {args.events} delivered"
            rates.append(args.events / seconds)
            db.session.execute(delete(Delivery))
            db.session.execute(delete(Event))
            db.session.commit()
            STEPS.now("setup")
        verified = sum(r.verified for r in receiver.events())
    STEPS.now("start-ups")
    running.stop()
    STEPS.now("other")
    return {
        "events": args.events,
        "rounds": args.rounds,
        "claim_batch": args.batch,
        "latency_ms": args.latency_ms,
        "deliveries_per_second": round(statistics.median(rates), 1),
        "all_rounds": [round(r, 1) for r in rates],
        "signatures_verified": verified,
    }


def table(result: dict) -> str:
    return "\n".join(
        [
            "| what | figure |",
            "|---|---|",
            f"| webhook deliveries/s (claim batch {result['claim_batch']}, receiver latency "
            f"{result['latency_ms']} ms; median of {result['rounds']} rounds of {result['events']}) "
            f"| {result['deliveries_per_second']:,.0f} |",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args)
    result["minutes_per_step"] = STEPS.minutes()
    print(table(result))
    print(f"Minutes per step: {minutes_line(result['minutes_per_step'])}.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
