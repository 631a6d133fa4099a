"""A worker that takes the transfers and SMS queues in turn sends a batch's receipts in the
batch's own job, in place of the SMS job the batch's commit rang (taken off its queue first, so
one worker sends them, once); a worker kept for transfers leaves them to the SMS job.

Real Redis and rq queues, the real local gateway, real worker processes where the worker's
command line is what is tested."""

import pytest
from rq import Queue
from sqlalchemy import text

from tests.sms_helpers import agent_with_float, execute, gateway, outbox, person, send  # noqa: F401
from tests.worker_helpers import finish, start_worker
from ussd_app.extensions import db
from ussd_app.queues import SMS_DOORBELL, SMS_QUEUE, TRANSFERS_QUEUE, Bell, get_queue, take_waiting
from worker import jobs

PAYEE = "+254712000222"


@pytest.fixture
def inline():
    jobs.send_receipts_inline(True)
    try:
        yield
    finally:
        jobs.send_receipts_inline(False)


@pytest.fixture
def payer(app, redis):
    """An agent with float, a customer to pay; no job or doorbell left from the set-up."""
    agent = agent_with_float()
    payee = person(PAYEE, "Wanjiru Kamau")
    for name in (TRANSFERS_QUEUE, SMS_QUEUE):
        get_queue(name).empty()
    redis.delete(SMS_DOORBELL, "tuma:transfers:doorbell")
    return agent, payee


def sms_jobs() -> list[str]:
    return [job.func_name for job in get_queue(SMS_QUEUE).get_jobs()]


def test_the_batch_job_sends_its_receipts_and_leaves_no_sms_job(app, gateway, payer, inline):  # noqa: F811
    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    assert execute() == 1
    # Both receipts handed over by the batch's job; the SMS job its commit rang is gone.
    assert {m.status for m in outbox()} == {"sent"}
    assert gateway.inbox(PAYEE) and gateway.inbox(agent.phone)
    assert sms_jobs() == []


def test_without_it_the_receipts_wait_for_the_sms_job(app, gateway, payer):  # noqa: F811
    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    assert execute() == 1
    assert {m.status for m in outbox()} == {"pending"}
    assert sms_jobs() == ["worker.jobs.send_sms"]
    jobs.send_sms()
    assert {m.status for m in outbox()} == {"sent"}


def test_an_sms_job_another_worker_took_is_left_to_it(app, gateway, payer, redis, inline):  # noqa: F811
    agent, payee = payer
    # Another worker has dequeued the SMS job and not yet begun (its doorbell still set): the
    # batch's commit rings nothing, and the batch's job must not send beside that job.
    redis.set(SMS_DOORBELL, "1", ex=60)
    send(agent, payee, 500_00, kind="deposit")
    assert execute() == 1
    assert {m.status for m in outbox()} == {"pending"}
    assert gateway.inbox(PAYEE) == []
    jobs.send_sms()  # that worker's job, when it runs
    assert {m.status for m in outbox()} == {"sent"}
    assert len(gateway.inbox(PAYEE)) == 1


def test_a_job_of_another_kind_in_the_queue_is_put_back(app, redis):
    queue = Queue(SMS_QUEUE, connection=redis)
    other = queue.enqueue("bench.noop.noop")
    queue.enqueue("worker.jobs.send_sms")
    assert take_waiting(Bell.SMS) is None
    assert queue.job_ids[0] == other.id
    assert len(queue) == 2


def test_one_waiting_job_is_taken_once(app, redis):
    queue = Queue(SMS_QUEUE, connection=redis)
    job = queue.enqueue("worker.jobs.send_sms")
    assert take_waiting(Bell.SMS).id == job.id
    assert take_waiting(Bell.SMS) is None  # the second taker (another worker) finds none
    assert len(queue) == 0
    assert not redis.exists(job.key)  # no queued job left behind in Redis


def test_a_worker_on_both_queues_runs_no_sms_job_for_a_batch(app, gateway, payer):  # noqa: F811
    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    db.session.remove()
    output = finish(start_worker("--burst"))
    assert {m.status for m in outbox()} == {"sent"}, output
    assert "worker.jobs.send_sms" not in output  # no SMS job was run: the batch's job sent them


def test_a_worker_kept_for_transfers_leaves_the_receipts_to_the_sms_job(app, gateway, payer):  # noqa: F811
    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    db.session.remove()
    output = finish(start_worker("--burst", "--queues", TRANSFERS_QUEUE))
    assert {m.status for m in outbox()} == {"pending"}, output
    assert sms_jobs() == ["worker.jobs.send_sms"]


def test_receipts_sent_in_the_batch_job_count_as_an_sms_job_in_metrics(app, client, gateway, payer, inline):  # noqa: F811
    from tests.test_ops_metrics import samples, value

    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    before = samples(client)
    assert execute() == 1
    after = samples(client)
    # An operator's dashboard sees the SMS job it replaced: one run, and its wait in the queue.
    assert (
        value(after, "tuma_jobs_total", job="send_sms", result="ok")
        - value(before, "tuma_jobs_total", job="send_sms", result="ok")
        == 1
    )
    assert (
        value(after, "tuma_job_queue_wait_seconds_count", job="send_sms")
        - value(before, "tuma_job_queue_wait_seconds_count", job="send_sms")
        == 1
    )


def _refuse_claims(session) -> list[str]:
    """A real database error at the sender's claim (the row moved to ``sending``): what a
    claim meets when the database fails it. The statements that undo it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "CREATE FUNCTION atk_refuse_claim() RETURNS trigger AS $$ BEGIN "
                "IF NEW.status = 'sending' THEN RAISE EXCEPTION 'claim refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        session.execute(
            text(
                "CREATE TRIGGER atk_refuse_claim BEFORE UPDATE ON outbox_messages "
                "FOR EACH ROW EXECUTE FUNCTION atk_refuse_claim()"
            )
        )
        undo = ["DROP TRIGGER atk_refuse_claim ON outbox_messages", "DROP FUNCTION atk_refuse_claim()"]
    else:
        session.execute(
            text(
                "CREATE TRIGGER atk_refuse_claim BEFORE UPDATE OF status ON outbox_messages "
                "WHEN NEW.status = 'sending' BEGIN SELECT RAISE(ABORT, 'claim refused'); END"
            )
        )
        undo = ["DROP TRIGGER atk_refuse_claim"]
    session.commit()
    return undo


def test_a_failed_inline_send_does_not_fail_the_batch_that_committed(app, client, gateway, payer, inline):  # noqa: F811
    from tests.test_ops_metrics import samples, value

    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    undo = _refuse_claims(db.session)
    try:
        before = samples(client)
        # The batch committed (the money moved): its job succeeds, whatever its receipts met.
        assert execute() == 1
        after = samples(client)
    finally:
        db.session.rollback()
        for statement in undo:
            db.session.execute(text(statement))
        db.session.commit()

    def delta(job, result):
        return value(after, "tuma_jobs_total", job=job, result=result) - value(
            before, "tuma_jobs_total", job=job, result=result
        )

    # An operator sees a failed send and a batch that worked, not a failed batch.
    assert delta("send_sms", "error") == 1
    assert delta("execute_transfers", "ok") == 1 and delta("execute_transfers", "error") == 0
    # The receipts are rung for again: an SMS job waits, and sends them.
    assert {m.status for m in outbox()} == {"pending"}
    assert sms_jobs() == ["worker.jobs.send_sms"]
    jobs.send_sms()
    assert {m.status for m in outbox()} == {"sent"}


def test_receipts_of_a_worker_killed_after_taking_their_sms_job_are_sent_soon(app, gateway, payer, redis):  # noqa: F811
    from tests.helpers import wait_for
    from tests.worker_helpers import kill_worker, run_burst_worker

    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    db.session.remove()
    # A worker on both queues executes the batch, takes the SMS job its commit rang, and dies
    # before sending anything (the machine lost power).
    victim = start_worker("--burst", TUMA_FAULTS="sms_taken")
    try:
        pid = wait_for(lambda: redis.get("tuma:fault:sms_taken"), message="worker to take the SMS job")
    finally:
        kill_worker(victim)
    assert int(pid) == victim.pid
    assert {m.status for m in outbox()} == {"pending"}
    assert sms_jobs() == []
    # The next worker's maintenance finds the receipts due and rings for them at once, not once
    # the dead job's doorbell has run out (60 s, during which no commit could ring either).
    run_burst_worker("--queues", SMS_QUEUE, "maintenance")
    assert {m.status for m in outbox()} == {"sent"}
    assert len(gateway.inbox(PAYEE)) == 1


def test_a_worker_killed_during_its_inline_send_loses_no_receipt(app, config, gateway, payer, redis):  # noqa: F811
    """Killed between a hand-over and its record: the row is handed over again by the next
    sender once its claim times out (at least once: the documented window), the other sent once."""
    from tests.helpers import wait_for
    from tests.worker_helpers import kill_worker, run_burst_worker
    from ussd_app.sms import sender

    agent, payee = payer
    send(agent, payee, 500_00, kind="deposit")
    db.session.remove()
    gateway.hold_next(1)  # the first receipt's call hangs; the other lane's is answered
    victim = start_worker("--burst", TUMA_SMS_CONNECT_TIMEOUT_SECONDS=0.5, TUMA_SMS_READ_TIMEOUT_SECONDS=60)

    def one_lane_stuck() -> bool:
        # The held call's number's rows still ``sending``; every other number's recorded sent.
        rows = outbox()
        stuck = {m.phone for m in rows if m.status != "sent"}
        return gateway.held == 1 and len(stuck) == 1 and {m.status for m in rows} == {"sent", "sending"}

    try:
        wait_for(one_lane_stuck, message="one call held, the other lanes' answers recorded")
    finally:
        kill_worker(victim)
    gateway.release()  # the hung call ends; the gateway delivers it to a process now gone
    held = next(m for m in outbox() if m.status == "sending")
    assert sms_jobs() == []
    # The next sender's claim timeout: the held row comes due again, and is handed over.
    fast = dict(
        TUMA_SMS_CONNECT_TIMEOUT_SECONDS=0.5,
        TUMA_SMS_READ_TIMEOUT_SECONDS=1,
        TUMA_SMS_CLAIM_TIMEOUT_SECONDS=1,
    )
    config(SMS_CONNECT_TIMEOUT_SECONDS=0.5, SMS_READ_TIMEOUT_SECONDS=1, SMS_CLAIM_TIMEOUT_SECONDS=1)
    unrecorded = len([m for m in outbox() if m.status == "sending"])  # the held one, those behind it
    wait_for(lambda: sender.count_due(db.session) == unrecorded, message="the held lane due again")
    db.session.remove()
    run_burst_worker("--queues", SMS_QUEUE, "maintenance", **fast)
    assert {m.status for m in outbox()} == {"sent"}
    to_held = [m for m in gateway.inbox(held.phone) if m.message == held.body]
    assert len(to_held) == 2  # the hung call's delivery and the new one
    for other in (m for m in outbox() if m.id != held.id):
        assert len([m for m in gateway.inbox(other.phone) if m.message == other.body]) == 1
