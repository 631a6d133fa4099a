"""Buffers a claim reads, by statement, against how many rows one number was sent before: the
sender's claim (``sender.claim_lanes``, the working tree's) on PostgreSQL, each of its
statements' plan and buffer counts taken by ``auto_explain`` (sent back as NOTICEs, so they are
the statements the sender really runs: prepared by psycopg from their fifth execution, and
generic plans too with ``--generic``). Counts, not times: the figure is the same on a busy
machine, but for one thing: dead index entries are skipped only once no snapshot can see their
rows, and a transaction open anywhere in the cluster with an xid holds that back. Rounds whose
claim came while a transaction older than the last round's writes still ran (the dead entries
those writes left could not be skipped yet) are counted and can be left out
(``--rounds-held exclude``).

    .venv/bin/python bench/sms_claim_reads.py --database-url postgresql://postgres@127.0.0.1/tuma_x

Each history: the outbox is emptied (TRUNCATE: use a database of its own), then gets
``history`` sent rows of one number (a busy till) among ``--others`` sent rows of 20,000
numbers, in random order, and 64 new receipts to the till among 64 to others; VACUUM ANALYZE.
Then ``--rounds`` claims of 16 lanes of up to 64 rows, each followed (outside the measured
connection) by its rows marked sent and 128 more receipts written, as a busy sender would see
them. The figures are medians (and maxima) over the second half of the rounds. Needs a
superuser (LOAD 'auto_explain').
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BUSY = "+254700000001"
KINDS = ("due numbers", "number's rows", "lock rows", "claim update")


def kind(query: str) -> str:
    query = " ".join(query.split())
    if query.startswith("SELECT outbox_messages.phone"):
        return "due numbers"
    if query.startswith("SELECT outbox_messages.id"):
        return "lock rows"
    if query.startswith("UPDATE"):
        return "claim update"
    return "number's rows"


def scans(plan: dict, out: set) -> set:
    if "Index Name" in plan:
        out.add(f"{plan['Node Type']} {plan['Index Name']}")
    elif plan["Node Type"] == "Seq Scan":
        out.add("Seq Scan")
    for child in plan.get("Plans", []):
        scans(child, out)
    return out


def populate(conn, text, history: int, others: int) -> None:
    conn.execute(text("TRUNCATE outbox_messages RESTART IDENTITY"))
    conn.execute(
        text(
            "INSERT INTO outbox_messages (phone, body, status, attempts, gateway_message_id, sent_at) "
            "SELECT CASE WHEN g <= :h THEN :busy ELSE '+2547' || lpad((g % 20000)::text, 8, '1') END, "
            "'Tuma: you received KES 1,250.00 from JOHN DOE 0712345678. New balance KES 12,345.00.', "
            "'sent', 1, 'ATXid_' || g, now() FROM (SELECT g FROM generate_series(1, :n) g ORDER BY random()) s"
        ),
        {"h": history, "n": history + others, "busy": BUSY},
    )
    write_receipts(conn, text)


def write_receipts(conn, text) -> None:
    conn.execute(
        text(
            "INSERT INTO outbox_messages (phone, body, status, attempts) "
            "SELECT CASE WHEN g % 2 = 0 THEN :busy ELSE '+2547' || lpad((g % 20000)::text, 8, '3') END, "
            "'receipt', 'pending', 0 FROM generate_series(1, 128) g"
        ),
        {"busy": BUSY},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"))
    parser.add_argument(
        "--history", default="1000,100000", help="sent rows of the busy number, comma-separated"
    )
    parser.add_argument("--others", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--generic", action="store_true", help="plan_cache_mode = force_generic_plan")
    parser.add_argument("--rounds-held", choices=("include", "exclude"), default="include")
    args = parser.parse_args(argv)

    import flask_migrate
    from sqlalchemy import create_engine, event, text

    from ussd_app import create_app
    from ussd_app.config import database_url
    from ussd_app.extensions import db
    from ussd_app.sms import sender

    url = database_url(args.database_url)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "REDIS_URL": args.redis_url,
            "SECRET_KEY": "bench",
            "PIN_PEPPER": "bench",
        }
    )
    setup = create_engine(url, isolation_level="AUTOCOMMIT")
    notices: list[str] = []
    settings = [
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_buffers = on",
        "SET auto_explain.log_timing = off",
        "SET auto_explain.log_format = json",
        "SET auto_explain.log_level = notice",
        *(["SET plan_cache_mode = force_generic_plan"] if args.generic else []),
    ]
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))

            @event.listens_for(db.engine, "connect")
            def _explained(dbapi_connection, record):
                with dbapi_connection.cursor() as cursor:
                    for statement in settings:
                        cursor.execute(statement)
                dbapi_connection.commit()
                dbapi_connection.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

            for history in [int(h) for h in args.history.split(",")]:
                with setup.connect() as conn:
                    populate(conn, text, history, args.others)
                    conn.execute(text("VACUUM ANALYZE outbox_messages"))
                db.engine.dispose()  # fresh connections: statements prepared anew
                rounds = []
                last = None
                for _ in range(args.rounds):
                    with setup.connect() as conn:
                        # The last round's rows (finished by transaction ``last``) are dead to
                        # every snapshot only once no transaction older than it runs anywhere.
                        horizon = conn.execute(
                            text("SELECT txid_snapshot_xmin(txid_current_snapshot())")
                        ).scalar()
                    held = last is not None and horizon <= last
                    notices.clear()
                    lanes = sender.claim_lanes(db.session, 16, 64)
                    statements = []
                    for notice in notices:
                        if "plan:" in notice:
                            doc = json.loads(notice.split("plan:", 1)[1])
                            plan = doc["Plan"]
                            read = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
                            statements.append((kind(doc["Query Text"]), read, plan))
                    rounds.append((held, sum(len(lane) for lane in lanes), statements))
                    with setup.connect() as conn:
                        ids = [taken.id for lane in lanes for taken in lane]
                        conn.execute(
                            text(
                                "UPDATE outbox_messages SET status = 'sent', claim_token = NULL WHERE id = ANY(:ids)"
                            ),
                            {"ids": ids},
                        )
                        write_receipts(conn, text)
                        last = conn.execute(text("SELECT txid_current()")).scalar()
                tail = rounds[len(rounds) // 2 :]
                if args.rounds_held == "exclude":
                    tail = [r for r in tail if not r[0]]
                held_count = sum(r[0] for r in rounds)
                print(
                    f"history {history:,} sent rows of one number; {sum(r[1] for r in tail) / max(1, len(tail)):.0f} "
                    f"rows a claim; {len(tail)} rounds counted; {held_count} of {len(rounds)} rounds while an older "
                    f"transaction ran{' (generic plans)' if args.generic else ''}"
                )
                for name in KINDS:
                    read = [sum(b for k, b, _ in r[2] if k == name) for r in tail]
                    used: set = set()
                    for r in tail:
                        for k, _, plan in r[2]:
                            if k == name:
                                scans(plan, used)
                    if read:
                        print(
                            f"  {name:14s} buffers a claim: median {statistics.median(read):>7,.0f}  max {max(read):>7,}  {', '.join(sorted(used))}"
                        )
                total = [sum(b for _, b, _ in r[2]) for r in tail]
                if total:
                    print(
                        f"  {'all':14s} buffers a claim: median {statistics.median(total):>7,.0f}  max {max(total):>7,}"
                    )
    finally:
        setup.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
