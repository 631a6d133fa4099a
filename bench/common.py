"""What the benchmarks share: the PostgreSQL they create their databases on, and the CPU time
of processes read from /proc.

Left out on purpose: ``ledger_writes_ab.py`` keeps its own ``psql`` and ``backend_cpu``, since
its child processes run with another tree's code first on the path (an older tree has no
``bench/common.py``, and importing this tree's ``bench`` package there would also give the old
tree this tree's ``bench.population``); ``sms_latency_ab.py`` likewise runs a worker from an
older tree and keeps its own.
"""

import os
import subprocess

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
