"""Payment chains run again (a lost status update, a worker that died after committing): the
ledger answers a chain whose first leg exists with exists, linked_event_failed, ... (any
result but ok fails a chain, as in TigerBeetle), and the worker reads that as "accepted before":
the request stays accepted, nothing moves twice, no second receipt (docs/ledger.md, Retried
chains). tests/test_payments.py pins it for a payment with a fee; this one for a suspense post,
a chain of a post and a payment on."""

from sqlalchemy import func, select

from tests.escrow_helpers import funded_customer, ledger_ok
from tests.test_escrow_unregistered import send_to_unregistered
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger import Transfer
from ussd_app.payments.execute import execute_requests
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import find_by_phone
from worker import jobs


def test_a_suspense_post_run_again_stays_accepted_and_pays_once(app, client):
    funded_customer()
    send_to_unregistered(client)
    Phone(client, "0712000999").walk("1", "Akinyi", "Odhiambo", "2468", "2468")
    assert jobs.execute_transfers() == 1
    suspense_post = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.SUSPENSE_POST.value)
    ).scalar_one()
    assert suspense_post.status == RequestStatus.ACCEPTED.value
    akinyi = find_by_phone(db.session, "+254712000999").account_id
    sms_before = db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()

    suspense_post.status = RequestStatus.QUEUED.value  # as if the status had never been written
    execute_requests(db.session, [suspense_post])
    db.session.commit()

    assert suspense_post.status == RequestStatus.ACCEPTED.value
    assert available(akinyi) == 500_00
    legs = db.session.execute(
        select(func.count()).select_from(Transfer).where(Transfer.user_data == suspense_post.id)
    ).scalar_one()
    assert legs == 2  # the post of the hold and the payment on, once each
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == sms_before
    ledger_ok()
