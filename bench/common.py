"""What the benchmarks share: the PostgreSQL they create their databases on, and the CPU time
of processes read from /proc.

Left out on purpose: ``ledger_writes_ab.py`` keeps its own ``psql`` and ``backend_cpu``, since
its child processes run with another tree's code first on the path (an older tree has no
``bench/common.py``, and importing this tree's ``bench`` package there would also give the old
tree this tree's ``bench.population``); ``sms_latency_ab.py`` likewise runs a worker from an
older tree and keeps its own.
"""

import os
import signal
import subprocess
import sys
import time

PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql://postgres@127.0.0.1")


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qtAc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def fresh_database(name: str) -> str:
    """Drop ``name`` (whoever is connected) and create it empty; its URL."""
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name}")
    return f"{PG_BASE}/{name}"


def copy_rows(session, model, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys) into ``model``'s table by one COPY, in the session's
    transaction (PostgreSQL): the rows ``session.execute(insert(model), rows)`` writes, each
    column the dicts leave out given its scalar Python-side default as SQLAlchemy would (a
    column with a callable default must be given). Sending 12,000 requests row by row took
    about 3 s of each ledger run's setup on a loaded machine; COPY a tenth of it."""
    if not rows:
        return
    table = model.__table__
    given = list(rows[0])
    defaults = {}
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        assert column.default.is_scalar, f"{column.name}: give it (its default is not a constant)"
        defaults[column.name] = column.default.arg
    names = given + list(defaults)
    fixed = tuple(defaults.values())
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(tuple(row[name] for name in given) + fixed)


def stop(procs, timeout: float = 30) -> None:
    """SIGTERM each process, wait up to ``timeout`` seconds for each, kill what did not stop.
    (Seen once: a worker that had finished its work did not stop on SIGTERM, rq's warm
    shutdown; its work is committed and measured, and the check reads what it left.)"""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(
                f"  a process did not stop within {timeout:.0f} s of SIGTERM; killed (pid {p.pid})",
                flush=True,
            )
            p.kill()
            p.wait()


def vacuumed(engine) -> bool:
    """What autovacuum would have done by now, done between two measured runs: ``VACUUM
    (ANALYZE)`` of the database, when autovacuum is off on the server (as on the benchmark's
    machine); pgbench vacuums its own tables before each of its runs the same way. Without it a
    run measures the dead rows and the missing statistics of the runs before it (the planner
    never told that the tables it planned empty now hold 100,000 rows). Whether it ran."""
    from sqlalchemy import text

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.execute(text("SHOW autovacuum")).scalar_one() == "on":
            return False
        conn.execute(text("VACUUM (ANALYZE)"))
    return True


def spawn(args: list[str], root: str, env: dict | None = None) -> subprocess.Popen:
    """``python ARGS`` from ``root``, output discarded, in a process group of its own (with its
    children: rq's scheduler process, gunicorn's workers), so that ``kill_idle`` can end the
    group at once."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_idle(procs, redis=None, timeout: float = 30) -> None:
    """End processes the bench no longer needs, their work done and checked: SIGKILL to each
    one's process group (``spawn``). With ``redis``, the procs are rq workers: first wait until
    rq has each idle (no job started), and afterwards remove their registrations, as their own
    shutdown would (a later count of workers must not see them). rq's warm shutdown on SIGTERM
    (``stop``) took 1-2 s a worker: its scheduler process joined, its pubsub thread joined with a
    1 s timeout. A worker that stays busy past ``timeout``, or a process not started by
    ``spawn``, gets ``stop``'s SIGTERM instead."""
    from rq import Worker

    procs = [p for p in procs if p.poll() is None]
    registered = []
    if redis is not None:
        pids = {p.pid for p in procs}
        deadline = time.monotonic() + timeout
        while True:
            registered = [w for w in Worker.all(connection=redis) if w.pid in pids]
            if all(w.state == "idle" for w in registered) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        busy = {w.pid for w in registered if w.state != "idle"}
        if busy:
            stop([p for p in procs if p.pid in busy])
    groups = set()
    for p in procs:
        try:
            if os.getpgid(p.pid) == p.pid:
                groups.add(p.pid)
        except ProcessLookupError:
            pass
    schedulers = _schedulers_in(groups, registered, redis) if registered else []
    for p in procs:
        if p.pid in groups:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        else:
            stop([p])
    # What their own shutdown does in Redis: deregistered, and the lock of a scheduler among
    # them released (with the scheduler's hash), so a worker started later takes it over.
    for w in registered:
        w.register_death()
    for lock, key in schedulers:
        redis.delete(lock, key)


def _schedulers_in(groups: set[int], workers, redis) -> list[tuple[str, str]]:
    """rq's scheduler locks held by a scheduler process in one of the process ``groups``, each
    with its scheduler's hash."""
    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE

    held = []
    for queue in {name for w in workers for name in w.queue_names()}:
        lock = SCHEDULER_LOCKING_KEY_TEMPLATE % queue
        holder = redis.get(lock)
        if holder is None:
            continue
        key = SCHEDULER_KEY_TEMPLATE % holder.decode()
        pid = redis.hget(key, "pid")
        try:
            if pid is not None and os.getpgid(int(pid)) in groups:
                held.append((lock, key))
        except ProcessLookupError:
            pass
    return held


def cpu_seconds(pids) -> float:
    """User + system CPU seconds the live processes ``pids`` have used, all their threads
    (/proc/<pid>/stat fields 14 and 15); a process gone counts nothing."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


class Steps:
    """Wall seconds a bench spends on each kind of step, so ``make bench``'s minutes can be told
    apart: ``measured`` (the timed windows a figure is read from, pgbench's and the rq no-op's
    included), ``setup`` (databases, migrations, populations, work queued before a window),
    ``start-ups`` (processes started, waited for and stopped), ``warm-ups`` and ``checks``
    (ledger check and the counts after a run); ``other`` is the rest (imports, tables).

        STEPS.now("setup")       # from here on, until the next step
        with STEPS("measured"):  # this block, then back to the step before it
            ...
    """

    NAMES = ("measured", "setup", "start-ups", "warm-ups", "checks", "other")

    def __init__(self):
        import time

        self._clock = time.monotonic
        self.seconds: dict[str, float] = dict.fromkeys(self.NAMES, 0.0)
        self.detail: dict[str, float] = {}  # "setup: population" and the like, where a step says what
        self._step, self._what, self._since = "other", "", self._clock()

    def now(self, name: str, what: str = "") -> tuple[str, str]:
        """Count the time from here to ``name`` (``what`` of it, if said); the step before."""
        assert name in self.seconds, name
        at = self._clock()
        self.seconds[self._step] += at - self._since
        if self._what:
            key = f"{self._step}: {self._what}"
            self.detail[key] = self.detail.get(key, 0.0) + at - self._since
        previous = self._step, self._what
        self._step, self._what, self._since = name, what, at
        return previous

    def __call__(self, name: str, what: str = ""):
        import contextlib

        @contextlib.contextmanager
        def timed():
            previous = self.now(name, what)
            try:
                yield
            finally:
                self.now(*previous)

        return timed()

    def detail_line(self) -> str:
        """The steps that said what they were, in minutes, largest first."""
        return ", ".join(f"{k} {s / 60:.2f}" for k, s in sorted(self.detail.items(), key=lambda kv: -kv[1]))

    def minutes(self) -> dict[str, float]:
        """Each step's minutes so far."""
        self.now(self._step, self._what)
        return {name: s / 60 for name, s in self.seconds.items()}


def minutes_line(minutes: dict[str, float]) -> str:
    """``measured 2.1, setup 1.0, ...``: minutes per step, in Steps.NAMES order."""
    return ", ".join(f"{name} {minutes.get(name, 0.0):.1f}" for name in Steps.NAMES)


STEPS = Steps()
