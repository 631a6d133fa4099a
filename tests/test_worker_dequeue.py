"""The worker takes its queues in turn: receipts a transfer batch wrote are not held back behind
every later batch (nor transfers behind a busy till's run of SMS jobs)."""

from rq import Queue, SimpleWorker

from ussd_app.queues import ALL_QUEUES, SMS_QUEUE, TRANSFERS_QUEUE
from worker.__main__ import DEQUEUE


def test_a_waiting_sms_job_runs_before_the_next_transfer_batch(app, redis):
    transfers, sms = Queue(TRANSFERS_QUEUE, connection=redis), Queue(SMS_QUEUE, connection=redis)
    # Three batches queued, then the first one's receipts: as a stream of confirms leaves them.
    batches = [transfers.enqueue("bench.noop.noop", result_ttl=60) for _ in range(3)]
    receipts = sms.enqueue("bench.noop.noop", result_ttl=60)
    worker = SimpleWorker([Queue(name, connection=redis) for name in ALL_QUEUES], connection=redis)
    worker.work(burst=True, dequeue_strategy=DEQUEUE)

    for job in (*batches, receipts):
        job.refresh()
    order = sorted((*batches, receipts), key=lambda job: job.ended_at)
    # The receipts went after one more batch, not after all three.
    assert order.index(receipts) == 1, [job.origin for job in order]
