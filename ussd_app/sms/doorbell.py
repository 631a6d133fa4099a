"""The sender's doorbell: ``announce`` makes sure a send job will look at the outbox soon.

Its own module so that the outbox, which rings it when a commit makes rows visible
(``outbox._ring_after_commit``), does not import the sender, which reads the outbox.
``sender.announce`` is the same function.
"""

from flask import current_app

from ..queues import SMS_QUEUE, get_queue, get_redis

DOORBELL_KEY = "tuma:sms:doorbell"
DOORBELL_TTL_SECONDS = 60


def announce(*, force: bool = False) -> bool:
    """Make sure a send job will look at the outbox soon. True if one was enqueued.

    At most one announcement waits at a time (the doorbell key); the job deletes the key before
    it reads the outbox, so rows committed after that read ring again. Call after commit.
    """
    redis = get_redis()
    if not force and not redis.set(DOORBELL_KEY, "1", nx=True, ex=DOORBELL_TTL_SECONDS):
        return False
    config = current_app.config
    per_message = config["SMS_CONNECT_TIMEOUT_SECONDS"] + config["SMS_READ_TIMEOUT_SECONDS"]
    get_queue(SMS_QUEUE).enqueue(
        "worker.jobs.send_sms",
        # Generous: a batch takes about one message's time. A job that runs out of time leaves
        # at most one claim batch "sending", reclaimed later.
        job_timeout=int(config["SMS_BATCH_SIZE"] * per_message) + 60,
        result_ttl=60,
        failure_ttl=24 * 3600,
    )
    return True
