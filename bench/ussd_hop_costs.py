"""What one USSD hop costs, counted rather than timed: SQL statements, round trips to the
database (statements, pre-pings, BEGIN and COMMIT), connection check-outs, Redis round trips
and commands, and Python function calls, per kind of hop. A menu hop's reads
(``ussd_app/reads.py``, their own engine) are counted with the session's.

    REDIS_URL=redis://127.0.0.1:6379/11 python bench/ussd_hop_costs.py [--conversations 30] [--pin]

Counts do not depend on what else the machine is doing (timings on a shared machine do), so
they say whether a change made a hop cheaper. The app runs as in production (not TESTING: JSON
logs at INFO, metrics, tracing; the log lines go to /dev/null), driven in process by Flask's
test client through ``POST /ussd`` with the webhook rate limit on, against the database and
Redis named. It scripts the conversation of bench/ussd_mix.lua (first hop, "1", the
recipient, the amount, "1" to the PIN screen; ``--pin`` adds the PIN hop) and a pure menu walk
(first hop, then "2" My account and "0" back, twice), each from fresh numbers, once with the
caller's facts cached in the session (``USSD_CALLER_CACHE``, the default) and once without
(every hop reads the caller from the database, as before): the baseline in the same run.

With ``--callgrind N``, run under callgrind, it counts instructions per hop instead:

    valgrind --tool=callgrind --collect-atstart=yes python bench/ussd_hop_costs.py --callgrind 40

(the counters are zeroed before the hops and dumped after them, so start-up is not counted).

It makes a fresh PostgreSQL database of its own, ``tuma_bench_hop_costs`` (dropped and made
again each run, like the other benches' ``tuma_bench_*``), with the bench's customers
(+254710000000 upwards), and flushes the Redis database of ``REDIS_URL`` (BENCH_REDIS, db 11,
by default).
"""

import argparse
import cProfile
import io
import logging
import os
import pstats
import resource
import statistics
import sys
import time
from collections import defaultdict
from urllib.parse import urlencode
from wsgiref.util import FileWrapper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PIN = "2580"
DATABASE = os.environ.get(
    "BENCH_HOP_COSTS_DATABASE", "tuma_bench_hop_costs"
)  # another name: runs side by side
MIX = ("first", "menu: Send money", "recipient", "amount", "confirm -> PIN screen")
WALK = ("first", "menu: My account", "menu: 0 back", "menu: My account", "menu: 0 back")


class Counts:
    """Counters the hooks below add to; ``take`` reads and zeroes them."""

    def __init__(self):
        self.sql = self.trips = self.checkouts = self.redis_trips = self.redis_commands = 0

    def take(self) -> dict:
        out = dict(
            sql=self.sql,
            trips=self.trips,
            checkouts=self.checkouts,
            redis_trips=self.redis_trips,
            redis_cmds=self.redis_commands,
        )
        self.__init__()
        return out


def instrument(engine, counts: Counts, *, autocommit: bool = False, redis: bool = True) -> None:
    """Count ``engine``'s statements, check-outs and round trips to the database: each
    statement, each pre-ping, and (unless the engine is in autocommit mode, ``reads.py``) the
    BEGIN psycopg sends before a transaction's first statement and the COMMIT or ROLLBACK
    that ends a transaction that sent one."""
    from redis import connection
    from sqlalchemy import event

    began: set[int] = set()  # connections whose transaction has sent its BEGIN

    @event.listens_for(engine, "before_cursor_execute")
    def _sql(conn, *_args, **_kw):
        counts.sql += 1
        counts.trips += 1
        if not autocommit and conn.in_transaction() and id(conn) not in began:
            began.add(id(conn))
            counts.trips += 1  # BEGIN

    def _end(conn, *_args):
        if id(conn) in began:
            began.discard(id(conn))
            counts.trips += 1  # COMMIT or ROLLBACK

    event.listen(engine, "commit", _end)
    event.listen(engine, "rollback", _end)

    @event.listens_for(engine.pool, "checkout")
    def _checkout(*_args, **_kw):
        counts.checkouts += 1

    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection):
        counts.trips += 1  # the pool's pre-ping
        return ping(dbapi_connection)

    engine.dialect.do_ping = do_ping
    if not redis:
        return

    send = connection.AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        counts.redis_trips += 1  # one write of one or many commands, then their replies
        return send(self, command, check_health)

    connection.AbstractConnection.send_packed_command = send_packed_command
    for serializer in (connection.PythonRespSerializer, connection.HiredisRespSerializer):

        def pack(self, *args, _pack=serializer.pack):
            counts.redis_commands += 1  # MULTI and EXEC of a transaction count too
            return _pack(self, *args)

        serializer.pack = pack


def hop(client, session_id: str, phone: str, text: str) -> str:
    response = client.post(
        "/ussd",
        data={
            "sessionId": session_id,
            "serviceCode": "*384*7#",
            "phoneNumber": phone,
            "networkCode": "63902",
            "text": text,
        },
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.startswith(("CON ", "END ")), body
    assert not body.startswith("END Sorry"), body  # a failed hop measures nothing
    return body


def gunicorn_environ(path: str, body: bytes) -> dict:
    """A WSGI environ for ``POST path`` shaped as a gunicorn 27 sync worker builds it
    (``gunicorn.http.wsgi.create``: its keys, the request's headers as HTTP_*, the body a
    file to read), for calling an app's ``wsgi_app`` without Flask's test client."""
    return {
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "SERVER_SOFTWARE": "gunicorn/27.0.1",
        "REQUEST_METHOD": "POST",
        "QUERY_STRING": "",
        "RAW_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "Africa's Talking",
        "HTTP_ACCEPT": "*/*",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
    }


def wsgi_hop(app, session_id: str, phone: str, text: str) -> str:
    """``hop`` without the test client: the same form through ``app.wsgi_app`` with a
    gunicorn-shaped environ, the response iterated and closed as gunicorn does."""
    form = {"sessionId": session_id, "serviceCode": "*384*7#", "phoneNumber": phone, "networkCode": "63902"}
    body = urlencode({**form, "text": text}).encode()
    status = []
    response = app.wsgi_app(gunicorn_environ("/ussd", body), lambda s, _headers, _exc=None: status.append(s))
    try:
        answer = b"".join(response).decode()
    finally:
        if hasattr(response, "close"):
            response.close()
    assert status == ["200 OK"] and answer.startswith(("CON ", "END ")), (status, answer)
    assert not answer.startswith("END Sorry"), answer  # a failed hop measures nothing
    return answer


def conversation(kind: str, payer: int, payee: int, pin: bool) -> list[tuple[str, str]]:
    """(label, text) of each hop."""
    if kind == "walk":
        texts = ["", "2", "2*0", "2*0*2", "2*0*2*0"]
        return list(zip(WALK, texts, strict=True))
    r = f"0710{payee:06d}"
    texts = ["", "1", f"1*{r}", f"1*{r}*50", f"1*{r}*50*1"]
    labels = list(MIX)
    if pin:
        texts.append(f"1*{r}*50*1*{PIN}")
        labels.append("PIN -> request recorded")
    return list(zip(labels, texts, strict=True))


def measure(app, counts: Counts, kind: str, first_payer: int, n: int, users: int, pin: bool, profile: bool):
    """{label: [per-hop dicts]} over ``n`` conversations from payers first_payer.. (fresh ones)."""
    client = app.test_client()
    found = defaultdict(list)
    for i in range(n):
        payer = first_payer + i
        payee = (payer * 7 + 1) % users
        if payee == payer:
            payee = (payer + 1) % users
        session_id = f"costs-{kind}-{first_payer}-{i}-{time.time_ns()}"
        body = ""
        for label, text in conversation(kind, payer, payee, pin):
            counts.take()
            profiler = cProfile.Profile() if profile else None
            before = _thread_usage()
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            body = hop(client, session_id, f"+254710{payer:06d}", text)
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - started
            row = counts.take()
            row["us"] = elapsed * 1e6
            row.update(_usage_since(before))
            if profiler:
                row["calls"] = pstats.Stats(profiler).total_calls
            found[label].append(row)
        # The conversation went where it should: a count of something else measures nothing.
        if kind == "mix":
            assert body.startswith("END Sending" if pin else "CON Enter your PIN"), body
        else:
            assert body.startswith("CON Tuma\n1. Send money"), body
    return found


BARE, FLOOR = "bare Flask route, fixed CON", "the floor: two Redis round trips, fixed CON"


def bare_route(counts: Counts, n: int, profile: bool, baseline=None, label: str = BARE) -> dict:
    """The same counts for bench/bare_app.py's fixed CON screen through its own test client:
    what Flask, Werkzeug and the test client cost by themselves (or for ``baseline``, an
    app of the same shape: bench/floor_app.py)."""
    client = (baseline or bare_app()).test_client()
    found = defaultdict(list)
    for i in range(n + 1):
        counts.take()
        profiler = cProfile.Profile() if profile else None
        before = _thread_usage()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        hop(client, f"bare-{i}", "+254710000001", "")
        if profiler:
            profiler.disable()
        row = counts.take()
        row["us"] = (time.perf_counter() - started) * 1e6
        row.update(_usage_since(before))
        if profiler:
            row["calls"] = pstats.Stats(profiler).total_calls
        if i:  # the first is the warm-up
            found[label].append(row)
    return summary(found)[label]


def bare_app():
    from bench.bare_app import app as bare

    return bare


def floor_app():
    from bench.floor_app import app as floor

    return floor


def callgrind(app, bare, n: int, modes: list[str], pin: bool) -> int:
    """Instructions per hop, counted by callgrind (this process must run under it): the
    counters are zeroed before ``n`` hops and dumped after them (``callgrind_control``), so
    start-up is not counted. Pure menu hops ("2" My account, "0" back, in one session) with
    the cache off and on, the bench's menu mix, with ``--pin`` the PIN hop and argon2 alone,
    and the bare route's fixed screen. Instruction counts do not change with the machine's
    load."""
    import glob
    import subprocess

    pid = str(os.getpid())

    def section(label: str, run) -> float:
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        run()
        subprocess.run(["callgrind_control", "-d", label, pid], check=True, capture_output=True)
        dump = max(glob.glob(f"callgrind.out.{pid}.*"), key=os.path.getmtime)
        with open(dump) as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(("totals:", "summary:")))

    def menu_hops(client, session_id: str, phone: str):
        def run():
            text = "2*0" * 1
            for i in range(n):
                text += "*2" if i % 2 == 0 else "*0"
                hop(client, session_id, phone, text)

        hop(client, session_id, phone, "")
        hop(client, session_id, phone, "2")
        hop(client, session_id, phone, "2*0")
        return run

    found = {}
    for k, mode in enumerate(modes):
        app.config["USSD_CALLER_CACHE"] = mode == "on"
        found[f"menu hop, cache {mode}"] = (
            section(
                f"menu-{mode}",
                menu_hops(app.test_client(), f"cg-{mode}-{time.time_ns()}", f"+25471000{1900 + k}"),
            )
            / n
        )
        conversations = max(1, n // len(MIX))
        mix = f"mix hop (first, Send money, recipient, amount, confirm), cache {mode}"
        without_pin = section(
            f"mix-{mode}",
            lambda first=1000 + 100 * k, many=conversations: measure(
                app, Counts(), "mix", first, many, 2_000, False, False
            ),
        )
        found[mix] = without_pin / (conversations * len(MIX))
        if pin:  # the same conversations with the PIN hop: the difference is the PIN hop
            with_pin = section(
                f"pin-{mode}",
                lambda first=1500 + 100 * k, many=conversations: measure(
                    app, Counts(), "mix", first, many, 2_000, True, False
                ),
            )
            found[f"PIN hop (send money recorded), cache {mode}"] = (with_pin - without_pin) / conversations
    if pin:
        from ussd_app.pins import hash_pin, verify_pin

        hashed = hash_pin(PIN)
        found["of which argon2id (one verify_pin)"] = (
            section("argon2", lambda: [verify_pin(hashed, PIN) for _ in range(conversations)]) / conversations
        )
    client = bare.test_client()
    hop(client, "bare", "+254710000001", "")
    found[BARE] = section("bare", lambda: [hop(client, "bare", "+254710000001", "") for _ in range(n)]) / n
    client = floor_app().test_client()
    hop(client, "floor", "+254710000001", "")
    found[FLOOR] = section("floor", lambda: [hop(client, "floor", "+254710000001", "") for _ in range(n)]) / n
    print(f"Instructions per hop (callgrind, {n} hops each, start-up not counted):")
    for label, per_hop in found.items():
        print(f"| {label} | {per_hop:,.0f} |")
    return 0


def production_logging() -> None:
    """Root at INFO writing JSON lines (to /dev/null), as a gunicorn worker logs. Alembic's
    ``fileConfig`` (migrations/alembic.ini, run by the upgrade) replaces the root's handlers
    and sets it to WARN: until this was called after it, the per-hop INFO line (record,
    JSON formatter, write) was never made, and the counts left it out."""
    from ussd_app import logging_setup

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.FileHandler(os.devnull))
    root.setLevel(logging.NOTSET)
    logging_setup.configure()


def _thread_usage() -> tuple[int, float]:
    """This thread's voluntary context switches (each a wait for an answer from another
    process: a round trip to PostgreSQL or Redis) and its CPU seconds, user and system."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_nvcsw, time.thread_time()


def _usage_since(before: tuple[int, float]) -> dict:
    switches, cpu = _thread_usage()
    return {"waits": switches - before[0], "cpu_us": (cpu - before[1]) * 1e6}


def round_trip_cpu(app, n: int = 2_000) -> dict:
    """What one round trip costs this process's CPU (user and system: the send, the wait, the
    wake-up), median µs of ``n``: Redis's PING and PostgreSQL's ``SELECT 1`` on a pooled
    connection of the app's engine (its driver, no SQLAlchemy). On a machine where a switch
    between processes is dear (a nested virtual machine), this, not Python, is most of a hop."""
    from ussd_app.extensions import db

    def median_cpu(call) -> float:
        call()
        spans = []
        for _ in range(n):
            began = time.thread_time()
            call()
            spans.append((time.thread_time() - began) * 1e6)
        return statistics.median(spans)

    with app.app_context():
        redis_client = app.extensions["redis"]
        raw = db.engine.raw_connection()
        try:
            driver = raw.driver_connection
            if db.engine.dialect.name == "postgresql":
                driver.autocommit = True
                postgres = median_cpu(lambda: driver.execute("SELECT 1").fetchone())
                driver.autocommit = False
            else:
                postgres = float("nan")
        finally:
            raw.close()
        return {"redis": median_cpu(redis_client.ping), "postgres": postgres}


# What each hop's row holds, beside its wall-clock "us".
COUNTED = ("sql", "trips", "checkouts", "redis_trips", "redis_cmds", "calls", "waits", "cpu_us")


def summary(found: dict) -> dict:
    return {
        label: {key: statistics.median(r[key] for r in rows) for key in (*COUNTED, "us") if key in rows[0]}
        for label, rows in found.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=30)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--pin", action="store_true", help="add the PIN hop (argon2) to the mix")
    parser.add_argument("--modes", default="off,on", help="USSD_CALLER_CACHE settings to run, in order")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile (for timings or callgrind)")
    parser.add_argument(
        "--callgrind",
        type=int,
        default=0,
        help="under valgrind --tool=callgrind: instructions per menu hop (cache off, on) and per bare one",
    )
    args = parser.parse_args()

    os.environ.setdefault("PIN_PEPPER", "bench-pepper")
    from bench.ledger_bench import REDIS, fresh_database, psql
    from ussd_app import create_app
    from ussd_app.config import database_url
    from ussd_app.extensions import db

    logging.getLogger().addHandler(logging.FileHandler(os.devnull))  # production's JSON lines, unseen
    try:
        from ussd_app import reads
    except ImportError:  # a tree from before the hop reads: the session only
        reads = None
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url(fresh_database(DATABASE)),
            "REDIS_URL": os.environ.get("REDIS_URL") or REDIS,
            "WEBHOOK_RATE_PER_MINUTE": 1_000,
            "NAME_LOOKUP_LIMIT": 1_000_000,
            "NAME_CANCEL_LIMIT": 1_000_000,
        }
    )
    counts = Counts()
    try:
        with app.app_context():
            import flask_migrate

            from bench.population import customers
            from ussd_app.pins import hash_pin

            flask_migrate.upgrade(directory=os.path.join(ROOT, "migrations"))
            production_logging()  # the migration's fileConfig put root back at WARN, in text
            customers(db.session, args.users, balance=5_000_000, pin_hash=hash_pin(PIN))
            db.session.remove()
            app.extensions["redis"].flushdb()
            if not args.callgrind:  # callgrind counts the app alone, without these hooks
                instrument(db.engine, counts)
                hop_reads = reads.engine(app) if reads is not None else None
                if hop_reads is not None:  # a menu hop's reads (ussd_app/reads.py): their own engine
                    instrument(hop_reads, counts, autocommit=True, redis=False)
            # Warm up (imports, catalogues, the pool): one of each, not counted.
            measure(app, counts, "mix", args.users - 10, 1, args.users, args.pin, False)
            measure(app, counts, "walk", args.users - 9, 1, args.users, False, False)
            if args.callgrind:
                return callgrind(app, bare_app(), args.callgrind, args.modes.split(","), args.pin)
            results = {}
            bare = bare_route(counts, args.conversations * 5, not args.no_profile)
            floor = bare_route(counts, args.conversations * 5, not args.no_profile, floor_app(), FLOOR)
            payer = 0
            for mode in args.modes.split(","):
                app.config["USSD_CALLER_CACHE"] = mode == "on"
                for kind in ("mix", "walk"):
                    found = measure(
                        app,
                        counts,
                        kind,
                        payer,
                        args.conversations,
                        args.users,
                        args.pin,
                        not args.no_profile,
                    )
                    payer += args.conversations
                    results[(mode, kind)] = summary(found)
            dialect = db.engine.dialect.name
            trips = round_trip_cpu(app)
    finally:
        with app.app_context():
            db.engine.dispose()
        psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    print(
        f"Per hop, median of {args.conversations} conversations each, in process (Flask test client, "
        f"{dialect} + Redis); cache off = every hop reads the caller from the database."
    )
    header = (
        "| hop | cache | SQL statements | DB round trips | DB check-outs | Redis round trips | Redis commands "
        "| Python calls | waits | CPU µs (noisy) | µs (noisy) |"
    )
    print(header)
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in ("mix", "walk"):
        for label in results[(args.modes.split(",")[0], kind)]:
            for mode in args.modes.split(","):
                row = results[(mode, kind)][label]
                print(
                    f"| {kind}: {label} | {mode} | {row['sql']:.0f} | {row['trips']:.0f} | {row['checkouts']:.0f} | {row['redis_trips']:.0f} "
                    f"| {row['redis_cmds']:.0f} | {row.get('calls', float('nan')):.0f} | {row['waits']:.0f} "
                    f"| {row['cpu_us']:.0f} | {row['us']:.0f} |"
                )
    for label, row in ((FLOOR, floor), (BARE, bare)):
        print(
            f"| {label} | - | {row['sql']:.0f} | {row['trips']:.0f} | {row['checkouts']:.0f} | {row['redis_trips']:.0f} "
            f"| {row['redis_cmds']:.0f} | {row.get('calls', float('nan')):.0f} | {row['waits']:.0f} "
            f"| {row['cpu_us']:.0f} | {row['us']:.0f} |"
        )
    for mode in args.modes.split(","):
        for kind in ("mix", "walk"):
            rows = results[(mode, kind)].values()
            print(
                f"{kind}, cache {mode}: per hop on average "
                + ", ".join(
                    f"{key} {statistics.mean(r[key] for r in rows):.2f}"
                    for key in COUNTED
                    if key in next(iter(rows))
                )
            )
    print(
        f"waits: the hop's voluntary context switches (each a wait for another process's answer). One round "
        f"trip's CPU in this process (median of 2,000): Redis PING {trips['redis']:.0f} µs, PostgreSQL "
        f"SELECT 1 {trips['postgres']:.0f} µs; the bare route's whole hop {bare['cpu_us']:.0f} µs "
        f"(CPU with cProfile on unless --no-profile)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
