"""An outsider's attack on the ninth round's hop changes: the session JSON by pydantic_core
(``sessions._dumps``/``_loads``), and the PIN hop's unpinged first statement and one-statement
covered insert on PostgreSQL (``database.first_statement``, ``submit.record_covered_row``).

What a value in Redis that cannot be read does to a number (a truncated or foreign session, a
resume snapshot that is not one), a connection the server ends inside the PIN hop (after its
row lock, at its commit), and the balance just enough or one shilling short, through the real
webhook on both databases where it makes sense."""

import logging
import time

import pytest
from sqlalchemy import event

from tests.helpers import fund
from tests.test_attack_pin_hop import PIN, SENDING, SHORT, at_send_pin, juma
from tests.test_pin_hop_dropped_connection import admin, end, recorded
from tests.ussd_helpers import CUSTOMER, SECOND_CUSTOMER, Phone, available, is_resume_offer, person
from ussd_app import tariffs
from ussd_app.extensions import db
from ussd_app.ussd import sessions
from worker.jobs import execute_transfers

__all__ = ["admin", "juma"]  # the fixtures, taken from the PIN-hop tests

JUMA = "+254712000111"
RECORD = "INSERT INTO transfer_requests"  # the PIN hop's record (record_covered_row)
SOMETHING_WENT_WRONG = "END Sorry, something went wrong. Please try again later."


def lock_key(phone: Phone) -> str:
    return f"{sessions.PREFIX}:lock:{phone.session_id}"


# -- values in Redis that cannot be read -----------------------------------------------------

UNREADABLE_RESUMES = [
    b'{"state": "send_money.confirm", "data": {"transfer_id": "ab',  # cut short
    b"\xff\xfe not json",
    b'"a string"',
    b"[1, 2, 3]",
    b"null",
]


@pytest.mark.parametrize("raw", UNREADABLE_RESUMES)
def test_a_resume_snapshot_that_cannot_be_read_does_not_shut_the_number_out(backend_app, raw):
    """The phone's resume snapshot (a key per number, kept five minutes) cut short or not a
    snapshot: every dial of that number failed ("something went wrong") until it expired, and
    each left its session's lock held. It is no offer: the caller gets home, and it is gone."""
    person(**CUSTOMER)
    redis = backend_app.extensions["redis"]
    redis.set(f"{sessions.PREFIX}:resume:{JUMA}", raw, ex=300)
    phone = Phone(backend_app.test_client(), JUMA)
    body = phone.dial()
    assert body.startswith("CON ") and "Send money" in body, body
    assert redis.get(lock_key(phone)) is None
    # The home screen forgot the snapshot (nothing to resume): the next dial is home too.
    assert "Send money" in Phone(backend_app.test_client(), JUMA).dial()


UNREADABLE_SESSIONS = [
    lambda raw: raw[: len(raw) // 2],  # cut short
    lambda raw: b"\x00" + raw,
    lambda raw: b'{"phone": "+254712000111"}',  # no conversation
    lambda raw: b"[]",
]


@pytest.mark.parametrize("spoil", UNREADABLE_SESSIONS)
def test_a_session_value_that_cannot_be_read_ends_the_session_and_lets_its_lock_go(
    backend_app, spoil, caplog
):
    """The session's value in Redis spoiled between two hops: the hop ends cleanly (never a 500,
    never an input applied to a conversation nobody can read), and the session's lock is let
    go: it was held 15 s, so every retry of the gateway waited 10 s to be told 'busy'."""
    customer, _ = person(**CUSTOMER), person(**SECOND_CUSTOMER)
    redis = backend_app.extensions["redis"]
    fund(customer.account_id, 500_000)
    phone = Phone(backend_app.test_client(), JUMA)
    phone.walk("1", "0712000222")
    key = f"{sessions.PREFIX}:session:{phone.session_id}"
    redis.set(key, spoil(redis.get(key)), ex=180)
    with caplog.at_level(logging.ERROR):
        body = phone.send("4000")
    assert body.startswith("END "), body
    assert redis.get(lock_key(phone)) is None
    started = time.monotonic()
    assert phone.send("1").startswith("END ")  # the next hop is answered at once, not "busy"
    assert time.monotonic() - started < sessions.LOCK_WAIT_SECONDS / 2
    assert recorded() == 0
    # The number is not shut out: a new session starts (offered the send it left, or at home).
    body = Phone(backend_app.test_client(), JUMA).dial()
    assert is_resume_offer(body) or "Send money" in body, body


# -- the balance just enough, one shilling short -----------------------------------------------


@pytest.mark.parametrize("short_by", [0, 1])
def test_a_balance_of_exactly_amount_and_fee_sends_and_one_cent_less_is_short(backend_app, short_by):
    customer, _ = person(**CUSTOMER), person(**SECOND_CUSTOMER)
    amount = 4_000_00
    needed = amount + tariffs.quote("send", amount)
    payer = customer.account_id
    fund(payer, needed - short_by)
    phone = at_send_pin(backend_app)
    body = phone.send(PIN)
    if short_by:
        assert body.startswith(SHORT), body
        assert recorded() == 0
    else:
        assert body.startswith(SENDING), body
        assert recorded() == 1
        execute_transfers()
        assert available(payer) == 0
    assert phone.repeat() == body  # the gateway's retry: the same screen, nothing more
    assert recorded() == (0 if short_by else 1)


# -- PostgreSQL: a connection the server ends inside the PIN hop --------------------------------


def ended_at(engine, admin, event_name: str, wanted) -> list:
    """Listen for ``event_name`` on ``engine``; the first time ``wanted(*args)`` holds, end the
    server's side of that connection before the statement (or commit) is sent."""
    ended: list[int] = []

    def listener(conn, *args):
        if not ended and wanted(*args):
            pid = conn.connection.dbapi_connection.info.backend_pid
            ended.append(pid)
            end(admin, [pid])

    event.listen(engine, event_name, listener)
    return ended, lambda: event.remove(engine, event_name, listener)


def _the_record(_cursor, sql, *_) -> bool:
    return RECORD in sql


def pin_with_connection_ended(phone: Phone, admin, event_name: str, wanted) -> str:
    """The PIN hop's answer when the server ends its connection at ``event_name`` (``ended_at``),
    which it must have."""
    db.session.remove()
    ended, stop = ended_at(db.engine, admin, event_name, wanted)
    try:
        body = phone.send(PIN)
    finally:
        stop()
    assert ended
    return body


def test_the_connection_ended_after_the_row_lock_before_the_record_sends_nothing_then_once(app, juma, admin):
    """The server ends the PIN hop's connection after its row lock and the PIN check, before the
    one-statement record is sent: the hop ends 'something went wrong' (no 500, never
    'Sending' nor 'not enough money'), nothing is recorded; the gateway's retry records once."""
    phone = at_send_pin(app)
    body = pin_with_connection_ended(
        phone, admin, "before_cursor_execute", lambda _cur, sql, *_: RECORD in sql
    )
    assert body == SOMETHING_WENT_WRONG, body
    assert recorded() == 0
    assert phone.repeat().startswith(SENDING)
    assert recorded() == 1
    assert phone.repeat().startswith(SENDING)
    assert recorded() == 1


def test_the_connection_ended_at_the_pin_hops_commit_sends_nothing_then_once(app, juma, admin):
    """The server ends the connection as the PIN hop commits (the COMMIT never reaches it): the
    hop ends 'something went wrong', nothing is recorded, the session is still at its PIN
    screen, and the retry records once: no send lost, none doubled."""
    payer = juma.account_id
    phone = at_send_pin(app)
    body = pin_with_connection_ended(phone, admin, "commit", lambda *_: True)
    assert body == SOMETHING_WENT_WRONG, body
    assert recorded() == 0
    assert phone.repeat().startswith(SENDING)
    assert recorded() == 1
    execute_transfers()
    assert available(payer) == 500_000 - 4_000_00 - tariffs.quote("send", 4_000_00)


ODD_SNAPSHOTS = [
    {"state": "send_money.no_such_screen", "data": {"amount": 400000}},  # a state renamed by a deploy
    {"state": "send_money.confirm", "data": "not a dict"},
    {"data": {"transfer_id": 12}},
    {"state": 7, "history": "x"},
]


@pytest.mark.parametrize("snapshot", ODD_SNAPSHOTS)
def test_a_resume_snapshot_of_another_shape_never_fails_a_dial(backend_app, snapshot):
    import json

    person(**CUSTOMER)
    redis = backend_app.extensions["redis"]
    redis.set(f"{sessions.PREFIX}:resume:{JUMA}", json.dumps(snapshot), ex=300)
    phone = Phone(backend_app.test_client(), JUMA)
    body = phone.dial()
    assert body.startswith("CON "), body
    body = phone.send("1")  # yes to whatever was offered, or the first item of home
    assert body.startswith("CON "), body
    assert redis.get(lock_key(phone)) is None


# -- sealed values: an order rewritten in Redis is never the one a PIN authorises ---------------

SESSION_ENDED = "END Your session has ended. Please dial again."


def _session_key(phone: Phone) -> str:
    return f"{sessions.PREFIX}:session:{phone.session_id}"


def _rewritten(owner: str, raw: bytes, how: str) -> bytes:
    """The session's value with its order changed (KES 4,000 to KES 40,000), written as someone
    with Redis access might: as plain JSON, or behind the value's own seal."""
    import json

    doc = json.loads(sessions.unseal(owner, raw))
    data = doc["data"]
    assert data["amount"] == 4_000_00, data  # what the person confirmed
    data["amount"] = 40_000_00
    body = json.dumps(doc).encode()
    if how == "plain json":
        return body
    return raw[: len(sessions.SEAL_PREFIX) + 65] + body  # the first value's seal, the new order


@pytest.mark.parametrize("how", ["plain json", "the old seal"])
def test_an_order_rewritten_in_redis_between_confirm_and_pin_is_never_sent(backend_app, how):
    """Someone who can write to Redis changes a confirmed send (KES 4,000 to Wanjiru) into
    KES 40,000 between the confirm screen and the PIN: the person's PIN would have authorised
    an order they never saw. The value is sealed for its session: a rewritten one is unreadable,
    the session ends, nothing is recorded, and the money stays."""
    customer, _ = person(**CUSTOMER), person(**SECOND_CUSTOMER)
    fund(customer.account_id, 5_000_000)
    redis = backend_app.extensions["redis"]
    phone = at_send_pin(backend_app)
    key = _session_key(phone)
    redis.set(key, _rewritten(key, redis.get(key), how), ex=180)
    assert phone.send(PIN) == SESSION_ENDED
    assert recorded() == 0
    assert available(customer.account_id) == 5_000_000
    assert redis.get(lock_key(phone)) is None


def test_a_session_value_moved_from_another_session_is_not_taken(backend_app):
    """Another session's sealed value (Wanjiru's, at her PIN screen) copied under Juma's session
    id: sealed for its own session, it is not Juma's; his hop ends the session, nothing runs."""
    juma_user, wanjiru = person(**CUSTOMER), person(**SECOND_CUSTOMER)
    fund(wanjiru.account_id, 5_000_000)
    redis = backend_app.extensions["redis"]
    hers = Phone(backend_app.test_client(), "0712000222")
    assert "Enter your PIN" in hers.walk("1", "0712000111", "4000", "1")
    his = Phone(backend_app.test_client(), JUMA)
    his.dial()
    redis.set(_session_key(his), redis.get(_session_key(hers)), ex=180)
    assert his.send(PIN) == SESSION_ENDED
    assert recorded() == 0
    assert available(wanjiru.account_id) == 5_000_000 and available(juma_user.account_id) == 0


def test_a_resume_snapshot_moved_from_another_number_is_not_offered(backend_app):
    """Juma's resume snapshot (a send he left at the amount) copied under Wanjiru's number: it
    is sealed for his, so her dial is no offer of his send, only her home menu."""
    person(**CUSTOMER), person(**SECOND_CUSTOMER)
    redis = backend_app.extensions["redis"]
    Phone(backend_app.test_client(), JUMA).walk("1", "0712000222")
    his = redis.get(f"{sessions.PREFIX}:resume:{JUMA}")
    assert his  # he was offered it back
    assert is_resume_offer(Phone(backend_app.test_client(), JUMA).dial())
    redis.set(f"{sessions.PREFIX}:resume:+254712000222", his, ex=300)
    body = Phone(backend_app.test_client(), "0712000222").dial()
    assert not is_resume_offer(body) and "Send money" in body, body
