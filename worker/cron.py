"""The periodic jobs, enqueued by rq's cron scheduler (started by ``python -m worker``)."""

import os

from rq.cron import CronScheduler

from ussd_app import create_app
from ussd_app.queues import MAINTENANCE_QUEUE, get_redis

from . import jobs


def run_cron(interval: int) -> None:
    """Enqueue ``jobs.maintain`` every ``interval`` seconds until stopped (SIGTERM)."""
    app = create_app()
    with app.app_context():
        cron = CronScheduler(connection=get_redis(), name=f"tuma-cron-{os.getpid()}")
        cron.register(jobs.maintain, MAINTENANCE_QUEUE, interval=interval)
        cron.start()
