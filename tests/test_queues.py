"""The one owner of work started after a commit (``ussd_app/queues.py``): what a transaction
wrote for the workers (transfer requests, SMS, airtime holds) is announced once per commit,
through real rq queues in Redis; never before the commit, never for a rollback, and a lost
announcement is logged and left to the maintenance job."""

import logging
import shutil

import pytest
from sqlalchemy import func, select

from tests.conftest import default_db_url, make_app, reset_data
from tests.escrow_helpers import funded_customer
from tests.helpers import review
from tests.redis_helpers import OwnRedis
from tests.ussd_helpers import person
from ussd_app.extensions import db
from ussd_app.payments import airtime
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.queues import (
    ALL_QUEUES,
    SMS_DOORBELL,
    SMS_QUEUE,
    TRANSFERS_DOORBELL,
    TRANSFERS_QUEUE,
    get_queue,
)
from ussd_app.sms.outbox import add_sms
from worker import jobs

CUSTOMERS = [f"+2547120003{i:02d}" for i in range(20)]


def queued() -> dict[str, list[str]]:
    """The jobs waiting in each queue, by function name."""
    return {name: [job.func_name for job in get_queue(name).get_jobs()] for name in ALL_QUEUES}


def nothing_waiting(redis) -> None:
    for name in ALL_QUEUES:
        get_queue(name).empty()
    redis.delete(TRANSFERS_DOORBELL, SMS_DOORBELL)


@pytest.fixture
def payer(app, redis):
    """A funded customer and twenty others, every job their set-up rang already gone."""
    payer = funded_customer()
    for phone in CUSTOMERS:
        person(phone, "Amina Hassan")
    nothing_waiting(redis)
    return payer


def send(payer: int, phone: str, amount: int = 10_00) -> TransferRequest:
    from ussd_app.users import find_by_phone

    return record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=payer,
        credit_account_id=find_by_phone(db.session, phone).account_id,
        amount=amount,
    )


EMPTY = {TRANSFERS_QUEUE: [], SMS_QUEUE: [], "events": [], "maintenance": []}


def test_one_commit_of_many_requests_and_sms_rings_each_queue_once(payer):
    for phone in CUSTOMERS:
        send(payer, phone)
        add_sms(db.session, phone=phone, body="You have a payment on its way.")
    db.session.flush()
    assert queued() == EMPTY  # written, not committed: nobody is told yet

    db.session.commit()
    assert queued() == {
        TRANSFERS_QUEUE: ["worker.jobs.execute_transfers"],
        SMS_QUEUE: ["worker.jobs.send_sms"],
        "events": [],
        "maintenance": [],
    }


def test_a_batch_that_posts_many_airtime_holds_rings_the_airtime_job_once(app, payer, redis):
    for phone in CUSTOMERS[:5]:
        airtime.record(db.session, request_id=mint_request_id(), account_id=payer, phone=phone, amount=20_00)
    db.session.commit()
    nothing_waiting(redis)

    assert jobs.execute_transfers() == 5  # five holds, one commit (no receipt until bought)
    assert queued() == {
        TRANSFERS_QUEUE: ["worker.jobs.buy_airtime"],
        SMS_QUEUE: [],
        "events": [],
        "maintenance": [],
    }


def test_a_request_executed_in_its_own_transaction_rings_no_transfer_job(app, redis):
    """An e-float issue is recorded and posted at once: nothing is left for a worker."""
    from ussd_app.payments.emoney import issue_float

    agent = person("+254700000101", "Ali Agent", pin="1111", role="agent")
    nothing_waiting(redis)
    issue_float(db.session, agent, 1_000_00, "BANK-9")
    db.session.commit()
    assert queued() == {
        TRANSFERS_QUEUE: [],
        SMS_QUEUE: ["worker.jobs.send_sms"],
        "events": [],
        "maintenance": [],
    }


def test_a_rollback_rings_nothing(payer):
    before = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    for phone in CUSTOMERS:
        send(payer, phone)
        add_sms(db.session, phone=phone, body="You have a payment on its way.")
    db.session.flush()
    db.session.rollback()
    person("+254712000999", "Baraka Mwangi")  # the next commit has nothing of the rolled back
    assert queued() == EMPTY
    assert db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one() == before
    db.session.commit()


def test_a_rolled_back_savepoint_rings_nothing_and_a_released_one_waits_for_the_commit(payer):
    add_sms(db.session, phone=CUSTOMERS[0], body="Kept.")
    with pytest.raises(LookupError):
        with db.session.begin_nested():
            send(payer, CUSTOMERS[1])
            raise LookupError
    db.session.commit()
    assert queued() == {
        TRANSFERS_QUEUE: [],
        SMS_QUEUE: ["worker.jobs.send_sms"],
        "events": [],
        "maintenance": [],
    }

    get_queue(SMS_QUEUE).empty()
    with db.session.begin_nested():
        send(payer, CUSTOMERS[2])
        add_sms(db.session, phone=CUSTOMERS[2], body="Released with its savepoint, then rolled back.")
    assert queued() == EMPTY  # a savepoint's release is not a commit
    db.session.rollback()
    assert queued() == EMPTY

    with db.session.begin_nested():
        request = send(payer, CUSTOMERS[3])
    db.session.commit()
    assert queued()[TRANSFERS_QUEUE] == ["worker.jobs.execute_transfers"]
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert job.args == (request.id,)  # the request that rang, for the job's logs


@pytest.fixture
def own_redis():
    if not shutil.which("redis-server"):
        pytest.skip("needs a redis-server binary")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lost_redis_app(own_redis):
    app = make_app(default_db_url(), REDIS_URL=own_redis.url)
    saved = app.config["REQUEUE_AFTER_SECONDS"]
    app.config["REQUEUE_AFTER_SECONDS"] = 0  # a request queued at all is stale
    with app.app_context():
        reset_data()
        yield app
        db.session.remove()
    app.config["REQUEUE_AFTER_SECONDS"] = saved


def test_a_lost_announcement_is_logged_and_the_maintenance_job_announces_it(
    lost_redis_app, own_redis, caplog
):
    payer = funded_customer()
    person(CUSTOMERS[0], "Amina Hassan")
    own_redis.stop()
    request = send(payer, CUSTOMERS[0])
    with caplog.at_level(logging.WARNING, logger="ussd_app.queues"):
        db.session.commit()  # committed, whatever Redis says
    assert "committed work not announced (transfers): ConnectionError" in caplog.text
    request_id = request.id

    own_redis.start()  # back, empty
    assert queued()[TRANSFERS_QUEUE] == []
    assert jobs.maintain()["stale_requests"] == 1
    assert queued()[TRANSFERS_QUEUE] == ["worker.jobs.execute_transfers"]
    assert jobs.execute_transfers() == 1
    assert db.session.get(TransferRequest, request_id, populate_existing=True).status == "accepted"


def test_a_transfer_cleared_from_review_rings_the_workers_once_committed(payer, redis, config, runner):
    config(VELOCITY_MAX_COUNT=1)
    first, second = send(payer, CUSTOMERS[0]), send(payer, CUSTOMERS[1])
    db.session.commit()
    assert jobs.execute_transfers() == 2
    held = db.session.get(TransferRequest, second.id, populate_existing=True)
    assert (first.status, held.status) == ("accepted", "review")
    nothing_waiting(redis)

    cleared = review(runner, "clear", held.code)
    assert cleared.exit_code == 0, cleared.output
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert (job.func_name, job.args) == ("worker.jobs.execute_transfers", (held.id,))
    again = review(runner, "clear", held.code)
    assert again.exit_code != 0 and "not held for review" in again.output
    assert len(get_queue(TRANSFERS_QUEUE).get_jobs()) == 1


def test_a_failed_announcement_leaves_no_doorbell_to_turn_the_next_commit_away(payer, redis, caplog):
    """The doorbell is set, then rq's enqueue fails (here Redis refuses the push: the queue's
    key holds a string). The commit is logged as not announced, and the doorbell goes with the
    failure: the next commit's receipts are announced at once, not after the doorbell's minute."""
    nothing_waiting(redis)
    sms_queue = get_queue(SMS_QUEUE)
    redis.set(sms_queue.key, "not a list")
    add_sms(db.session, phone=CUSTOMERS[0], body="first")
    with caplog.at_level(logging.WARNING, logger="ussd_app.queues"):
        db.session.commit()
    assert "committed work not announced (sms): ResponseError" in caplog.text
    assert not redis.exists(SMS_DOORBELL)
    redis.delete(sms_queue.key)  # Redis takes pushes again
    add_sms(db.session, phone=CUSTOMERS[1], body="second")
    db.session.commit()
    assert queued()[SMS_QUEUE] == ["worker.jobs.send_sms"]


def test_redis_writes_noted_for_after_the_commit_go_with_its_doorbells_and_never_after_a_rollback(
    payer, redis
):
    """``send_after_commit`` / ``script_after_commit``: nothing is sent before the commit, nothing
    for a rollback (nor for a rolled back savepoint), and at the commit the writes and the
    doorbell go in one round trip; a script the server does not know yet is sent by its text."""
    from ussd_app.queues import script_after_commit, send_after_commit

    send_after_commit(db.session, "SET", "tuma:test:rolled-back", "1")
    send(payer, CUSTOMERS[0])
    db.session.flush()
    db.session.rollback()
    assert not redis.exists("tuma:test:rolled-back")

    with pytest.raises(LookupError):
        with db.session.begin_nested():
            send_after_commit(db.session, "SET", "tuma:test:savepoint", "1")
            raise LookupError
    send_after_commit(db.session, "SET", "tuma:test:kept", "1", "EX", 60)
    script_after_commit(db.session, "return redis.call('SET', KEYS[1], ARGV[1])", ["tuma:test:script"], ["2"])
    request = send(payer, CUSTOMERS[1])
    db.session.flush()
    assert not redis.exists("tuma:test:kept")  # written, not committed
    redis.script_flush()  # the script is new to the server: EVALSHA fails, EVAL follows
    trips = []
    pool = redis.connection_pool
    make = pool.get_connection

    def counted(*args, **kwargs):
        connection = make(*args, **kwargs)
        if not getattr(connection, "_counted", False):
            send_packed = connection.send_packed_command

            def send_packed_command(command, check_health=True):
                trips.append(b"".join(command) if isinstance(command, list) else command)
                return send_packed(command, check_health)

            connection.send_packed_command = send_packed_command
            connection._counted = True
        return connection

    pool.get_connection = counted
    try:
        db.session.commit()
    finally:
        pool.get_connection = make
    assert redis.get("tuma:test:kept") == b"1" and 0 < redis.ttl("tuma:test:kept") <= 60
    assert redis.get("tuma:test:script") == b"2"
    assert not redis.exists("tuma:test:savepoint")
    assert queued()[TRANSFERS_QUEUE] == ["worker.jobs.execute_transfers"]
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert job.args == (request.id,)
    # One round trip for the doorbell and both writes; then rq's enqueue, and the script by its
    # text (the server had flushed it).
    first, *then = trips
    assert TRANSFERS_DOORBELL.encode() in first and b"tuma:test:kept" in first and b"EVALSHA" in first
    assert [t for t in then if b"tuma:test:script" in t and b"EVALSHA" not in t and b"EVAL" in t]


def test_a_ussd_hops_announcements_go_with_its_session_release_even_when_the_hop_fails_after_the_commit(
    payer, redis
):
    """While a USSD hop holds its Redis session (``sessions.locked(..., announce=)``) its
    commits' announcements wait for the release and go with it (one round trip); a rollback's
    never; a hop that fails after its commit still announces what it committed; afterwards a
    commit announces at once again."""
    from ussd_app.ussd import sessions

    with sessions.locked("held-1", CUSTOMERS[0], announce=db.session):
        request = send(payer, CUSTOMERS[0])
        db.session.commit()
        assert queued() == EMPTY  # committed, announced with the release
        send(payer, CUSTOMERS[1])
        db.session.rollback()
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert job.args == (request.id,)

    nothing_waiting(redis)
    with pytest.raises(LookupError):
        with sessions.locked("held-2", CUSTOMERS[0], announce=db.session):
            failed_after_commit = send(payer, CUSTOMERS[2])
            db.session.commit()
            raise LookupError
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert job.args == (failed_after_commit.id,)
    assert not redis.exists(f"{sessions.PREFIX}:lock:held-2")  # released all the same

    nothing_waiting(redis)
    send(payer, CUSTOMERS[3])
    db.session.commit()
    assert queued()[TRANSFERS_QUEUE] == ["worker.jobs.execute_transfers"]
