"""USSD hops and end-to-end latency, beside a bare Flask route under the same gunicorn setup.

    python bench/ussd_bench.py [--runs 3] [--seconds 8] [--users 2000]

The real app (gunicorn, 2 sync workers) against real PostgreSQL and Redis, driven over loopback
by wrk with bench/ussd_mix.lua: conversations of a first hop, four menu hops and a final
confirm hop with the PIN, from many phone numbers. In the same run the same gunicorn setup
serves bench/bare_app.py, and the real app serves conversations that stop at the confirm screen
(menu hops only: what a hop costs without the PIN check's argon2). Reports hops/s at saturation (median, min, max of --runs), p50/p99
at 80% of saturation, the ratio to the bare route, and end to end (final confirm -> receipts
handed to the local SMS gateway) p50/p99 during the 80% run, with one worker, split at the
moment the transfer posted. `ledger check`
must pass afterwards.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import STEPS, cpu_seconds, fresh_database, kill_idle, minutes_line, psql, spawn  # noqa: E402
from bench.ledger_bench import REDIS  # noqa: E402

# BENCH_USSD_PORT and BENCH_USSD_DATABASE let two runs (two checkouts) go side by side.
APP_PORT = int(os.environ.get("BENCH_USSD_PORT", "8191"))
BARE_PORT, GATEWAY_PORT, FLOOR_PORT = APP_PORT + 1, APP_PORT + 2, APP_PORT + 3
DATABASE = os.environ.get("BENCH_USSD_DATABASE", "tuma_bench_ussd")
CONNECTIONS, THREADS = 16, 2
PIN = "2580"
RUNS_PER_SLICE = 16  # the payers are split in this many slices, one per wrk run


def wait_http(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


_runs = 0


def wrk(port: int, seconds: int, users: int, delay_ms: float = 0, hops: int = 6) -> dict:
    """One wrk run; each run gets its own slice of the payers (see ussd_mix.lua)."""
    global _runs
    payers = users // RUNS_PER_SLICE
    first = (_runs % RUNS_PER_SLICE) * payers
    _runs += 1
    out = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            os.path.join(ROOT, "bench", "ussd_mix.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            str(users),
            PIN,
            str(int(delay_ms)),
            str(time.time_ns()),
            str(first),
            str(payers),
            str(hops),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("JSON "))
    result = json.loads(line[5:])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def populate(users: int) -> None:
    """Customers +254710000000... with one shared PIN hash, KES 50,000 each: under the basic
    tier's balance limit, so sends are not refused by it."""
    from bench.population import customers
    from ussd_app.extensions import db
    from ussd_app.pins import hash_pin

    customers(db.session, users, balance=5_000_000, pin_hash=hash_pin(PIN))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--users", type=int, default=24_000)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--menus-only",
        action="store_true",
        help="only the bare route and the menu hops (no PIN mix, no end to end): a quick A/B of the ratio",
    )
    args = parser.parse_args()

    STEPS.now("setup")
    db_url = fresh_database(DATABASE)
    env = dict(
        os.environ,
        DATABASE_URL=db_url,
        REDIS_URL=REDIS,
        AT_API_URL=f"http://127.0.0.1:{GATEWAY_PORT}",
        AT_API_KEY="bench",
        PIN_PEPPER="bench-pepper",
    )
    os.environ.update(env)
    import flask_migrate
    from redis import Redis
    from rq import Worker
    from sqlalchemy import func, select

    from ussd_app import create_app
    from ussd_app.extensions import db
    from ussd_app.ledger.check import check
    from ussd_app.payments.models import TransferRequest
    from ussd_app.queues import get_redis
    from ussd_app.sms.outbox import OutboxMessage

    app = create_app()
    redis = Redis.from_url(REDIS)
    procs = []
    worker = None
    results = {}
    try:
        with app.app_context():
            get_redis().flushdb()
            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            populate(args.users)
            if not args.menus_only:  # before any load: the last payers' conversations, in process
                results["pin_hop_in_process"] = pin_hop_in_process(app, args.users)
        STEPS.now("start-ups")
        gunicorn = ["-m", "gunicorn", "-w", "2", "--log-level", "warning"]
        procs.append(spawn(["-m", "devtools.gateway", "--port", str(GATEWAY_PORT)], ROOT, env))
        web = spawn([*gunicorn, "-b", f"127.0.0.1:{APP_PORT}", "wsgi:app"], ROOT, env)
        procs.append(web)
        bare = spawn([*gunicorn, "-b", f"127.0.0.1:{BARE_PORT}", "bench.bare_app:app"], ROOT, env)
        procs.append(bare)
        floor = spawn([*gunicorn, "-b", f"127.0.0.1:{FLOOR_PORT}", "bench.floor_app:app"], ROOT, env)
        procs.append(floor)
        # The worker starts beside the servers (it used to start once they listened): nothing is
        # asked of it before the warm-ups, and it is registered before they begin.
        worker = spawn(["-m", "worker", "--no-cron"], ROOT, env)
        masters = {APP_PORT: web.pid, BARE_PORT: bare.pid, FLOOR_PORT: floor.pid}
        for port in (GATEWAY_PORT, APP_PORT, BARE_PORT, FLOOR_PORT):
            wait_http(port)
        deadline = time.monotonic() + 30
        while len(Worker.all(connection=redis)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)

        STEPS.now("warm-ups")
        for port in (APP_PORT, BARE_PORT, FLOOR_PORT):  # warm up each
            wrk(port, 2, args.users)
        STEPS.now("measured")
        # The app with the PIN hop first: menu hops only (conversations that stop at the
        # confirm screen) leave resume snapshots behind, which would change the first hops of
        # later runs from the same phones. Then rounds of the bare route, the floor and the
        # menu hops one after the other, so that each round's ratios compare runs made a few
        # seconds apart: the machine's drift over a minute (other processes, CPU steal) is
        # larger than the differences measured (as the ledger's runs beside pgbench's).
        saturated = {name: dict(rps=[], requests=0, cpu=0.0) for name in ("ussd", "bare", "floor", "menu")}

        def saturate(name: str, port: int, hops: int) -> float:
            workers = children(masters[port])
            before = cpu_seconds(workers)
            out = wrk(port, args.seconds, args.users, hops=hops)
            row = saturated[name]
            row["rps"].append(out["rps"])
            row["requests"] += out["requests"]
            # CPU of the server's own workers per request: what the machine's load changes
            # less than the rate.
            row["cpu"] += cpu_seconds(workers) - before
            return out["rps"]

        def summarise(name: str) -> None:
            row = saturated[name]
            results[name] = dict(
                median=statistics.median(row["rps"]),
                min=min(row["rps"]),
                max=max(row["rps"]),
                cpu_ms=row["cpu"] * 1000 / max(1, row["requests"]),
            )

        def paced(name: str, port: int, hops: int) -> None:
            rate = 0.8 * results[name]["median"]
            delay_ms = CONNECTIONS / rate * 1000
            started = datetime.now(UTC).replace(tzinfo=None)
            out = wrk(port, args.seconds, args.users, delay_ms, hops=hops)
            results[name].update(
                p50_ms=out["p50_us"] / 1000,
                p99_ms=out["p99_us"] / 1000,
                paced_rps=out["rps"],
                errors=out["errors"] + out["non2xx"],
            )
            if name == "ussd":
                with STEPS("checks"):  # the transfers of the 80% run posted and their receipts handed over
                    results["e2e"] = end_to_end(
                        app, started, TransferRequest, OutboxMessage, func, select, db
                    )

        if not args.menus_only:
            for _ in range(args.runs):
                saturate("ussd", APP_PORT, 6)
            summarise("ussd")
            paced("ussd", APP_PORT, 6)
        ratios = dict(menu_bare=[], menu_floor=[], floor_bare=[])
        for _ in range(args.runs):
            bare_rps = saturate("bare", BARE_PORT, 6)
            floor_rps = saturate("floor", FLOOR_PORT, 6)
            menu_rps = saturate("menu", APP_PORT, 5)
            ratios["menu_bare"].append(menu_rps / bare_rps)
            ratios["menu_floor"].append(menu_rps / floor_rps)
            ratios["floor_bare"].append(floor_rps / bare_rps)
        results["ratios"] = {
            key: dict(median=statistics.median(v), min=min(v), max=max(v)) for key, v in ratios.items()
        }
        for name, port, hops in (("bare", BARE_PORT, 6), ("floor", FLOOR_PORT, 6), ("menu", APP_PORT, 5)):
            summarise(name)
            paced(name, port, hops)
        if not args.menus_only:
            with app.app_context():
                results["pin_hop"] = pin_hop(results["ussd"]["cpu_ms"], results["menu"]["cpu_ms"])
            results["pin_hop"]["in_process"] = results.pop("pin_hop_in_process")
        # Peak memory, read before the processes stop: the larger of the app's two gunicorn
        # workers, and the worker that executed the transfers and sent their receipts.
        results["peak_rss_mib"] = dict(
            web_worker=max((peak_rss_mib(pid) for pid in children(web.pid)), default=float("nan")),
            worker=peak_rss_mib(worker.pid),
        )
        STEPS.now("checks")
        with app.app_context():
            findings = check(db.session)
            results["ledger_check"] = all(f.ok for f in findings)
            results["requests_recorded"] = db.session.execute(
                select(func.count()).select_from(TransferRequest)
            ).scalar_one()
            results["requests_by_status"] = dict(
                db.session.execute(
                    select(TransferRequest.status, func.count()).group_by(TransferRequest.status)
                ).all()
            )
            results["sms_by_status"] = dict(
                db.session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                ).all()
            )
    finally:
        STEPS.now("start-ups")
        # Their work done and checked: ended at once (bench/common.py's kill_idle).
        kill_idle([worker] if worker else [], redis)
        kill_idle(procs)
        STEPS.now("setup")
        with app.app_context():
            db.engine.dispose()
        psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        STEPS.now("other")
    results["minutes_per_step"] = STEPS.minutes()

    print(table(results, args))
    print(f"Minutes per step: {minutes_line(results['minutes_per_step'])}.")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    # A run whose transfers were all refused (a limit, a rule) measured refusals, not payments.
    accepted = results["requests_by_status"].get("accepted", 0)
    if args.menus_only:  # no transfer was meant to post; the ledger must still check
        return 0 if results["ledger_check"] else 1
    if not accepted:
        print(f"no transfer was posted ({results['requests_by_status']}): this run measured nothing")
    return 0 if results["ledger_check"] and accepted else 1


def cpu(row: dict, bare: dict) -> str:
    """The gunicorn workers' CPU per hop, and the bare route's ÷ it."""
    ms, base = row.get("cpu_ms", float("nan")), bare.get("cpu_ms", float("nan"))
    return f"{ms:.2f} ({base / ms:.2f})" if ms else "-"


def table(results: dict, args) -> str:
    nan = float("nan")
    skipped = dict(median=nan, min=nan, max=nan, p50_ms=nan, p99_ms=nan)
    u, b, m = results.get("ussd", skipped), results["bare"], results["menu"]
    f = results.get("floor", skipped)
    r = results.get("ratios") or {}
    e = results.get("e2e") or dict(
        count=0, **{f"{k}{p}_ms": nan for k in ("", "posted_", "sms_") for p in ("p50", "p99")}
    )

    def paired(key: str) -> str:
        """A ratio of the rounds' runs: the median of the rounds (min–max)."""
        x = r.get(key)
        return f"{x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f})" if x else "-"

    def rate(x: dict) -> str:
        return f"{x['median']:.0f} ({x['min']:.0f}–{x['max']:.0f}) | {x['p50_ms']:.1f} / {x['p99_ms']:.1f} ms"

    lines = [
        f"USSD: gunicorn, 2 sync workers, PostgreSQL + Redis, wrk -t{THREADS} -c{CONNECTIONS} over loopback; conversations of "
        f"first hop, 4 menu hops and a final confirm with PIN from {args.users:,} phones; median (min–max) of {args.runs} "
        f"runs of {args.seconds} s; latency at 80% of the median saturation rate. The bare route, the floor and the menu "
        f"hops run in {args.runs} rounds, one after the other; their ratios are the median (min–max) of the rounds' ratios. "
        "The floor (bench/floor_app.py): Flask, the form read, a JSON log line and the two Redis round trips any hop "
        "with a locked session needs (lock and read, write and release), a fixed screen: what no menu hop can beat.",
        "",
        "| target | hops/s at saturation | p50 / p99 at 80% | ratio to bare | ratio to the floor | workers' CPU ms a hop (ratio to bare) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| USSD hop, real app | {rate(u)} | {u['median'] / b['median']:.2f} | {u['median'] / f['median']:.2f} | {cpu(u, b)} |",
        f"| menu hops only (no PIN hop) | {rate(m)} | {paired('menu_bare')} | {paired('menu_floor')} | {cpu(m, b)} |",
        f"| the floor: two Redis round trips, fixed CON | {rate(f)} | {paired('floor_bare')} | 1.00 | {cpu(f, b)} |",
        f"| bare Flask route, fixed CON | {rate(b)} | 1.00 | | {cpu(b, b)} |",
        "",
        f"End to end, final confirm → receipts handed to the local SMS gateway, 1 worker, during the 80% run: "
        f"{e['count']} transfers, p50 {e['p50_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms "
        f"(confirm → posted p50 {e['posted_p50_ms']:.0f} / p99 {e['posted_p99_ms']:.0f} ms; "
        f"posted → receipts handed over p50 {e['sms_p50_ms']:.0f} / p99 {e['sms_p99_ms']:.0f} ms).",
        f"Requests by status: {results['requests_by_status']}; SMS by status: {results['sms_by_status']}; "
        f"ledger check {'passed' if results['ledger_check'] else 'FAILED'}.",
    ]
    pin = results.get("pin_hop")
    if pin:
        direct = pin["in_process"]
        lines.append(
            f"The PIN hop (final confirm: the PIN checked, the transfer recorded and queued), its CPU in "
            f"process (the app's test client, before the load; median of {direct['conversations']}): "
            f"{direct['hop_ms']:.1f} ms, of which argon2id {direct['argon2_ms']:.1f} ms: "
            f"**argon2 + {direct['beyond_ms']:.1f} ms**. Under load, from the saturation runs (a "
            f"conversation's six hops less the five of one that stops at the confirm screen, the "
            f"workers' CPU): {pin['hop_ms']:.1f} ms, argon2 + {pin['beyond_ms']:.1f} ms (a difference of "
            f"two large figures: ±1–2 ms between runs)."
        )
        if "wsgi_hop_ms" in direct:
            lines.append(
                f"The same PIN hop without the test client (`app.wsgi_app` called with an environ shaped "
                f"as gunicorn's, alternated with the above; median of {direct['conversations']}): "
                f"{direct['wsgi_hop_ms']:.1f} ms, argon2 + {direct['wsgi_beyond_ms']:.1f} ms. The test "
                f"client's own cost a hop (the bare Flask route, median of {direct['bare_calls']} each way, "
                f"alternated): {direct['bare_client_ms']:.2f} ms through the test client, "
                f"{direct['bare_wsgi_ms']:.2f} ms by a direct WSGI call: "
                f"+{direct['client_cost_ms']:.2f} ms."
            )
        if "stubbed_hop_ms" in direct:
            lines.append(
                f"What of it is argon2's beyond its check: the same PIN hop (direct WSGI) with argon2's "
                f"verify answering at once, {direct['stubbed_hop_ms']:.1f} ms; a menu hop (a new "
                f"session's first screen) right after an argon2 check {direct['dial_after_argon2_ms']:.2f} ms, "
                f"right after another menu hop {direct['dial_after_hop_ms']:.2f} ms "
                f"(+{direct['dial_after_argon2_ms'] - direct['dial_after_hop_ms']:.2f} ms: argon2id's 19 MiB "
                f"leave the CPU's caches cold for what runs next). Medians of {direct['conversations']}."
            )
        if "menu_waits" in direct:
            lines.append(
                f"Waits (the thread's voluntary context switches: answers awaited from PostgreSQL or "
                f"Redis) and CPU a hop, in process (direct WSGI), the conversation's five menu hops against "
                f"the floor's hop alternated with them (means of {5 * direct['conversations']} each): menu "
                f"hops {direct['menu_waits']:.2f} waits, {direct['menu_cpu_ms']:.2f} ms; the floor "
                f"{direct['floor_waits']:.2f} waits, {direct['floor_cpu_ms']:.2f} ms (a round trip costs "
                f"this machine about a bare hop of CPU: bench/analysis.md)."
            )
    rss = results.get("peak_rss_mib")
    if rss:
        lines.append(
            f"Memory (peak RSS, VmHWM, over all the runs above): a web worker (gunicorn sync, the larger "
            f"of 2) {rss['web_worker']:.0f} MiB; the transfer and SMS worker {rss['worker']:.0f} MiB."
        )
    return "\n".join(lines)


def pin_hop(conversation_hop_ms: float, menu_hop_ms: float, checks: int = 30) -> dict:
    """What the PIN hop costs the web workers beyond its argon2id check, in CPU ms (the issue's
    target: argon2 + at most 3 ms). A whole conversation (six hops) less one that stops at the
    confirm screen (the same first five) is the PIN hop's CPU, from the saturation runs' CPU
    per hop; argon2's is the median CPU of ``checks`` right-PIN checks in this process
    (``verify_pin``, the hasher and pepper the app uses), on the same machine in the same run."""
    from ussd_app.pins import hash_pin, verify_pin

    stored = hash_pin(PIN)
    spans = []
    for _ in range(checks):
        began = time.thread_time()
        assert verify_pin(stored, PIN)
        spans.append((time.thread_time() - began) * 1000)
    argon2_ms = statistics.median(spans)
    hop_ms = 6 * conversation_hop_ms - 5 * menu_hop_ms
    return dict(hop_ms=hop_ms, argon2_ms=argon2_ms, beyond_ms=hop_ms - argon2_ms)


def pin_hop_in_process(app, users: int, conversations: int = 30, bare_calls: int = 300) -> dict:
    """The PIN hop's own CPU, measured directly: in this process, through the app's test client
    (this app: the server's configuration, databases and Redis), ``conversations`` from the
    last payers (the wrk runs' slices come later and these end, leaving nothing to resume) are
    walked to the confirm screen and the PIN hop's thread CPU is read; argon2id's alone beside
    it (``verify_pin``, as many times). Medians, in ms: the figure the issue's "argon2 + 3 ms"
    is judged on; ``pin_hop``'s difference of the saturation runs is its cross-check under load.

    Beside it (``wsgi_*``), as many conversations from the payers before those, alternated
    with them, driven through ``app.wsgi_app`` with an environ shaped as gunicorn's
    (``ussd_hop_costs.wsgi_hop``: no test client); and what the test client itself adds to a
    hop: bench/bare_app.py's fixed screen ``bare_calls`` times each way, alternated, through
    the test client (``bare_client_ms``) and by a direct WSGI call (``bare_wsgi_ms``)."""
    from bench.bare_app import app as bare
    from bench.ussd_hop_costs import hop, production_logging, wsgi_hop
    from ussd_app.pins import hash_pin, verify_pin

    production_logging()  # a hop's INFO line made and written, as a gunicorn worker's is
    client = app.test_client()
    by_client = lambda *args: hop(client, *args)  # noqa: E731
    by_wsgi = lambda *args: wsgi_hop(app, *args)  # noqa: E731
    hops, wsgi_hops, argon2 = [], [], []
    with app.app_context():
        stored = hash_pin(PIN)
    for i in range(2 * conversations):
        driven, spans = (by_client, hops) if i % 2 == 0 else (by_wsgi, wsgi_hops)
        payer = users - 1 - i // 2 - (0 if i % 2 == 0 else conversations)
        payee = (payer * 7 + 1) % users
        if payee == payer:
            payee = (payer + 1) % users
        session_id, phone, to = f"pin-hop-{i}-{time.time_ns()}", f"+254710{payer:06d}", f"0710{payee:06d}"
        for text in ("", "1", f"1*{to}", f"1*{to}*50", f"1*{to}*50*1"):
            driven(session_id, phone, text)
        began = time.thread_time()
        body = driven(session_id, phone, f"1*{to}*50*1*{PIN}")
        spans.append((time.thread_time() - began) * 1000)
        assert body.startswith("END Sending"), body  # the request recorded: the hop measured
        if i % 2 == 0:
            with app.app_context():
                began = time.thread_time()
                assert verify_pin(stored, PIN)
                argon2.append((time.thread_time() - began) * 1000)
    stubbed, after_argon2, after_hop, waits = _argon2_apart(
        app, users, users - 1 - 2 * conversations, conversations, stored
    )
    bare_client, bare_wsgi = bare.test_client(), []
    bare_spans: list[float] = []
    for i in range(2 * bare_calls + 2):  # the first of each way: a warm-up
        began = time.thread_time()
        if i % 2 == 0:
            hop(bare_client, f"bare-{i}", "+254710000001", "")
        else:
            wsgi_hop(bare, f"bare-{i}", "+254710000001", "")
        (bare_spans if i % 2 == 0 else bare_wsgi).append((time.thread_time() - began) * 1000)
    hop_ms, argon2_ms, wsgi_ms = (
        statistics.median(hops),
        statistics.median(argon2),
        statistics.median(wsgi_hops),
    )
    bare_client_ms, bare_wsgi_ms = statistics.median(bare_spans[1:]), statistics.median(bare_wsgi[1:])
    return dict(
        hop_ms=hop_ms,
        argon2_ms=argon2_ms,
        beyond_ms=hop_ms - argon2_ms,
        conversations=conversations,
        wsgi_hop_ms=wsgi_ms,
        wsgi_beyond_ms=wsgi_ms - argon2_ms,
        bare_client_ms=bare_client_ms,
        bare_wsgi_ms=bare_wsgi_ms,
        client_cost_ms=bare_client_ms - bare_wsgi_ms,
        bare_calls=bare_calls,
        stubbed_hop_ms=statistics.median(stubbed),
        menu_waits=statistics.mean(w for w, _ in waits["menu"]),
        menu_cpu_ms=statistics.mean(c for _, c in waits["menu"]),
        floor_waits=statistics.mean(w for w, _ in waits["floor"]),
        floor_cpu_ms=statistics.mean(c for _, c in waits["floor"]),
        dial_after_argon2_ms=statistics.median(after_argon2),
        dial_after_hop_ms=statistics.median(after_hop),
    )


def _waited() -> tuple[int, float]:
    """This thread's voluntary context switches and CPU seconds."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw, time.thread_time()


def _since(before: tuple[int, float]) -> tuple[int, float]:
    switches, cpu = _waited()
    return switches - before[0], (cpu - before[1]) * 1000


class _AtOnce:
    """argon2's hasher, but its ``verify`` answers yes at once (the bench's right PIN only)."""

    def __init__(self, hasher):
        self._hasher = hasher

    def __getattr__(self, name):
        return getattr(self._hasher, name)

    def verify(self, pin_hash, password) -> bool:
        return True


def _argon2_apart(app, users: int, last_payer: int, conversations: int, stored: str):
    """What of a PIN hop is argon2's beyond its own check: (1) the PIN hop with argon2's
    ``verify`` answering at once (``_AtOnce``; driven through ``app.wsgi_app`` as the
    ``wsgi_*`` hops, from the payers before theirs); (2) a menu hop (a new session's first
    screen) right after an argon2 check, alternated with the same hop right after another
    menu hop: argon2id touches its 19 MiB, and whatever runs next finds the CPU's caches
    holding that instead of the interpreter's working set. Each a list of CPU ms. And (3)
    ``waits``: per hop, (waits, CPU ms) of these conversations' menu hops and of the floor's
    hop alternated with them, a wait being a voluntary context switch of this thread (an
    answer awaited from PostgreSQL or Redis)."""
    from bench.floor_app import app as floor
    from bench.ussd_hop_costs import wsgi_hop
    from ussd_app import pins

    stubbed, after_argon2, after_hop = [], [], []
    waits: dict[str, list[tuple[int, float]]] = {"menu": [], "floor": []}
    for i in range(conversations):
        payer = last_payer - i
        payee = (payer * 7 + 1) % users
        if payee == payer:
            payee = (payer + 1) % users
        session_id, phone, to = f"pin-stub-{i}-{time.time_ns()}", f"+254710{payer:06d}", f"0710{payee:06d}"
        for text in ("", "1", f"1*{to}", f"1*{to}*50", f"1*{to}*50*1"):
            before = _waited()
            wsgi_hop(app, session_id, phone, text)
            waits["menu"].append(_since(before))
            before = _waited()
            wsgi_hop(floor, session_id, phone, "")
            waits["floor"].append(_since(before))
        real, pins._hasher = pins._hasher, _AtOnce(pins._hasher)
        try:
            began = time.thread_time()
            body = wsgi_hop(app, session_id, phone, f"1*{to}*50*1*{PIN}")
            stubbed.append((time.thread_time() - began) * 1000)
        finally:
            pins._hasher = real
        assert body.startswith("END Sending"), body
        for spans, before in ((after_argon2, True), (after_hop, False)):
            wsgi_hop(app, f"warm-{i}-{before}-{time.time_ns()}", phone, "")
            if before:
                with app.app_context():
                    pins.verify_pin(stored, PIN)
            began = time.thread_time()
            wsgi_hop(app, f"dial-{i}-{before}-{time.time_ns()}", phone, "")
            spans.append((time.thread_time() - began) * 1000)
    return stubbed, after_argon2, after_hop, waits


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a gunicorn master's workers), from /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident set (``VmHWM``) in MiB; NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def end_to_end(app, since, TransferRequest, OutboxMessage, func, select, db) -> dict:
    """Final confirm (request recorded) to the last of its receipts handed to the gateway."""
    with app.app_context():
        session = db.session
        deadline = time.monotonic() + 60
        pending = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
        queued = select(func.count()).select_from(TransferRequest).where(TransferRequest.status == "queued")
        while (
            session.execute(pending).scalar_one() or session.execute(queued).scalar_one()
        ) and time.monotonic() < deadline:
            session.rollback()
            time.sleep(0.1)
        rows = session.execute(
            select(TransferRequest.created_at, TransferRequest.executed_at, func.max(OutboxMessage.sent_at))
            .join(OutboxMessage, OutboxMessage.transfer_request_id == TransferRequest.id)
            .where(TransferRequest.created_at >= since, OutboxMessage.sent_at.is_not(None))
            .group_by(TransferRequest.id, TransferRequest.created_at, TransferRequest.executed_at)
        ).all()
        session.rollback()
    if not rows:
        nan = float("nan")
        return dict(count=0, **{f"{k}{p}_ms": nan for k in ("", "posted_", "sms_") for p in ("p50", "p99")})

    def centiles(key: str, spans: list[float]) -> dict:
        spans = sorted(spans)
        pick = lambda q: spans[min(len(spans) - 1, int(len(spans) * q))]  # noqa: E731
        return {f"{key}p50_ms": pick(0.5), f"{key}p99_ms": pick(0.99)}

    ms = lambda a, b: (b - a).total_seconds() * 1000  # noqa: E731
    return dict(
        count=len(rows),
        **centiles("", [ms(created, sent) for created, _, sent in rows]),
        **centiles("posted_", [ms(created, executed) for created, executed, _ in rows]),
        **centiles("sms_", [ms(executed, sent) for _, executed, sent in rows]),
    )


if __name__ == "__main__":
    sys.exit(main())
