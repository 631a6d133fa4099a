"""Losing Redis: a USSD session in flight ends cleanly, and a transfer accepted before the loss
(its job lost with Redis) is still executed, recovered from the database by the maintenance job.
A restart between two hops, or a connection broken after a hop's script ran (its reply lost), is
not seen by the caller: the scripts' client (``queues.ScriptClient``, one connection held for
good) reconnects and sends the script again (``queues.SCRIPT_RETRY``), and the scripts take that.

Each test runs against a redis-server of its own, which it stops and restarts (empty), some
through a proxy that loses one reply.
"""

import hashlib
import os
import shutil

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from tests.conftest import default_db_url, make_app, reset_data
from tests.helpers import fund
from tests.redis_helpers import OwnRedis, ReplyLosingProxy
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, available, person
from tests.worker_helpers import run_burst_worker
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments.models import TransferRequest
from ussd_app.queues import get_queue, run_script
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.ussd import sessions

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs a redis-server binary")
PIN = "8642"


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def loss_app(own_redis):
    app = make_app(default_db_url(), REDIS_URL=own_redis.url)
    with app.app_context():
        reset_data()
        yield app
        db.session.remove()


@pytest.fixture
def proxy(own_redis):
    proxy = ReplyLosingProxy(own_redis.port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_app(proxy):
    """The app with every Redis call going through ``proxy``."""
    app = make_app(default_db_url(), REDIS_URL=proxy.url)
    with app.app_context():
        reset_data()
        yield app
        db.session.remove()


@pytest.fixture
def people(loss_app):
    """The cast's customer with KES 5,000, and the second customer, in this module's own app (the
    conftest fixtures belong to the shared one)."""
    juma = person(**CUSTOMER)
    fund(juma.account_id, 500_000)
    return juma, person(**SECOND_CUSTOMER)


def requests_count() -> int:
    n = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    db.session.commit()
    return n


def test_losing_redis_mid_session_ends_it_with_dial_again_and_moves_nothing(loss_app, own_redis, people):
    client = loss_app.test_client()
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "1000")  # at the confirm screen

    own_redis.stop()
    answer = phone.send("1")  # Phone.post asserts a 200 with CON/END
    assert answer == "END Sorry, we are busy. Please dial again."
    assert requests_count() == 0

    own_redis.start()  # back, empty: the session's state is gone
    answer = phone.send(PIN)  # the late hop of the old session starts nothing
    assert answer.startswith(("CON ", "END ")) and PIN not in answer
    assert requests_count() == 0

    again = Phone(client, "0712000111")  # dialling again works as on any day
    assert again.dial().startswith("CON ")
    done = again.walk("1", "0712000222", "1000", "1", PIN)
    assert done.startswith("END Sending KES 1,000.00")
    assert requests_count() == 1


def test_a_transfer_accepted_before_redis_is_lost_is_executed_after_it_comes_back(
    loss_app, own_redis, people
):
    juma, wanjiru = people
    client = loss_app.test_client()
    done = Phone(client, "0712000111").walk("1", "0712000222", "1000", "1", PIN)
    assert done.startswith("END Sending KES 1,000.00")
    [request] = db.session.execute(select(TransferRequest)).scalars()
    request_id = request.id
    db.session.commit()
    assert get_queue().count == 1  # the announcement, about to be lost

    own_redis.restart()
    assert get_queue().count == 0  # the job went with Redis; the database still has the request

    # A worker's maintenance job finds it queued in the database and announces it again.
    run_burst_worker(TUMA_REQUEUE_AFTER_SECONDS=0)

    db.session.expire_all()
    request = db.session.get(TransferRequest, request_id)
    assert request.status == "accepted"
    assert available(wanjiru.account_id) == 100_000
    assert available(juma.account_id) == 500_000 - 100_000 - request.fee
    receipts = db.session.execute(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.transfer_request_id == request_id)
    ).scalar_one()
    assert receipts == 2
    assert all(f.ok for f in check(db.session)), check(db.session)


def test_a_redis_restart_between_two_hops_is_not_seen_by_the_next_hop(loss_app, own_redis, people):
    client = loss_app.test_client()
    assert Phone(client, "0712000111").dial().startswith("CON ")  # the scripts' client connected

    own_redis.restart()  # no hop while it was down: the held connection is to the old server

    again = Phone(client, "0712000111")
    assert again.dial().startswith("CON Tuma")  # not "Sorry, we are busy"
    for typed in ("1", "0712000222", "1000", "1"):
        assert again.send(typed).startswith("CON ")
    assert again.send(PIN).startswith("END Sending KES 1,000.00")
    assert requests_count() == 1


def digest(script: str) -> bytes:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()  # its name in Redis


def both_people(app):
    juma = person(**CUSTOMER)
    fund(juma.account_id, 500_000)
    person(**SECOND_CUSTOMER)


def test_a_hop_whose_session_was_taken_but_the_answer_lost_goes_on(proxied_app, proxy):
    both_people(proxied_app)
    phone = Phone(proxied_app.test_client(), "0712000111")
    assert phone.dial().startswith("CON ")  # the scripts are loaded: the next hop sends EVALSHA

    proxy.lose_reply_to(digest(sessions._ACQUIRE))  # lock taken and session read, reply lost
    asked = phone.send("1")
    assert proxy.lost == 1
    # Sent again, the script finds the session locked with this hop's own token: taken, not
    # "busy" (which it would say after waiting LOCK_WAIT_SECONDS for a lock it held itself).
    assert asked.startswith("CON ") and "number" in asked, asked
    amount = phone.send("0712000222")
    assert amount.startswith("CON ") and "mount" in amount, amount
    assert phone.send("1000").startswith("CON ") and phone.send("1").startswith("CON ")
    assert phone.send(PIN).startswith("END Sending KES 1,000.00")
    assert requests_count() == 1


def test_a_hop_whose_session_was_saved_but_the_answer_lost_goes_on(proxied_app, proxy):
    both_people(proxied_app)
    phone = Phone(proxied_app.test_client(), "0712000111")
    assert phone.dial().startswith("CON ")

    proxy.lose_reply_to(digest(sessions._RELEASE))  # session saved and lock let go, reply lost
    asked = phone.send("1")
    assert proxy.lost == 1
    assert asked.startswith("CON ") and "number" in asked, asked  # saved again: the same writes
    amount = phone.send("0712000222")  # the lock was let go: not "busy"
    assert amount.startswith("CON ") and "mount" in amount, amount


def test_a_script_reply_that_came_too_late_is_never_read_as_another_hops(own_redis):
    """As ``test_redis_sentinel``'s test of the same name, through ``REDIS_URL``: the scripts'
    one held connection, given up on after a timeout, is closed, so its late reply is read by
    no later hop (redis-py's plain connection closes itself; this keeps it so)."""
    app = make_app(default_db_url(), REDIS_URL=own_redis.url, REDIS_SOCKET_TIMEOUT_SECONDS=1.0)
    with app.app_context():
        reset_data()
        person(**CUSTOMER)
        person(**SECOND_CUSTOMER)
        client = app.test_client()
        juma = Phone(client, "0712000111")
        assert juma.walk("1").startswith("CON ")
        admin = redis_lib.Redis.from_url(own_redis.url)
        admin.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")  # the scripts wait
        try:
            assert juma.send("0712000222") == "END Sorry, we are busy. Please dial again."
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")  # Juma's script runs now, and answers late
            admin.close()
        wanjiru = Phone(client, "0712000222")
        home = wanjiru.dial()
        assert home.startswith("CON ") and "Send money" in home, home
        assert sessions.load(wanjiru.session_id).phone == SECOND_CUSTOMER["phone"]
        again = wanjiru.send("2")
        assert again.startswith("CON ") and "Send money" not in again, again
        db.session.remove()


ECHO = "return ARGV[1]"


def _echoes(tag: str, n: int = 400) -> int:
    """How many of ``n`` scripts sent through ``run_script`` came back with another's reply."""
    return sum(run_script(ECHO, [], [f"{tag}-{i}"]) != f"{tag}-{i}".encode() for i in range(n))


def test_a_process_forked_after_its_scripts_client_connected_never_shares_its_socket(loss_app):
    """gunicorn --preload forks its workers from a process that may have run scripts (and rq, a
    process that made its app): parent and child send scripts at the same time, and each gets
    its own replies, never the other's (a socket shared across a fork would mix them)."""
    assert _echoes("warm", 1) == 0  # the parent's one connection is open
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own connection, made on its first script
        try:
            os.write(writer, str(_echoes("child")).encode())
        finally:
            os._exit(0)
    os.close(writer)
    ours = _echoes("parent")
    theirs = b""
    while chunk := os.read(reader, 64):
        theirs += chunk
    os.close(reader)
    os.waitpid(pid, 0)
    assert (ours, theirs) == (0, b"0")
