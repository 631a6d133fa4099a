"""``python -m worker [--burst]``: run an rq worker on Tuma's queues.

Besides the worker, a non-burst run starts rq's cron scheduler in a child process, which
enqueues the periodic maintenance job (expiry of holds, recovery of stale requests). With
``--burst`` the maintenance job runs once first, then the worker stops when the queues are
empty.
"""

import argparse
import gc
import logging
import multiprocessing
import os
import signal
import sys

from rq import SimpleWorker
from rq.worker import DequeueStrategy

from ussd_app import create_app
from ussd_app.extensions import db
from ussd_app.payments.emoney import newest_holder_abroad
from ussd_app.queues import ALL_QUEUES, SMS_QUEUE, TRANSFERS_QUEUE

from . import jobs
from .cron import run_cron

# Which queue's job next. Round robin takes the queues in turn: one worker that runs transfer
# batches and sends their receipts sends a batch's receipts right after it (in the batch's own
# job, for up to SMS_CLAIM_BATCH rows: worker.jobs.send_receipts_now), not once the transfers
# queue runs dry (under a stream of confirms it never does), and a busy till's run of SMS jobs
# holds transfers back by at most one job and those rows. (rq's default takes the first queue
# with a job, in the order given.)
DEQUEUE = DequeueStrategy.ROUND_ROBIN


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    parser.add_argument("--no-cron", action="store_true", help="do not start the cron scheduler")
    parser.add_argument("--queues", nargs="*", default=list(ALL_QUEUES))
    parser.add_argument(
        "--dequeue",
        choices=[s.value for s in DequeueStrategy],
        default=DEQUEUE.value,
        help="which queue's job next: round_robin (the default) takes the queues in turn; "
        "default takes the first queue, in --queues order, that has a job",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app = create_app()
    with app.app_context():  # a worker of another country than its database's refuses to start
        abroad = newest_holder_abroad(db.session)
        db.session.remove()
    if abroad:
        logging.getLogger("worker").error("refusing to start: %s", abroad)
        return 2
    jobs.use_app(app)  # each job runs in its own context of this app
    # A worker that takes the transfers and SMS queues in turn sends a batch's receipts in the
    # batch's job (the SMS job ran next anyway); one kept for transfers, or taking transfers
    # first, leaves them to the SMS job.
    strategy = DequeueStrategy(args.dequeue)
    jobs.send_receipts_inline(
        {TRANSFERS_QUEUE, SMS_QUEUE} <= set(args.queues) and strategy == DequeueStrategy.ROUND_ROBIN
    )
    cron = None
    if args.burst:
        jobs.maintain()
    elif not args.no_cron:
        cron = multiprocessing.get_context("spawn").Process(
            target=run_cron, args=(app.config["MAINTENANCE_INTERVAL_SECONDS"],), daemon=True
        )
        cron.start()
    worker = SimpleWorker(list(args.queues), connection=app.extensions["redis"])
    # What start-up made (the app and its modules: some 156,000 objects the cyclic collector
    # tracks) lives as long as the process: out of the collector's way, a full collection in
    # the middle of a batch walks only what the jobs made. Measured on a transfer worker's
    # batches in one process: 290-490 ms of collection per 11,000 transfers before, 70-90 after.
    gc.freeze()
    try:
        worker.work(burst=args.burst, with_scheduler=not args.burst, dequeue_strategy=strategy)
    finally:
        if cron is not None and cron.is_alive():
            os.kill(cron.pid, signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
