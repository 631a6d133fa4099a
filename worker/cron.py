"""The periodic jobs, enqueued by rq's cron scheduler (started by ``python -m worker``)."""

import logging
import os
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.cron import CronScheduler

from ussd_app import create_app
from ussd_app.queues import MAINTENANCE_QUEUE, get_redis

from . import jobs

log = logging.getLogger(__name__)

# Between tries while Redis cannot be reached: doubling from the first, up to the last.
RETRY_FIRST_SECONDS, RETRY_MOST_SECONDS = 0.5, 10.0


def run_cron(interval: int) -> None:
    """Enqueue ``jobs.maintain`` every ``interval`` seconds until stopped (SIGTERM).

    Redis unreachable (at start, or restarted under it) is waited out, never the end of the
    scheduler: it died on its first connection refused, and a worker started while Redis was
    down (a restart of both) then ran no maintenance at all, so requests whose doorbell was
    lost with Redis's contents were never announced again (make chaos: 224 left queued)."""
    app = create_app()
    pause, attempt = RETRY_FIRST_SECONDS, 0
    with app.app_context():
        while True:
            attempt += 1
            try:
                # A name of its own each time: a birth registered before a failure may linger.
                cron = CronScheduler(connection=get_redis(), name=f"tuma-cron-{os.getpid()}-{attempt}")
                cron.register(jobs.maintain, MAINTENANCE_QUEUE, interval=interval)
                cron.start()
                return  # stopped
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("cron: Redis unreachable (%s); trying again in %.1f s", type(exc).__name__, pause)
                time.sleep(pause)
                pause = min(pause * 2, RETRY_MOST_SECONDS)
