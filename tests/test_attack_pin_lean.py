"""An outsider's attacks on the lean PIN hop (65583b7, 160771a, 51661e3): the caller's row read
by a plain locked statement, the request recorded by one INSERT ... ON CONFLICT, and what must
follow the commit (the transfer's doorbell, its trace id, the name look-up's cancel taken
back) held and sent with the session's release in one round trip. A hop that fails after its
commit, a rollback, a lost reply to that round trip, a replay, the PIN kept out of Redis and
the logs, and the menu hops' raw reads left with no connection in a transaction."""

import json
import logging

import pytest
import redis as redis_lib
from sqlalchemy import func, select, text

from tests import test_attack_pin_hop as pin_hop
from tests.helpers import fund
from tests.test_attack_pin_hop import JUMA, PIN, SENDING, at_send_pin
from tests.ussd_helpers import Phone, available, put_session_doc, session_doc
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.queues import TRANSFERS_DOORBELL, TRANSFERS_QUEUE, get_queue
from ussd_app.ussd import sessions
from worker.jobs import execute_transfers

WRONG_PIN = "1593"
WENT_WRONG = "END Sorry, something went wrong. Please try again later."
juma = pin_hop.juma  # Juma with KES 5,000: one send of KES 4,000 and its fee, not two


def requests() -> list[TransferRequest]:
    found = list(db.session.execute(select(TransferRequest).order_by(TransferRequest.created_at)).scalars())
    db.session.commit()
    return found


def stored(redis, phone: Phone) -> dict:
    return session_doc(redis, phone.session_id)


def lock_of(redis, phone: Phone) -> list:
    return redis.keys(f"{sessions.PREFIX}:lock:*{phone.session_id}")


def queued_ids() -> list:
    return [job.args for job in get_queue(TRANSFERS_QUEUE).get_jobs()]


@pytest.fixture
def fails_after_commit(monkeypatch):
    """``fails_after_commit()``: from now on a hop raises after its commit, before it saves the
    session (its snapshot fails); ``fails_after_commit.undo()`` ends that."""
    from ussd_app.ussd import views

    def boom(*args, **kwargs):
        raise LookupError("after the commit")

    def fail():
        monkeypatch.setattr(views.engine, "snapshot", boom)

    fail.undo = monkeypatch.undo
    return fail


# -- a hop that fails after its commit --------------------------------------------------------


def test_a_pin_hop_that_fails_after_its_commit_rings_its_transfer_and_lets_the_session_go(
    app, juma, redis, fails_after_commit
):
    phone = at_send_pin(app)
    redis.delete(TRANSFERS_DOORBELL)
    get_queue(TRANSFERS_QUEUE).empty()
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG  # not "Nothing was sent": it was recorded
    [request] = requests()
    assert request.status == "queued"
    assert queued_ids() == [(request.id,)]  # rung with the release, not left to the periodic job
    assert lock_of(redis, phone) == []
    execute_transfers()
    assert [r.status for r in requests()] == ["accepted"]


def test_the_gateway_retrying_a_pin_hop_that_failed_after_its_commit_sends_nothing_twice(
    app, juma, redis, fails_after_commit
):
    phone = at_send_pin(app, "100")
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG
    fails_after_commit.undo()
    # The session was not saved (the hop failed), so the same text is no repeat: it runs again,
    # under the id minted at the confirm screen: the one request.
    assert phone.repeat().startswith("END Sending KES 100.00")
    assert len(requests()) == 1


def test_a_retried_pin_hop_after_the_worker_posted_its_transfer_does_not_say_short(
    app, juma, redis, fails_after_commit
):
    """The first run of the PIN hop committed the send of most of the balance and then failed;
    the worker posted it; the gateway (or the person) sends the same PIN hop again. The request
    is the one recorded: the hop must not tell the person there is not enough money (they
    would think it did not go, and the money is gone)."""
    phone = at_send_pin(app)
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG
    fails_after_commit.undo()
    execute_transfers()
    [request] = requests()
    assert request.status == "accepted"
    again = phone.repeat()
    assert again.startswith(SENDING), again
    assert len(requests()) == 1


def test_a_retried_airtime_pin_hop_after_the_worker_held_its_money_does_not_say_short(
    app, juma, redis, fails_after_commit
):
    phone = Phone(app.test_client(), "0712000111")
    assert phone.walk("7", "1", "3000", "1").startswith("CON Enter your PIN to buy KES 3,000.00")
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG
    fails_after_commit.undo()
    execute_transfers()
    [request] = requests()
    assert request.status == "accepted" and available(juma.account_id) == 500_000 - 300_000
    again = phone.repeat()
    assert again.startswith("END Buying KES 3,000.00"), again
    assert len(requests()) == 1


# -- a rollback -------------------------------------------------------------------------------


def test_a_pin_hop_rolled_back_after_its_insert_rings_nothing_and_keeps_the_name_cancel(
    app, juma, redis, monkeypatch
):
    """The hop records the request and takes back the name look-up's cancel, then fails before
    its commit (a database error): nothing was recorded, so no doorbell, no trace id, and the
    cancel counted when the name was shown stays counted."""
    from ussd_app.ussd.flows import fraud_checks

    phone = at_send_pin(app)
    cancels = f"tuma:fraud:cancels:{JUMA}"
    counted = redis.get(cancels)
    assert counted is not None  # the name shown at the confirm screen counted one
    redis.delete(TRANSFERS_DOORBELL)
    get_queue(TRANSFERS_QUEUE).empty()
    real = fraud_checks.name_used

    def then_fails(ctx, token):
        real(ctx, token)
        db.session.execute(text("SELECT * FROM no_such_table"))

    monkeypatch.setattr(fraud_checks, "name_used", then_fails)
    assert phone.send(PIN) == WENT_WRONG
    assert requests() == []
    assert queued_ids() == [] and redis.get(TRANSFERS_DOORBELL) is None
    assert redis.keys("tuma:trace:*") == []
    assert redis.get(cancels) == counted
    assert lock_of(redis, phone) == []


def test_a_different_order_under_the_hops_request_id_ends_clearly_and_moves_nothing(app, juma, redis):
    """Someone (or something) recorded another order under the id the confirm screen minted:
    the PIN hop answers the error screen, not a crash, and Juma's wallet is untouched."""
    from ussd_app.payments.submit import record_request_row

    phone = at_send_pin(app)
    transfer_id = stored(redis, phone)["data"]["transfer_id"]
    record_request_row(
        db.session,
        request_id=transfer_id,
        kind="send",
        debit_account_id=juma.account_id,
        credit_account_id=juma.account_id,
        amount=1,
    )
    db.session.commit()
    answer = phone.send(PIN)
    assert answer == "END Sorry, something went wrong. Nothing was sent. Please try again later."
    [request] = requests()
    assert request.amount == 1
    assert available(juma.account_id) == 500_000


# -- the PIN kept out of Redis and the logs ---------------------------------------------------


def _pin_shapes(pin: str) -> list[str]:
    return [f"*{pin}", f'"{pin}"', f"={pin}", f": {pin}", f"'{pin}'", f"text={pin}"]


def test_no_pin_typed_on_a_pin_hop_is_kept_in_redis_or_written_to_the_logs(app, juma, redis, caplog):
    caplog.set_level(logging.DEBUG)
    phone = at_send_pin(app, "100")
    assert phone.send(WRONG_PIN).startswith("CON Wrong PIN")
    assert phone.send(PIN).startswith("END Sending KES 100.00")
    execute_transfers()
    kept = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        if kind == b"string":
            kept.append(redis.get(key))
        elif kind == b"hash":
            kept.extend(v for pair in redis.hgetall(key).items() for v in pair)
        elif kind == b"list":
            kept.extend(redis.lrange(key, 0, -1))
        elif kind in (b"set", b"zset"):
            kept.extend(redis.smembers(key) if kind == b"set" else redis.zrange(key, 0, -1))
        kept.append(key)
    blob = b"\n".join(k if isinstance(k, bytes) else str(k).encode() for k in kept).decode(errors="replace")
    logs = "\n".join(r.getMessage() + " " + json.dumps(r.__dict__, default=str) for r in caplog.records)
    for pin in (PIN, WRONG_PIN):
        for shape in _pin_shapes(pin):
            assert shape not in blob, (shape, "redis")
            assert shape not in logs, (shape, "logs")
        assert f"1*0712000222*100*1*{pin}" not in blob + logs


# -- the menu hops' raw reads -----------------------------------------------------------------

ODD_RECIPIENTS = [
    "0712' OR '1'='1",
    "0712000222; DROP TABLE users;--",
    "０７１２０００２２２",  # full-width digits
    "٠٧١٢٠٠٠٢٢٢",  # Arabic-Indic digits
    "+254712000222\x00",
    "07120002229" * 12,
    "%s%s%(phone)s",
    "☎0712000222",
]


@pytest.mark.parametrize("typed", ODD_RECIPIENTS)
def test_odd_recipient_numbers_get_a_screen_and_never_reach_a_transfer(app, juma, typed):
    phone = Phone(app.test_client(), "0712000111")
    phone.walk("1")
    answer = phone.send(typed)
    assert answer.startswith(("CON ", "END ")), answer
    assert requests() == []
    # The session still answers: the read left nothing broken behind it.
    assert phone.send("0712000222").startswith("CON ")


def test_menu_hop_reads_leave_no_connection_in_a_transaction_or_checked_out(app, juma):
    from ussd_app import reads

    if db.engine.dialect.name != "postgresql":
        pytest.skip("the hop reads' own engine: PostgreSQL")
    for typed in [*ODD_RECIPIENTS, "0712000222"]:
        phone = Phone(app.test_client(), "0712000111")
        phone.walk("1", typed)
    engine = reads.engine(app)
    assert engine.pool.checkedout() == 0
    database = db.engine.url.database
    stuck = db.session.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
            " AND state LIKE 'idle in transaction%'"
        ),
        {"db": database},
    ).scalar_one()
    db.session.commit()
    assert stuck == 0


def test_a_hop_read_on_a_connection_the_server_ended_is_read_again(app, juma):
    from ussd_app import reads

    if db.engine.dialect.name != "postgresql":
        pytest.skip("the hop reads' own engine: PostgreSQL")
    phone = Phone(app.test_client(), "0712000111")
    phone.walk("1")
    assert "Wanjiru" in phone.send("0712000222")  # the read engine has a connection now
    ended = db.session.execute(
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"
            " AND pid <> pg_backend_pid() AND state = 'idle'"
        ),
        {"db": db.engine.url.database},
    ).all()
    db.session.commit()
    assert ended
    again = Phone(app.test_client(), "0712000111")
    again.walk("1")
    assert "Wanjiru" in again.send("0712000222")
    assert reads.engine(app).pool.checkedout() == 0
    count = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    db.session.commit()
    assert count == 0


# -- the release's round trip broken after Redis ran it ---------------------------------------


def _own_redis_app(with_proxy: bool, **config):
    """An app of its own on a redis-server of its own (``with_proxy``: every call through a
    proxy that can lose one reply), Juma with KES 5,000 and Wanjiru: (app, proxy, server).
    ``config``: more settings for the app (a Redis socket timeout)."""
    import shutil

    from tests.conftest import default_db_url, make_app, reset_data
    from tests.redis_helpers import OwnRedis, ReplyLosingProxy
    from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, person

    if not shutil.which("redis-server"):
        pytest.skip("needs a redis-server binary")
    server = OwnRedis()
    server.start()
    proxy = ReplyLosingProxy(server.port) if with_proxy else None
    app = make_app(
        default_db_url(), REDIS_URL=proxy.url if proxy else server.url, NAME_CANCEL_LIMIT=100, **config
    )
    try:
        with app.app_context():
            reset_data()
            juma = person(**CUSTOMER)
            fund(juma.account_id, 500_000)
            person(**SECOND_CUSTOMER)
            db.session.commit()
            yield app, proxy, server
            db.session.remove()
    finally:
        if proxy is not None:
            proxy.close()
        server.stop()


@pytest.fixture
def proxied():
    yield from _own_redis_app(True)


@pytest.fixture
def own_redis_app():
    yield from _own_redis_app(False)


# A socket timeout short enough for a test to wait it out (production's is 5 s).
SHORT_TIMEOUT = 0.4


@pytest.fixture
def proxied_short():
    yield from _own_redis_app(True, REDIS_SOCKET_TIMEOUT_SECONDS=SHORT_TIMEOUT)


@pytest.fixture
def short_timeout_app():
    yield from _own_redis_app(False, REDIS_SOCKET_TIMEOUT_SECONDS=SHORT_TIMEOUT)


def test_a_pin_hop_whose_release_reply_is_lost_says_sending_and_its_transfer_is_rung(proxied):
    """The PIN hop's one round trip after its commit (the session's release with the transfer's
    doorbell, trace id and cancel taken back) runs on the server, and the connection breaks
    before the reply is read. A menu hop's release is sent again then (the scripts' client's
    one retry) and the hop answers as usual (test_redis_loss); the PIN hop, whose money was
    recorded, must not tell the person that something went wrong (they would send again),
    and its transfer must get its job (its doorbell was set by the lost round trip: left so,
    nothing rings for the next minute, every sender's transfers wait for the periodic job)."""
    from tests.test_redis_loss import digest

    app, proxy, _ = proxied
    phone = at_send_pin(app)
    proxy.lose_reply_to(digest(sessions._RELEASE))
    answer = phone.send(PIN)
    assert proxy.lost == 1
    [request] = requests()
    assert answer.startswith(SENDING), answer
    assert queued_ids() == [(request.id,)]
    assert phone.repeat() == answer  # the session was saved: the gateway's retry is a repeat
    execute_transfers()
    assert [r.status for r in requests()] == ["accepted"]


def test_a_pin_hop_whose_release_reply_times_out_is_rung_and_lets_the_session_go(proxied_short):
    """The release's round trip runs on the server (the session written, the lock let go, the
    transfer's doorbell set) and its reply never comes: the read times out, the connection
    still open. Sent again as a broken connection's is (the release is safe twice: the lock's
    compare-and-delete finds it gone, the session is written with the same state), and the
    transfer's job enqueued whatever its doorbell holds: left as it was, the doorbell set by
    the timed-out round trip turned every ring away with no job behind it for a minute."""
    from tests.test_redis_loss import digest

    app, proxy, server = proxied_short
    phone = at_send_pin(app)
    proxy.hold_reply_to(digest(sessions._RELEASE))
    answer = phone.send(PIN)
    assert proxy.lost == 1
    [request] = requests()
    assert answer.startswith(SENDING), answer
    assert queued_ids() == [(request.id,)]
    own = redis_lib.Redis.from_url(server.url)
    try:
        assert own.keys(f"{sessions.PREFIX}:lock:*") == []
    finally:
        own.close()
    assert phone.repeat() == answer  # the session was saved: the gateway's retry is a repeat
    execute_transfers()
    assert [r.status for r in requests()] == ["accepted"]


def test_a_pin_hop_whose_release_waits_out_a_paused_redis_is_rung_and_lets_the_session_go(
    short_timeout_app, monkeypatch
):
    """Redis stops taking writes (``CLIENT PAUSE ... WRITE``, as during a failover) right after
    the PIN hop's commit, for longer than the client's socket timeout: the release's round trip
    times out before the server ran it. Sent again, it runs once the pause ends; the transfer's
    job is enqueued and the session let go, so the gateway's retry is a repeat, not "busy"."""
    from ussd_app.ussd import views

    app, _, server = short_timeout_app
    phone = at_send_pin(app)
    real = views.engine.snapshot
    own = redis_lib.Redis.from_url(server.url)

    def redis_pauses(*args, **kwargs):
        own.execute_command("CLIENT", "PAUSE", int(SHORT_TIMEOUT * 1000 * 1.6), "WRITE")
        return real(*args, **kwargs)

    monkeypatch.setattr(views.engine, "snapshot", redis_pauses)
    try:
        answer = phone.send(PIN)
        monkeypatch.undo()
        [request] = requests()
        assert answer.startswith(SENDING), answer
        assert queued_ids() == [(request.id,)]
        assert own.keys(f"{sessions.PREFIX}:lock:*") == []
        assert phone.repeat() == answer
    finally:
        own.execute_command("CLIENT", "UNPAUSE")
        own.close()
    execute_transfers()
    assert [r.status for r in requests()] == ["accepted"]


def test_redis_lost_between_a_pin_hops_commit_and_its_release_leaves_the_transfer_to_the_periodic_job(
    own_redis_app, monkeypatch
):
    """Redis goes down after the PIN hop committed its request, before the release: the person
    is answered with the hop's own last screen, "Sending ..." (it was recorded; neither "nothing
    was sent" nor "try again", which invites a second send), and the request, never rung, is
    executed once Redis is back by the maintenance job that looks for unannounced requests."""
    from tests.worker_helpers import run_burst_worker
    from ussd_app.ussd import views

    app, _, server = own_redis_app
    phone = at_send_pin(app)
    real = views.engine.snapshot

    def redis_goes(*args, **kwargs):
        server.stop()
        return real(*args, **kwargs)

    monkeypatch.setattr(views.engine, "snapshot", redis_goes)
    answer = phone.send(PIN)
    assert answer.startswith(SENDING), answer
    monkeypatch.undo()
    [request] = requests()
    assert request.status == "queued"
    server.start()  # back, empty: no job, no doorbell
    assert queued_ids() == []
    run_burst_worker(TUMA_REQUEUE_AFTER_SECONDS=0)
    assert [r.status for r in requests()] == ["accepted"]


# -- at once ----------------------------------------------------------------------------------


def _at_once(app, *calls) -> list[str]:
    from tests.escrow_helpers import at_once

    return at_once(app, *calls)


def test_the_same_pin_hop_sent_twice_at_once_by_the_gateway_records_one_transfer(app, juma):
    phone = at_send_pin(app, "100")
    text_ = "*".join([*phone.inputs, PIN])
    answers = _at_once(app, lambda: phone.post(text_), lambda: phone.post(text_))
    assert all(a.startswith(("END Sending KES 100.00", "END Sorry, we are busy")) for a in answers), answers
    assert any(a.startswith("END Sending KES 100.00") for a in answers), answers
    assert len(requests()) == 1


def test_two_resumed_sessions_of_one_number_in_two_spellings_confirming_at_once_record_one(app, juma):
    """Juma dropped at the confirm screen; he dials twice (two spellings of his number reach us
    from two gateways), each session takes the offer, and both type the PIN at once: one
    request under the id the first session minted, never two."""
    first = Phone(app.test_client(), "0712000111")
    first.walk("1", "0712000222", "1613")
    sessions_ = [Phone(app.test_client(), number) for number in ("+254712000111", "254712000111")]
    for again in sessions_:  # both dial while it is on offer
        assert "Continue sending KES 1,613.00" in again.dial()
    for again in sessions_:
        again.send("1")
        assert "Enter your PIN" in again.send("1")
    answers = _at_once(app, *(lambda p=p: p.send(PIN) for p in sessions_))
    assert all(a.startswith("END Sending KES 1,613.00") for a in answers), answers
    assert len(requests()) == 1


def test_two_spellings_spending_the_whole_balance_at_once_one_posts_and_the_other_is_told(app, juma):
    """Each session of Juma's (two spellings) sends KES 4,000 of his KES 5,000 at once: the
    wallet pays one; the other is refused by the worker, and Juma gets an SMS about it (the
    screen said "Sending": the SMS is what tells him it did not go)."""
    from ussd_app.sms.outbox import OutboxMessage

    phones = [at_send_pin(app, number=number) for number in ("0712000111", "+254712000111")]
    answers = _at_once(app, *(lambda p=p: p.send(PIN) for p in phones))
    assert all(a.startswith((SENDING, "END Not enough money")) for a in answers), answers
    execute_transfers()
    done = requests()
    assert sorted(r.status for r in done) in (["accepted"], ["accepted", "rejected"])
    assert available(juma.account_id) >= 0
    for refused in (r for r in done if r.status == "rejected"):
        told = db.session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.transfer_request_id == refused.id)
        ).scalar_one()
        db.session.commit()
        assert told >= 1, "the refused send was never told"


# -- one person's request id under another's hop ----------------------------------------------


@pytest.mark.parametrize("funded", [True, False])
def test_another_callers_request_id_under_a_pin_hop_is_refused_and_never_answered_with_it(
    app, juma, redis, funded
):
    """Wanjiru's session at the PIN screen carries the id of a request Juma recorded (as if the
    minted ids met, or her session's data were tampered with): her hop answers the error screen,
    never "Sending" with Juma's transfer, whether her balance covers it or not (a short balance
    asks whether the id is recorded: it is, but not as her order)."""
    juma_phone = at_send_pin(app, "100")
    assert juma_phone.send(PIN).startswith("END Sending KES 100.00")
    [jumas] = requests()
    wanjiru = db.session.execute(select(type(juma)).where(type(juma).phone == "+254712000222")).scalar_one()
    if funded:
        fund(wanjiru.account_id, 500_000)
    db.session.commit()
    phone = Phone(app.test_client(), "0712000222")
    assert "Enter your PIN" in phone.walk("1", "0712000111", "100", "1")
    kept = session_doc(redis, phone.session_id)
    kept["data"]["transfer_id"] = jumas.id  # a minted id that collides (the session sealed as the app would)
    put_session_doc(redis, phone.session_id, kept)
    answer = phone.send("9753")
    assert answer == "END Sorry, something went wrong. Nothing was sent. Please try again later.", answer
    assert [(r.id, r.debit_account_id) for r in requests()] == [(jumas.id, juma.account_id)]


def test_a_menu_hop_that_reads_nothing_makes_no_database_session(app, customer):
    """Holding the hop's announcements for its release makes no database session (956d86f: a
    menu hop that never asks for one has none, and no teardown closing it)."""
    phone = Phone(app.test_client(), "0712000111")
    phone.dial()
    assert phone.send("2").startswith("CON ")
    db.session.remove()  # (the test's app context is the requests' here)
    assert phone.send("0").startswith("CON ")
    assert not db.session.registry.has()


def test_a_retried_buy_goods_pin_hop_after_the_worker_paid_the_till_does_not_say_short(
    app, juma, merchant, fails_after_commit
):
    """The same through ``record_payment`` (buy goods, as withdraw, tips, pay bill and an agent's
    deposit): KES 4,000 of Juma's KES 5,000 paid, the retried hop says paying, not short."""
    phone = Phone(app.test_client(), "0712000111")
    assert phone.walk("5", "123456", "4000", "1").startswith("CON Enter your PIN to pay KES 4,000.00")
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG
    fails_after_commit.undo()
    execute_transfers()
    [request] = requests()
    assert request.status == "accepted" and available(juma.account_id) == 500_000 - 400_000
    again = phone.repeat()
    assert again.startswith("END Paying KES 4,000.00 to Mama Mboga"), again
    assert len(requests()) == 1


def test_the_pin_hops_trace_id_is_remembered_with_its_release_even_when_it_fails_after_the_commit(
    app, juma, redis, fails_after_commit
):
    """The trace id the gateway's proxy gave the PIN hop names its transfer in Redis after the
    commit (sent with the release), also when the hop failed after its commit."""
    for fails, trace in ((False, "trace-ok-0001"), (True, "trace-failed-0002")):
        phone = at_send_pin(app, "100")
        if fails:
            fails_after_commit()
        body = phone.client.post(
            "/ussd",
            data={
                "sessionId": phone.session_id,
                "serviceCode": "*384*7#",
                "phoneNumber": phone.number,
                "networkCode": "63902",
                "text": "*".join([*phone.inputs, PIN]),
            },
            headers={"X-Request-Id": trace},
        ).get_data(as_text=True)
        fails_after_commit.undo()
        assert body == WENT_WRONG if fails else body.startswith("END Sending KES 100.00"), body
        newest = requests()[-1]
        assert redis.get(f"tuma:trace:{newest.id}") == trace.encode()


def test_the_pin_hop_that_locks_the_pin_rings_the_sms_sender_with_its_release(app, juma, redis):
    """The lock's SMS to the holder (someone else may be trying his PIN) is written by the hop
    that locks, and its sender rung with the release: not left for the periodic job."""
    from ussd_app.queues import SMS_DOORBELL, SMS_QUEUE

    phone = at_send_pin(app)
    redis.delete(SMS_DOORBELL)
    get_queue(SMS_QUEUE).empty()
    for _ in range(app.config["PIN_MAX_ATTEMPTS"] - 1):
        assert phone.send(WRONG_PIN).startswith("CON Wrong PIN")
    assert get_queue(SMS_QUEUE).count == 0
    assert phone.send(WRONG_PIN).startswith("END Your PIN is locked")
    assert get_queue(SMS_QUEUE).count == 1
    assert requests() == []


def test_a_retried_allowance_pin_hop_after_the_worker_held_its_limit_does_not_say_short(
    app, juma, merchant, fails_after_commit
):
    """An allowance started with KES 4,000 of Juma's KES 5,000 as its limit: the first run of
    the PIN hop recorded it and failed after its commit; the worker held the limit; the retry
    is answered as the allowance recorded, not "not enough money"."""
    from tests.test_ussd_allowances import ALLOWANCES, TILL
    from tests.test_ussd_allowances import work as worker_runs
    from ussd_app.payments.allowances import customer as al

    account = juma.account_id  # (the worker's run ends the session)
    phone = Phone(app.test_client(), "0712000111")
    phone.walk(ALLOWANCES, "1")
    phone.send(TILL)
    phone.send("4000")
    phone.send("2")
    assert phone.send("1").startswith("CON Enter your PIN to allow Mama Mboga up to KES 4,000.00")
    fails_after_commit()
    assert phone.send(PIN) == WENT_WRONG
    fails_after_commit.undo()
    worker_runs()
    assert available(account) == 500_000 - 400_000
    again = phone.repeat()
    assert again.startswith("END Allowance to Mama Mboga active"), again
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 1
    db.session.commit()
