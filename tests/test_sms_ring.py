"""SMS people wait for at a counter reach the gateway without waiting for the periodic job:
whoever writes an outbox row, its commit rings the SMS sender (``sms/outbox.py``).

A real worker (``python -m worker --no-cron``: no periodic job at all) and the real local
gateway; each test waits for the message in the gateway's inbox."""

import pytest
from rq import Queue

from tests.escrow_helpers import PIN, funded_customer
from tests.helpers import wait_for
from tests.sms_helpers import gateway  # noqa: F401  (fixture)
from tests.ussd_helpers import Phone
from tests.worker_helpers import kill_worker, start_worker
from ussd_app.extensions import db
from ussd_app.queues import SMS_QUEUE, get_redis

AGENT, CUSTOMER = "+254700000101", "+254712000111"


@pytest.fixture
def worker(app, gateway):  # noqa: F811
    """A worker that has sent everything rung so far and waits, idle, for the next ring."""
    funded_customer()  # its receipts were rung by the deposit's batch
    db.session.commit()
    proc = start_worker("--no-cron")
    try:
        wait_for(lambda: len(gateway.inbox(AGENT)) == 2 and gateway.inbox(CUSTOMER), message="the set-up SMS")
        wait_for(lambda: not Queue(SMS_QUEUE, connection=get_redis()).count, message="an empty sms queue")
        yield proc
    finally:
        kill_worker(proc)


def _inbox_says(gateway, phone: str, words: str):  # noqa: F811
    return lambda: [m for m in gateway.inbox(phone) if words in m.message]


def test_an_agent_started_withdrawal_asks_the_customer_at_once(client, gateway, worker):  # noqa: F811
    agent = Phone(client, "0700000101")
    agent.walk("98", "9", "0712000111", "1000", "1")
    assert agent.send("1111").startswith("END ")
    wait_for(_inbox_says(gateway, CUSTOMER, "asks to withdraw"), message="the approval request SMS")


def test_the_mini_statement_is_sent_at_once(client, gateway, worker):  # noqa: F811
    body = Phone(client, "0712000111").walk("2", "2", PIN)
    assert body.startswith("END ")
    wait_for(_inbox_says(gateway, CUSTOMER, "mini statement"), message="the mini statement SMS")


def test_an_e_float_issue_is_told_to_the_agent_at_once(app, runner, gateway, worker):  # noqa: F811
    result = runner.invoke(
        args=["float", "issue", "--phone", AGENT, "--amount", "5000", "--reference", "BANK-77"]
    )
    assert result.exit_code == 0, result.output
    # The command ran in this test's app context and session; end the read it left open (on
    # SQLite it holds the write lock the worker needs; a real CLI process exits instead).
    db.session.rollback()
    wait_for(_inbox_says(gateway, AGENT, "E-float of KES 5,000.00"), message="the e-float SMS")
