"""Where a transfer's time goes, confirm → receipts handed over: each step timed, per transfer.

    DATABASE_URL=postgresql://.../tuma_x REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python bench/e2e_trace.py [--rate 8 --seconds 15] [--rounds 4 --trees OLD,.]
        [--worker-env NAME=value,...]

What ``bench/ussd_bench.py``'s end-to-end figure measures, without the USSD hops: requests are
recorded and committed as the PIN hop does (the commit rings the transfers queue), ``--rate`` a
second with random gaps, and one ``python -m worker --no-cron`` (every queue in one process, as
in that bench) executes them and hands their receipts to the local gateway (a process of its
own). The worker runs with timing hooks around its steps (rq's dequeue and job, the batch's
take, posting and commit, the rings, the SMS job's claim, each hand-over and each record); the
report gives, per transfer, the distribution of each step between the confirm's commit and the
commit that recorded its last receipt, so a wait shows as a step that is not work.

``--trees`` runs the worker of each checkout in turn, round after round (the order swapped
each round), against the same database, gateway and confirms' pace: on a shared machine an
A/B of the same minutes, not of two moods (a checkout of the old code: ``git archive REV |
tar -x -C DIR``). The numbered steps are what ``bench/analysis.md`` ("End to end, fifth
round") reads.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LOAD_ENV = dict(
    AT_API_KEY="bench",
    PIN_PEPPER="bench",
    TUMA_LIMITS_FULL_MAJOR="250000,1000000000,1000000000",
    TUMA_VELOCITY_MAX_COUNT="0",
    TUMA_VELOCITY_MAX_VALUE_MAJOR="0",
)


# -- the worker's hooks -----------------------------------------------------------------------


def traced_worker(path: str, extra: list[str]) -> int:
    """``python -m worker --no-cron`` with each step's end written to ``path`` (JSON lines)."""
    import functools
    import threading

    from rq import Queue, SimpleWorker

    import worker.jobs as jobs
    from ussd_app import queues
    from ussd_app.payments import execute
    from ussd_app.sms import sender

    out = open(path, "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def note(event: str, **fields) -> None:
        line = json.dumps({"e": event, "t": time.time(), "th": threading.get_ident(), **fields})
        with lock:
            out.write(line + "\n")

    def around(owner, name, before=None, after=None):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if before:
                before(*args, **kwargs)
            result = original(*args, **kwargs)
            if after:
                after(result, *args, **kwargs)
            return result

        setattr(owner, name, wrapper)

    original_dequeue = Queue.dequeue_any.__func__

    def dequeue_any(cls, *args, **kwargs):
        result = original_dequeue(cls, *args, **kwargs)
        if result is not None:
            job, queue = result
            note("dequeued", job=job.id, queue=queue.name, enqueued=job.enqueued_at.timestamp())
        return result

    Queue.dequeue_any = classmethod(dequeue_any)
    around(
        SimpleWorker,
        "execute_job",
        before=lambda self, job, queue: note("job_start", job=job.id),
        after=lambda r, self, job, queue: note("job_end", job=job.id),
    )
    # The batch: which requests it took, when posted, when committed.
    around(
        execute, "_take_queued", after=lambda rows, session, limit: note("taken", ids=[r.id for r in rows])
    )
    around(execute, "create_transfers", after=lambda r, *a, **k: note("posted"))
    batch = "execute_queued" if hasattr(jobs, "execute_queued") else "execute_batch"  # before: a count
    around(jobs, batch, after=lambda r, *a, **k: note("batch_committed"))
    # Inside the job's own function (rq calls worker.jobs.execute_transfers by name).
    around(
        jobs,
        "execute_transfers",
        before=lambda *a, **k: note("transfers_fn_start"),
        after=lambda r, *a, **k: note("transfers_fn_end"),
    )
    around(
        jobs,
        "send_sms",
        before=lambda *a, **k: note("sms_fn_start"),
        after=lambda r, *a, **k: note("sms_fn_end"),
    )
    around(queues, "ring", after=lambda r, bell, *a, **k: note("rung", bell=bell.value, enqueued=r))
    # The sender's functions are patched in the modules that call them: its package's ``job`` and
    # ``lanes`` (one module, ``sender`` itself, before it was split).
    job_module, lanes_module = getattr(sender, "job", sender), getattr(sender, "lanes", sender)
    around(
        job_module,
        "claim_lanes",
        after=lambda lanes, *a, **k: note("claimed", ids=[c.id for lane in lanes for c in lane]),
    )
    around(
        sender,
        "send_due",
        before=lambda *a, **k: note("send_due_start"),
        after=lambda r, *a, **k: note("send_due_end"),
    )

    original_run = sender._Lanes.run

    def run(self, lane):
        note("lane_start", ids=[c.id for c in lane.claims])
        return original_run(self, lane)

    sender._Lanes.run = run
    original_hand_over = lanes_module.hand_over

    def hand_over(client, phone, body):
        note("call_start", phone=phone)
        answer = original_hand_over(client, phone, body)
        note("call_end", phone=phone)
        return answer

    lanes_module.hand_over = job_module.hand_over = hand_over
    original_record = job_module._record_news

    def record_news(session, lanes, news, counts, now):
        original_record(session, lanes, news, counts, now)
        ids = [item.id for kind, item, _ in news if kind == "answer"]
        if ids:
            note("recorded", ids=ids)

    job_module._record_news = record_news
    from worker.__main__ import main as worker_main

    return worker_main(["--no-cron", *extra])


# -- the run ------------------------------------------------------------------------------------


def centile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def analyse(path: str, confirms: dict, receipts: dict) -> dict:
    """Per transfer: each step's span (ms). ``confirms``: request id → (created, committed,
    rung) epoch seconds; ``receipts``: outbox id → request id."""
    events = [json.loads(line) for line in open(path)]  # noqa: SIM115
    batch_of = {}
    dequeued = {}  # job id → (time, enqueued_at, queue)
    job_order = []  # (dequeue time, job id, queue)
    current = None  # the batch being run
    for ev in events:
        e = ev["e"]
        if e == "dequeued":
            dequeued[ev["job"]] = ev
            job_order.append(ev)
            current = {
                "job": ev["job"],
                "dequeued": ev["t"],
                "enqueued": ev["enqueued"],
                "queue": ev["queue"],
            }
        elif e == "job_start" and current:
            current["job_start"] = ev["t"]
        elif e == "transfers_fn_start":
            current["fn_start"] = ev["t"]
        elif e == "taken":
            current["taken"] = ev["t"]
            current["ids"] = ev["ids"]
            for rid in ev["ids"]:
                batch_of[rid] = current
        elif e == "posted":
            current["posted"] = ev["t"]
        elif e == "rung" and ev["bell"] == "sms" and current and current["queue"] == "transfers":
            current.setdefault("sms_rung", ev["t"])
        elif e == "batch_committed":
            current["committed"] = ev["t"]
        elif e == "transfers_fn_end":
            current["fn_end"] = ev["t"]
        elif e == "job_end" and current:
            current["job_end"] = ev["t"]
    # The SMS side: per outbox id, the job that sent it and each step.
    sms = {}
    job = running = None
    lane_of_thread = {}
    for ev in events:
        e = ev["e"]
        if e == "dequeued":
            running = ev
        elif e == "send_due_start":  # in an SMS job, or in a transfer job after its batch
            job = {"send_due": ev["t"], "dequeued": running["t"] if running["queue"] == "sms" else None}
        elif e == "claimed" and job is not None:
            for oid in ev["ids"]:
                sms.setdefault(oid, {"job": job, "claimed": ev["t"]})
            job.setdefault("first_claim", ev["t"])
        elif e == "lane_start":
            lane_of_thread[ev["th"]] = ev["ids"]
            for oid in ev["ids"]:
                if oid in sms:
                    sms[oid].setdefault("lane_start", ev["t"])
        elif e == "call_start":
            for oid in lane_of_thread.get(ev["th"], []):
                if oid in sms and "call_start" not in sms[oid]:
                    sms[oid]["call_start"] = ev["t"]
                    break
        elif e == "call_end":
            for oid in lane_of_thread.get(ev["th"], []):
                if oid in sms and "call_start" in sms[oid] and "call_end" not in sms[oid]:
                    sms[oid]["call_end"] = ev["t"]
                    break
        elif e == "recorded":
            for oid in ev["ids"]:
                if oid in sms:
                    sms[oid]["recorded"] = ev["t"]
    steps = {}

    def add(name, value):
        steps.setdefault(name, []).append(value * 1000)

    whole = []
    for rid, (created, commit, rung) in confirms.items():
        batch = batch_of.get(rid)
        mine = [s for oid, s in sms.items() if receipts.get(oid) == rid and "recorded" in s]
        if batch is None or not mine or "committed" not in batch:
            continue
        last = max(mine, key=lambda s: s["recorded"])
        job = last["job"]
        add("1 confirm: insert → commit", commit - created)
        add("2 confirm: commit → transfers job enqueued", rung - commit)
        add("3 wait for the worker (enqueued → dequeued)", batch["dequeued"] - max(rung, batch["enqueued"]))
        add("3a ...of which the job was enqueued before this confirm", max(0, rung - batch["enqueued"]))
        add("4 rq: dequeued → job function", batch["fn_start"] - batch["dequeued"])
        add("5 batch: function → rows taken", batch["taken"] - batch["fn_start"])
        add("6 batch: taken → posted", batch["posted"] - batch["taken"])
        add("7 batch: posted → committed (receipts, commit)", batch["committed"] - batch["posted"])
        add("8-11 batch committed → send_due", job["send_due"] - batch["committed"])
        if job["dequeued"] is not None:  # an SMS job of its own
            add("8 transfers job: committed → function end", batch["fn_end"] - batch["committed"])
            add("9 rq: function end → job end", batch["job_end"] - batch["fn_end"])
            add("10 job end → SMS job dequeued", job["dequeued"] - batch["job_end"])
            add("11 rq: SMS dequeued → send_due", job["send_due"] - job["dequeued"])
        else:
            add("8 (in the transfer job)", 0)
        add("12 send_due → claim committed", last["claimed"] - job["send_due"])
        add("13 claim → lane thread starts", last["lane_start"] - last["claimed"])
        add("14 lane → call starts", last["call_start"] - last["lane_start"])
        add("15 the call (SDK → gateway → answer)", last["call_end"] - last["call_start"])
        add("16 answer → recorded (gather + commit)", last["recorded"] - last["call_end"])
        add("batch size", len(batch["ids"]) / 1000)
        whole.append((last["recorded"] - created) * 1000)
        add("posted (confirm insert → create_transfers)", batch["posted"] - created)
        add("posted → last receipt recorded", last["recorded"] - batch["posted"])
    return {"count": len(whole), "whole": whole, "steps": steps}


def run_once(app, accounts, tree: str, args, gateway_url: str, rng) -> dict:
    """One worker from ``tree`` (with the hooks), ``args.seconds`` of confirms, its trace."""
    from rq import Worker
    from sqlalchemy import func, insert, select

    from ussd_app.extensions import db
    from ussd_app.payments.models import TransferRequest, transaction_code
    from ussd_app.queues import Bell, get_redis, ring_after_commit
    from ussd_app.sms.outbox import OutboxMessage

    if os.path.exists(args.trace):
        os.remove(args.trace)
    with app.app_context():
        get_redis().flushdb()
    env = dict(os.environ, AT_API_URL=gateway_url)
    env.update(dict(pair.split("=", 1) for pair in args.worker_env.split(",") if pair))
    worker = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", "--tree", tree, "--trace", args.trace],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(args.trace + ".log", "w"),  # noqa: SIM115
    )
    confirms = {}
    try:
        with app.app_context():
            deadline = time.monotonic() + 60
            while not Worker.all(connection=get_redis()) and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(1)
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker stopped: see {args.trace}.log")
            time.sleep(rng.expovariate(args.rate))
            # A PIN hop's commit: the request inserted (created_at), committed, the ring after it.
            with app.app_context():
                debit, credit = rng.sample(accounts, 2)
                rid = uuid.uuid4().hex
                created = time.time()
                db.session.execute(
                    insert(TransferRequest),
                    [
                        dict(
                            id=rid,
                            code=transaction_code(rid),
                            kind="send",
                            debit_account_id=debit,
                            credit_account_id=credit,
                            amount=rng.randint(1, 500) * 100,
                            fee=0,
                            status="queued",
                            attempts=0,
                        )
                    ],
                )
                ring_after_commit(db.session, Bell.TRANSFERS, rid)
                db.session.flush()
                before_commit = time.time()
                db.session.commit()  # rings (queues._committed) before it returns
                confirms[rid] = (created, before_commit, time.time())
                db.session.remove()
        with app.app_context():
            deadline = time.monotonic() + 60
            unfinished = (
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(("pending", "sending")))
            )
            queued = (
                select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
            )
            while time.monotonic() < deadline and (
                db.session.execute(queued).scalar_one() or db.session.execute(unfinished).scalar_one()
            ):
                db.session.rollback()
                time.sleep(0.1)
            receipts = dict(
                db.session.execute(
                    select(OutboxMessage.id, OutboxMessage.transfer_request_id).where(
                        OutboxMessage.transfer_request_id.in_(list(confirms))
                    )
                ).all()
            )
            db.session.remove()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    result = analyse(args.trace, confirms, receipts)
    result["confirms"] = len(confirms)
    return result


def _order(name: str):
    head = name.split()[0].split("-")[0].rstrip("a")
    return (int(head) if head.isdigit() else -1, name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--trees", default=ROOT, help="checkouts whose workers run in turn, each round (A/B: /work/main,.)"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--worker-env", default="")
    parser.add_argument("--trace", default=os.path.join(ROOT, "instance", "e2e_trace.jsonl"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sys.path.insert(0, os.path.abspath(args.tree))
        return traced_worker(args.trace, [])
    os.environ.update(LOAD_ENV)
    import flask_migrate
    from sqlalchemy import func, select

    from bench.population import customers
    from bench.sms_sender_bench import GatewayProcess
    from ussd_app import create_app
    from ussd_app.extensions import db
    from ussd_app.payments.models import TransferRequest
    from ussd_app.sms.outbox import OutboxMessage

    app = create_app()
    with app.app_context():
        flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
        users_table = db.Model.metadata.tables["users"]
        if db.session.execute(select(func.count()).select_from(users_table)).scalar() < args.users:
            customers(db.session, args.users, balance=10_000_000_000, tier="full")
        # What an earlier run left (a worker that stopped early) would be this run's backlog.
        db.session.execute(
            TransferRequest.__table__.update()
            .where(TransferRequest.status == "queued")
            .values(status="rejected", result="bench_leftover")
        )
        db.session.execute(
            OutboxMessage.__table__.update()
            .where(OutboxMessage.status.in_(("pending", "sending")))
            .values(status="failed", failure_reason="bench leftover")
        )
        db.session.commit()
        accounts = list(
            db.session.execute(
                select(users_table.c.account_id).where(users_table.c.role == "customer")
            ).scalars()
        )
        db.session.remove()
    trees = [os.path.abspath(t) for t in args.trees.split(",")]
    gateway = GatewayProcess()
    rng = random.Random(11)
    results: dict[str, list[dict]] = {tree: [] for tree in trees}
    try:
        for round_ in range(args.rounds):
            for tree in trees if round_ % 2 == 0 else trees[::-1]:
                result = run_once(app, accounts, tree, args, gateway.url, rng)
                results[tree].append(result)
                w = result["whole"]
                print(
                    f"round {round_ + 1} {tree}: {result['count']}/{result['confirms']} traced, whole p50 "
                    f"{centile(w, 0.5):.0f} / p99 {centile(w, 0.99):.0f} ms",
                    flush=True,
                )
    finally:
        gateway.stop()
    print(f"\n{args.rate:g} confirms/s for {args.seconds:g} s a round, {args.rounds} rounds; per step, the")
    print("median over the rounds of each round's p50 (p90), ms:")
    names = sorted({n for rs in results.values() for r in rs for n in r["steps"]}, key=_order)
    print(f"{'step':<52}" + "".join(f" {os.path.basename(t) or t:>18}" for t in trees))
    for name in names + ["whole"]:
        cells = []
        for tree in trees:
            rounds = [r["whole"] if name == "whole" else r["steps"].get(name, []) for r in results[tree]]
            rounds = [v for v in rounds if v]
            if not rounds:
                cells.append(f"{'-':>18}")
                continue
            p50 = statistics.median(centile(v, 0.5) for v in rounds)
            p90 = statistics.median(centile(v, 0.9) for v in rounds)
            cells.append(f" {p50:>8.1f} ({p90:>6.1f})")
        print(f"{name:<52}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
