"""PINs never reach the logs or Redis, whatever the flow."""

import logging
import re

import pytest

from tests.helpers import fund
from tests.ussd_helpers import Phone
from ussd_app.ussd.engine import Step
from ussd_app.ussd.flows import engine
from ussd_app.ussd.views import redact
from worker.jobs import execute_transfers

PIN = "8642"
NEW_PIN = "7531"
# A PIN standing on its own: not inside a longer run of digits or hex (ids, digests, clocks).
LEAK = re.compile(rf"(?<![0-9a-fA-F])({PIN}|{NEW_PIN})(?![0-9a-fA-F])")


def leaks_in_redis(redis) -> list[str]:
    found = []
    for key in redis.scan_iter(count=1000):
        values: list[bytes] = [key]
        kind = redis.type(key)
        if kind == b"string":
            values.append(redis.get(key))
        elif kind == b"hash":
            for k, v in redis.hgetall(key).items():
                values += [k, v]
        elif kind == b"list":
            values += redis.lrange(key, 0, -1)
        elif kind in (b"set",):
            values += list(redis.smembers(key))
        elif kind == b"zset":
            values += [m for m, _ in redis.zrange(key, 0, -1, withscores=True)]
        for value in values:
            if value and LEAK.search(value.decode("latin-1")):
                found.append(key.decode("latin-1"))
    return found


@pytest.fixture
def everything_logged(caplog):
    # Alembic's fileConfig (run in-process when the test schema is built) disables every
    # logger that existed then; turn ours back on so this test sees all they write.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in LOGGED:
            monkeypatch_disabled(logger)
    caplog.set_level(logging.DEBUG)
    for name in LOGGED:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    for logger, was in _disabled.items():
        logger.disabled = was
    _disabled.clear()


LOGGED = ("werkzeug", "flask", "ussd_app", "worker", "rq", "sqlalchemy")
_disabled: dict[logging.Logger, bool] = {}


def monkeypatch_disabled(logger: logging.Logger) -> None:
    _disabled.setdefault(logger, logger.disabled)
    logger.disabled = False


def test_no_pin_in_any_log_line_or_redis_during_send_money(
    app, client, redis, everything_logged, customer, second_customer
):
    fund(customer.account_id, 500_000)
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "1000", "1", "1111")  # a wrong PIN first
    assert phone.send(PIN).startswith("END Sending")
    phone.repeat()
    assert leaks_in_redis(redis) == []
    execute_transfers()
    lines = [r.getMessage() for r in everything_logged.records]
    lines += [everything_logged.text]
    assert any("ussd hop" in line for line in lines)  # the hops were logged, redacted
    assert [line for line in lines if LEAK.search(line)] == []
    assert leaks_in_redis(redis) == []


def test_no_pin_in_redis_while_registering_or_changing_pin(app, client, redis, everything_logged):
    phone = Phone(client, "0712000444")
    phone.walk("1", "Amina", "Hassan", PIN)
    assert leaks_in_redis(redis) == []  # between the two PIN entries: only a hash is held
    phone.send(PIN)
    change = Phone(client, "0712000444")
    change.walk("2", "3", PIN, NEW_PIN)
    assert leaks_in_redis(redis) == []
    assert change.send(NEW_PIN) == "END Your PIN has been changed."
    assert leaks_in_redis(redis) == []
    assert [r.getMessage() for r in everything_logged.records if LEAK.search(r.getMessage())] == []


def test_a_failure_mid_request_logs_no_pin(app, client, redis, everything_logged, monkeypatch, customer):
    """Even an unexpected error whose message quotes the input logs only its type."""

    def broken(ctx):
        raise RuntimeError(f"boom with {ctx.secret}")

    monkeypatch.setitem(engine.states, "my_account.check_balance_pin", Step("a step that fails", broken, {}))
    body = Phone(client, "0712000111").walk("2", "1", PIN)
    assert body == "END Sorry, something went wrong. Please try again later."
    assert any("RuntimeError" in r.getMessage() for r in everything_logged.records)
    assert [r for r in everything_logged.records if LEAK.search(r.getMessage())] == []
    assert leaks_in_redis(redis) == []


def test_redact_keeps_the_shape_only():
    assert redact("1*0712000222*1000*1*8642") == "#*#(10)*#(4)*#*#(4)"
    assert redact("") == "''"
