"""The short form of ``make chaos``: a couple of hundred transfers through real gunicorn, real
workers, PostgreSQL and a Redis of its own, with one of each fault injected along the way.

Needs PostgreSQL (DATABASE_URL; it makes and drops ``<database>_chaos_short``) and a
``redis-server`` binary (it starts its own on a free port). ``CHAOS_SEED=N`` replays a run.
"""

import os
import random
import shutil

import pytest

from chaos.harness import FAULT_KINDS, Settings, chaos_database_url, free_port, print_report, run
from tests.conftest import PG_URL


@pytest.mark.skipif(not PG_URL, reason="the chaos run needs PostgreSQL (DATABASE_URL)")
@pytest.mark.skipif(not shutil.which("redis-server"), reason="the chaos run starts its own redis-server")
def test_short_chaos_run_loses_nothing_doubles_nothing_and_the_ledger_balances():
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed {seed} (CHAOS_SEED={seed} replays)")
    settings = Settings(
        seed=seed,
        transfers=200,
        fault_kinds=FAULT_KINDS,
        fault_each=True,  # one of each: worker, Redis, database, SMS 500, SMS hang, gunicorn
        database_url=chaos_database_url(PG_URL, "chaos_short"),
        redis_port=free_port(),
        quiesce_timeout=90,
    )
    report = run(settings)
    print_report(report)
    assert sum(report.faults.values()) == len(FAULT_KINDS), report.problems
    assert report.ok, f"{report.summary()} (CHAOS_SEED={seed})"
    assert report.transfers >= 150
