"""Allowance charges per second through ``POST /api/v1/allowances/{id}/charges/batch``, beside
the ledger's own uniform rate in the same run; then 100,000 charges across 1,000 allowances
settled, counting what that costs the ledger and the SMS sender (issue 18, "Numbers").

    python bench/allowance_bench.py [--charges 30000] [--hot 50] [--transfers 5000]
                                    [--allowances 1000] [--per-allowance 100] [--workers 2] [--runs 3]

Needs PostgreSQL and Redis (BENCH_PG_BASE, default postgresql://postgres@127.0.0.1; BENCH_REDIS,
default redis://127.0.0.1:6379/12). Creates and drops its own database.

- **uniform ledger**: ``--transfers`` sends between random customers, recorded in bulk and
  executed by the workers (as bench/api_bench.py does): transfers/s from the first
  announcement to the last posting.
- **charges through the batch endpoint**: ``--charges`` KES 1 charges in batches of 1,000 (the
  endpoint's most) against ``--hot`` active allowances, round robin, sent to the real app (its
  WSGI test client: the whole request but the HTTP server). Each batch's charges are committed
  before its answer, so charges/s is of durable charges, from the first POST to the last answer.
- **settled**: ``--allowances`` allowances of KES ``--per-allowance`` a day, each charged
  ``--per-allowance`` KES 1 charges through the batch endpoint (one batch each), then settled
  at their period's end (``settle_due``, the maintenance job's call) and posted by the workers.
  It counts the ledger's transfers and the SMS written while charging (none) and for the
  settlements (one posting and one SMS each; the next period's hold follows), and runs
  ``ledger check``: a run that breaks an invariant has no result.

The allowances are started as on USSD (``allowances.start``, the PIN taken as given) and
their holds executed by the workers before anything is timed. With autovacuum off (as on the
benchmark's server) the script analyzes the tables it grows, as autovacuum would.
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
DB_NAME = os.environ.get("BENCH_ALLOWANCE_DB", "tuma_allowance_bench")
BATCH_ROWS = 1_000  # the batch endpoint's most
CHARGE = 1_00  # KES 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charges", type=int, default=30_000, help="charges per throughput run")
    parser.add_argument("--hot", type=int, default=50, help="allowances the throughput runs charge")
    parser.add_argument("--transfers", type=int, default=5_000, help="uniform sends per run")
    parser.add_argument("--allowances", type=int, default=1_000)
    parser.add_argument("--per-allowance", type=int, default=100, help="KES 1 charges each, = its limit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500, help="requests per worker transaction")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    started = time.monotonic()

    STEPS.now("setup")
    db_url = fresh_database(DB_NAME)
    os.environ.update(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS,
        TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
        TUMA_VELOCITY_MAX_COUNT="0",
        TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
        TUMA_API_RATE_PER_MINUTE="100000000",
    )

    import flask_migrate
    from rq import Worker
    from sqlalchemy import func, insert, select, text

    from bench.population import customers
    from ussd_app import create_app
    from ussd_app.api.keys import create_key
    from ussd_app.extensions import db
    from ussd_app.ledger import AccountKind, TransferSpec, create_transfers, house_account
    from ussd_app.ledger.check import check
    from ussd_app.ledger.models import Transfer
    from ussd_app.payments import allowances as al
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.payments.submit import announce
    from ussd_app.queues import get_redis
    from ussd_app.sms.outbox import OutboxMessage
    from ussd_app.users import User, create_user
    from worker.jobs import after_allowance_batch, settle_allowances

    MODELS = {"transfers": Transfer, "requests": TransferRequest, "sms": OutboxMessage}

    app = create_app()
    rng = random.Random(18)
    results = {"uniform": [], "charges": [], "settled": {}, "ledger_check": True}
    with app.app_context():
        get_redis().flushdb()
        flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
        session = db.session
        # The workers start now, so that their imports overlap the population (they are waited
        # for below).
        STEPS.now("start-ups")
        env = dict(os.environ, TUMA_TRANSFER_BATCH_SIZE=str(args.batch))
        procs = [
            spawn(["-m", "worker", "--no-cron", "--queues", "transfers"], ROOT, env)
            for _ in range(args.workers)
        ]
        STEPS.now("setup")
        n_customers = max(args.allowances + args.hot, 2_000)
        try:
            ids = customers(session, n_customers, balance=10_000_000_000, tier="full")
        except BaseException:
            kill_idle(procs, get_redis())
            raise
        shop = create_user(
            session, phone="+254799000018", name="Bench News", role="merchant", pin=None, till="99018"
        )
        trust = house_account(session, AccountKind.TRUST).id
        create_transfers(session, [TransferSpec("fund-news", trust, shop.account_id, 10**12, "float_issue")])
        _, key = create_key(session, shop, "bench", ["collect", "read"])
        shop_id = shop.id
        session.commit()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        STEPS.now("other")

        def post(path: str, body) -> dict:
            answer = client.post(
                f"/api/v1{path}", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
            )
            assert answer.status_code in (201, 202), (path, answer.status_code, answer.json)
            return answer.json

        def queued() -> int:
            n = session.execute(
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            ).scalar_one()
            session.rollback()
            return n

        def drain() -> None:
            """Ring the workers and wait until nothing is queued."""
            for _ in range(args.workers):  # each full batch queues the next: one chain per worker
                announce(force=True)
            while queued():
                time.sleep(0.02)

        def settled_down(condition, what: str, seconds: float = 120) -> None:
            """Until ``condition()``: the workers' ``after_batch`` follows each batch, but two
            side by side read the same first 500 allowances in motion, so what they leave is
            moved here, as the maintenance job (not run by these workers) would."""
            deadline = time.monotonic() + seconds
            while not condition():
                assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
                if not after_allowance_batch():
                    time.sleep(0.02)

        autovacuum = session.execute(text("SHOW autovacuum")).scalar_one() == "on"
        session.rollback()

        def analyzed() -> None:
            """What autovacuum does as the tables grow. Without it (it is off on the benchmark's
            server), a connection that planned the charges' id lookup while allowance_charges
            was empty keeps that seq-scan plan (plan_cache_mode auto): 100-row batches then
            took 0.4 s each at 100,000 charges."""
            if not autovacuum:
                session.execute(text("ANALYZE allowance_charges, allowances, api_idempotency_keys"))
                session.commit()

        def count(model, *where) -> int:
            n = session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
            session.rollback()
            return n

        def ledger_ok(what: str) -> bool:
            with STEPS("checks"):
                ok = all(f.ok for f in check(session))
            session.rollback()
            results["ledger_check"] = results["ledger_check"] and ok
            print(f"    ledger check after {what}: {'passed' if ok else 'FAILED'}", flush=True)
            return ok

        def start_allowances(account_ids: list[int], limit: int) -> list[str]:
            """Allowances to the shop, started as on USSD; active once drained. The first is
            started by ``al.start`` (the PIN taken as given), the others are copies of the two rows
            it wrote (``started_like``): one statement for each table, where starting ~1,000 one
            by one took ~0.7 loaded minutes."""
            previous = STEPS.now("setup", "allowances started")
            people = {
                u.account_id: u
                for u in session.execute(select(User).where(User.account_id.in_(account_ids))).scalars()
            }
            merchant = session.get(User, shop_id)
            first = al.start(
                session, people[account_ids[0]], merchant, limit=limit, period="day", allowance_id=al.new_id()
            )
            session.flush()
            made = [first.id] + started_like(session, first, [people[a] for a in account_ids[1:]])
            session.commit()
            STEPS.now("setup", "allowances' holds executed")
            drain()
            settled_down(
                lambda: (
                    count(al.Allowance, al.Allowance.id.in_(made), al.Allowance.state == "active")
                    == len(made)
                ),
                "the allowances' holds",
            )
            STEPS.now(*previous)
            return made

        try:
            STEPS.now("start-ups")
            deadline = time.monotonic() + 30
            while len(Worker.all(connection=get_redis())) < args.workers and time.monotonic() < deadline:
                time.sleep(0.05)

            STEPS.now("other")
            # 100,000 charges across 1,000 allowances, settled at their period's end by the
            # maintenance job's own call (settle_due), as the worker's cron would.
            cold = start_allowances(ids[: args.allowances], limit=args.per_allowance * CHARGE)
            print(f"  {len(cold)} allowances active ({time.monotonic() - started:.0f} s)", flush=True)
            before = {
                "transfers": count(Transfer),
                "requests": count(TransferRequest),
                "sms": count(OutboxMessage),
            }
            STEPS.now("measured")
            start = time.perf_counter()
            for n, allowance_id in enumerate(cold):
                if n % 100 == 1:
                    analyzed()
                answer = post(
                    f"/allowances/{allowance_id}/charges/batch",
                    {"charges": [{"amount": CHARGE} for _ in range(args.per_allowance)]},
                )
                assert answer["accepted"] == args.per_allowance and answer["left"] == 0, answer["rejected"]
            db.session.remove()
            charging = time.perf_counter() - start
            while_charging = {what: count(model) - before[what] for what, model in MODELS.items()}
            period_end = session.execute(
                select(func.max(al.Allowance.period_ends_at)).where(al.Allowance.id.in_(cold))
            ).scalar_one()
            session.rollback()
            start = time.perf_counter()
            while settle_allowances(now=period_end + timedelta(seconds=1)):
                pass
            drain()
            settled_down(
                lambda: (
                    count(al.AllowanceSettlement, al.AllowanceSettlement.told_at.is_(None)) == 0
                    and count(al.Allowance, al.Allowance.state != "active") == 0
                ),
                "the settlements and the next periods' holds",
            )
            drain()
            settling = time.perf_counter() - start
            STEPS.now("checks")

            def of_kind(kind: str) -> tuple[int, int]:
                found = session.execute(
                    select(func.count(), func.coalesce(func.sum(TransferRequest.amount), 0)).where(
                        TransferRequest.kind == kind, TransferRequest.status == "accepted"
                    )
                ).one()
                session.rollback()
                return int(found[0]), int(found[1])

            posts, settled_sum = of_kind("allowance_post")
            holds, _ = of_kind("allowance")
            results["settled"] = {
                "allowances": len(cold),
                "charges": len(cold) * args.per_allowance,
                "charging_seconds": charging,
                "settling_seconds": settling,
                "charging": while_charging,
                "settlement_postings": posts,
                "settled_amount": settled_sum,
                "next_holds": holds - len(cold),
                "ledger_transfers": count(Transfer) - before["transfers"],
                "sms": count(OutboxMessage) - before["sms"],
                "ledger_check": ledger_ok("the settlements"),
            }
            expected = len(cold) * args.per_allowance * CHARGE
            results["ledger_check"] = (
                results["ledger_check"] and posts == len(cold) and settled_sum == expected
            )
            print(f"  settled: {json.dumps(results['settled'])}", flush=True)
            STEPS.now("other")

            # Throughput: charges through the batch endpoint beside the uniform ledger.
            hot = start_allowances(ids[args.allowances : args.allowances + args.hot], limit=200_000_00)
            analyzed()

            def uniform() -> float:
                STEPS.now("setup")
                base = datetime.now(UTC).replace(tzinfo=None)
                rows = []
                for k in range(args.transfers):
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
                STEPS.now("measured")
                start = time.perf_counter()
                for chunk in range(0, len(rows), 5000):
                    session.execute(insert(TransferRequest), rows[chunk : chunk + 5000])
                session.commit()
                drain()
                rate = args.transfers / (time.perf_counter() - start)
                STEPS.now("checks")
                posted = count(
                    TransferRequest,
                    TransferRequest.created_at >= base,
                    TransferRequest.kind == "send",
                    TransferRequest.status == "accepted",
                )
                results["ledger_check"] = results["ledger_check"] and posted == args.transfers
                print(f"  uniform ledger: {rate:8.0f} transfers/s ({posted} posted)", flush=True)
                STEPS.now("other")
                return rate

            def charges() -> float:
                batches, k = [], 0
                while k < args.charges:
                    rows = min(BATCH_ROWS, args.charges - k)
                    batches.append((hot[len(batches) % len(hot)], rows))
                    k += rows
                before = count(al.AllowanceCharge)
                STEPS.now("measured")
                start = time.perf_counter()
                for allowance_id, rows in batches:
                    answer = post(
                        f"/allowances/{allowance_id}/charges/batch",
                        {"charges": [{"amount": CHARGE, "reference": f"r{n}"} for n in range(rows)]},
                    )
                    assert answer["accepted"] == rows, answer["rejected"]
                db.session.remove()
                rate = args.charges / (time.perf_counter() - start)
                STEPS.now("checks")
                durable = count(al.AllowanceCharge) - before
                assert durable == args.charges, f"{durable} tab lines for {args.charges} charges"
                print(f"  batch charges:  {rate:8.0f} charges/s ({durable} tab lines)", flush=True)
                STEPS.now("other")
                return rate

            for _ in range(args.runs):
                results["uniform"].append(uniform())
                results["charges"].append(charges())
            ledger_ok("the throughput runs")
        finally:
            STEPS.now("start-ups")
            kill_idle(procs, get_redis())  # their work done and checked
            STEPS.now("setup")
            db.session.remove()
            db.engine.dispose()
    psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    results["seconds"] = time.monotonic() - started
    results["minutes_per_step"] = STEPS.minutes()
    print(table(results, args))
    print(f"Minutes per step: {minutes_line(results['minutes_per_step'])}; {STEPS.detail_line()}.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0 if results["ledger_check"] else 1


def started_like(session, first, customers_: list) -> list[str]:
    """Allowances of ``customers_`` to the same merchant on the same terms as ``first``
    (just started by ``al.start``), written as copies of its row and of its hold's
    request row, each with its own id, the customer's number and account, and what
    derives from the id (the hold's request id, its transaction code, the reference);
    the k-th copy's times (the allowance's, its period's, the request's) k µs after the
    first's, as if started one after the other in the customers' order. Any other column of the two rows naming the first allowance or
    its customer would have to differ per copy: refused here, so a change to what
    ``al.start`` writes cannot pass unseen. The same rows as one by one, in 2
    statements instead of ~5 per allowance. Their ids, the customers' order."""
    from sqlalchemy import select, text

    from ussd_app.payments import allowances as al
    from ussd_app.payments.models import TransferRequest, transaction_code

    ids = [al.new_id() for _ in customers_]
    if not ids:
        return []
    allowance = (
        session.execute(select(al.Allowance.__table__).where(al.Allowance.id == first.id)).one()._asdict()
    )
    request = (
        session.execute(select(TransferRequest.__table__).where(TransferRequest.id == first.hold_request_id))
        .one()
        ._asdict()
    )
    customer = (allowance["customer_phone"], allowance["customer_account_id"])
    assert request["id"] == first.hold_request_id and first.id in request["id"], request
    assert request["code"] == transaction_code(request["id"]), request
    assert (request["debit_account_id"], request["reference"]) == (customer[1], first.id), request
    later = "r.{} + n.k * interval '1 microsecond'"  # the k-th copy: started k µs after the first
    per_copy = {
        "allowances": dict(
            id="n.id",
            customer_phone="n.phone",
            customer_account_id="n.account",
            hold_request_id="n.hold",
            **{
                c: later.format(c) for c in ("created_at", "decided_at", "period_starts_at", "period_ends_at")
            },
        ),
        "transfer_requests": dict(
            id="n.hold",
            code="n.code",
            debit_account_id="n.account",
            reference="n.id",
            created_at=later.format("created_at"),
        ),
    }
    for table, row in (("allowances", allowance), ("transfer_requests", request)):
        for column, value in row.items():
            if column in per_copy[table]:
                continue
            if isinstance(value, str):
                assert first.id not in value and value != customer[0], (table, column, value)
            if column.endswith("account_id"):
                assert value != customer[1], (table, column, value)
    holds = [request["id"].replace(first.id, i) for i in ids]
    values = dict(
        first=first.id,
        hold=first.hold_request_id,
        ids=ids,
        phones=[c.phone for c in customers_],
        accounts=[c.account_id for c in customers_],
        holds=holds,
        codes=[transaction_code(h) for h in holds],
    )
    copies = (
        "unnest(CAST(:ids AS text[]), CAST(:phones AS text[]), CAST(:accounts AS bigint[]), "
        "CAST(:holds AS text[]), CAST(:codes AS text[])) WITH ORDINALITY AS n(id, phone, account, hold, code, k)"
    )
    for table, key in (("allowances", "first"), ("transfer_requests", "hold")):
        columns = list(allowance if table == "allowances" else request)
        chosen = ", ".join(per_copy[table].get(c, f"r.{c}") for c in columns)
        session.execute(
            text(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {chosen} "
                f"FROM {table} r, {copies} WHERE r.id = :{key} ORDER BY n.k"
            ),
            values,
        )
    return ids


def table(results: dict, args) -> str:
    def fig(runs):
        return f"{statistics.median(runs):,.0f} ({min(runs):,.0f}–{max(runs):,.0f})"

    if not results["ledger_check"]:  # a benchmark that breaks an invariant has no result
        return "Allowances: ledger check FAILED (or a charge or settlement was missing): no result."
    uniform, charges = statistics.median(results["uniform"]), statistics.median(results["charges"])
    s = results["settled"]
    c = s["charging"]
    return "\n".join(
        [
            f"Allowances: {args.charges:,} KES 1 charges per run through POST /api/v1/allowances/{{id}}/charges/batch "
            f"(batches of {BATCH_ROWS:,} across {args.hot} active allowances, each batch committed before its "
            f"answer) beside {args.transfers:,} uniform sends recorded in bulk and executed by {args.workers} "
            f"workers, same database; median (min–max) of {args.runs} runs.",
            "",
            "| workload | per second | × uniform ledger |",
            "| --- | ---: | ---: |",
            f"| uniform ledger (sends) | {fig(results['uniform'])} | 1.0 |",
            f"| allowance charges through the batch endpoint | {fig(results['charges'])} | {charges / uniform:.1f} |",
            "",
            f"{s['charges']:,} charges across {s['allowances']:,} allowances (one batch each, "
            f"{s['charging_seconds']:.1f} s), settled at the period's end by the maintenance job's call and "
            f"posted by the workers ({s['settling_seconds']:.1f} s):",
            "",
            "| | ledger transfers | transfer requests | SMS |",
            "| --- | ---: | ---: | ---: |",
            f"| the {s['charges']:,} charges | {c['transfers']:,} | {c['requests']:,} | {c['sms']:,} |",
            f"| their settlement | {s['ledger_transfers']:,} | {s['settlement_postings']:,} posts "
            f"(KES {s['settled_amount'] / 100:,.0f}) + {s['next_holds']:,} next-period holds | {s['sms']:,} |",
            "",
            "Ledger transfers of the settlement: each post of a hold, the merchant's fee on it, and the next "
            "period's hold. ledger check after the settlements and after the throughput runs: passed",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
