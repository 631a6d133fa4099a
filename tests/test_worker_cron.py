"""The worker's cron scheduler (``worker/cron.py``) outlives a Redis that is not up yet: a
worker started during a Redis restart must still run its maintenance, which announces again
the requests whose doorbells were lost with Redis's contents."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import redis as redis_lib

from tests.redis_helpers import OwnRedis
from tests.worker_helpers import ROOT, worker_env
from ussd_app.queues import MAINTENANCE_QUEUE


def test_the_cron_scheduler_waits_for_redis_and_then_enqueues_maintenance(app):
    own = OwnRedis()  # not started: Redis is down when the scheduler starts
    log = tempfile.TemporaryFile(mode="w+", prefix="cron-")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from worker.cron import run_cron; run_cron(1)"],
        cwd=ROOT,
        env=worker_env(REDIS_URL=own.url),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "Redis unreachable" not in _read(log):  # it tried and failed, and lives on
            assert proc.poll() is None, _read(log)
            assert time.monotonic() < deadline, _read(log)
            time.sleep(0.05)
        own.start()
        client = redis_lib.Redis.from_url(own.url)
        queue_key = f"rq:queue:{MAINTENANCE_QUEUE}"
        while not client.llen(queue_key):  # maintenance enqueued once Redis is up
            assert proc.poll() is None, _read(log)
            assert time.monotonic() < deadline, _read(log)
            time.sleep(0.05)
        client.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        own.stop()
        log.close()


def _read(log) -> str:
    log.seek(0)
    return log.read()
