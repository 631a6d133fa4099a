"""The back office's webhook deliveries: the log, and a resend that goes through the CSRF
check, is audited, and reaches the merchant's system again under the same event id."""

import pytest
from sqlalchemy import select

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import funded_customer
from tests.events_helpers import endpoint_for, running_receiver
from ussd_app.admin.models import AuditEntry
from ussd_app.events.models import Delivery
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind
from ussd_app.payments.submit import mint_request_id, record_request
from worker import jobs


@pytest.fixture
def receiver():
    yield from running_receiver()


@pytest.fixture
def delivered(app, merchant, receiver):
    """One payment received, its event delivered to the merchant's system."""
    payer = funded_customer()
    secret = endpoint_for(merchant.account_id, receiver)
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.BUY_GOODS.value,
        debit_account_id=payer,
        credit_account_id=merchant.account_id,
        amount=100_00,
    )
    db.session.commit()
    jobs.execute_transfers()
    assert jobs.deliver_events()["delivered"] == 1
    return db.session.execute(select(Delivery)).scalar_one(), secret


def test_the_log_shows_each_delivery_and_never_the_secret(client, delivered):
    row, secret = delivered
    operator()
    login(client)
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert row.event_id in page and "payment.received" in page and "delivered" in page
    assert "Mama Mboga" in page and "HTTP 200" in page
    assert secret not in page
    assert row.event_id in client.get(f"/admin/webhooks?event={row.event_id}&status=delivered").get_data(
        as_text=True
    )


def test_resend_sends_the_same_event_again_and_is_audited(client, delivered, receiver):
    row, _ = delivered
    operator()
    login(client)
    assert client.post(f"/admin/webhooks/{row.id}/resend").status_code == 400  # no CSRF token
    answer = post(client, f"/admin/webhooks/{row.id}/resend", page="/admin/webhooks")
    assert answer.status_code == 302
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "webhook.resend")).scalars()
    assert entry.target == str(row.id)
    jobs.deliver_events()
    ids = [r.event_id for r in receiver.receiver.events()]
    assert ids == [row.event_id, row.event_id]  # the same id: a receiver that has it may ignore it
    db.session.expire_all()
    again = db.session.get(Delivery, row.id)
    assert (again.status, again.attempts) == ("delivered", 2)


def test_a_delivery_on_its_way_is_not_resent(client, delivered):
    row, _ = delivered
    row.status = "pending"
    db.session.commit()
    operator()
    login(client)
    post(client, f"/admin/webhooks/{row.id}/resend", page="/admin/webhooks")
    assert db.session.execute(select(AuditEntry).where(AuditEntry.action == "webhook.resend")).first() is None
    assert post(client, "/admin/webhooks/999999/resend", page="/admin/webhooks").status_code == 404
