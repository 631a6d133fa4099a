"""Builders and fixtures shared by the SMS tests (imported by tests/test_sms_*.py).

The gateway is the real local stand-in for Africa's Talking (devtools/gateway/) on a
real port; the app's AT_API_URL points the real africastalking SDK at it.
"""

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from devtools.gateway import serve_in_thread
from ussd_app.extensions import db
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.tariffs import quote
from ussd_app.users import create_user
from worker import jobs


@pytest.fixture
def gateway(app):
    """A running local gateway, with the app's SDK pointed at it for this test."""
    running = serve_in_thread()
    saved = {k: app.config[k] for k in ("AT_API_URL", "AT_API_KEY", "AT_SENDER_ID")}
    app.config.update(AT_API_URL=running.url, AT_API_KEY="test-key", AT_SENDER_ID="TUMA")
    try:
        yield running.gateway
    finally:
        app.config.update(saved)
        running.stop()


@dataclass(frozen=True)
class Person:
    """What a test needs of a user; plain values, so it outlives the jobs' sessions."""

    phone: str
    account_id: int


def person(phone, name, role="customer", language="en", till=None) -> Person:
    user = create_user(db.session, phone=phone, name=name, role=role, pin=None, language=language, till=till)
    db.session.commit()
    return Person(user.phone, user.account_id)


def agent_with_float(amount=1_000_000_00, phone="+254700000101", name="Ali Agent", language="en") -> Person:
    user = create_user(db.session, phone=phone, name=name, role="agent", pin=None, language=language)
    issue_float(db.session, user, amount)
    db.session.commit()
    return Person(user.phone, user.account_id)


def send(payer, payee, amount, kind="send"):
    """Record a request as the USSD side would (fee quoted), commit, and return its id."""
    request = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=kind,
        debit_account_id=payer.account_id,
        credit_account_id=payee.account_id,
        amount=amount,
        fee=quote(kind, amount),
    )
    request_id = request.id
    db.session.commit()
    return request_id


def execute():
    """What the transfers worker does: one batch, committed, receipts in the outbox."""
    done = jobs.execute_transfers()
    db.session.remove()
    return done


def outbox(**where):
    db.session.expire_all()
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    for name, value in where.items():
        query = query.where(getattr(OutboxMessage, name) == value)
    rows = list(db.session.execute(query).scalars())
    # Release SQLite's lock (senders in other threads/processes need it) and keep the rows as
    # read: rows expired by the commit would be read again on their first attribute, in a new
    # transaction left open, holding the lock until the next call (a poll's whole interval).
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    return rows
