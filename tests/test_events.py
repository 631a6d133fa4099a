"""Events for merchants' systems: written with the posting, delivered signed by the worker,
retried with backoff for three days, once per event id however the receiver misbehaves."""

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.escrow_helpers import funded_customer, ledger_ok
from tests.events_helpers import endpoint_for, running_receiver, signed_by, trickling_server
from tests.ussd_helpers import MERCHANT, Phone
from tests.worker_helpers import run_burst_worker
from ussd_app.events import delivery
from ussd_app.events.endpoints import configure
from ussd_app.events.models import Delivery, DeliveryStatus, Event, utcnow
from ussd_app.extensions import db
from ussd_app.payments import kinds
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.users import create_user
from worker import jobs

PIN = "8642"


@pytest.fixture
def receiver():
    yield from running_receiver()


@pytest.fixture
def juma(app):
    return funded_customer()


@pytest.fixture
def till(app):
    user = create_user(db.session, **{**MERCHANT, "role": "merchant"})
    db.session.commit()
    return user.account_id


def pay_till(client, amount="250"):
    phone = Phone(client, "0712000111")
    phone.walk("5", MERCHANT["till"], amount, "1")
    assert phone.send(PIN).startswith("END Paying")


def buy_goods(payer: int, till: int, amount: int) -> str:
    request = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.BUY_GOODS.value,
        debit_account_id=payer,
        credit_account_id=till,
        amount=amount,
    )
    db.session.commit()
    return request.id


def test_a_till_payment_by_ussd_arrives_once_signed_at_the_merchants_system(client, juma, till, receiver):
    secret = endpoint_for(till, receiver)
    pay_till(client)
    run_burst_worker()  # the transfer, then its receipts and its event, each rung at a commit

    [got] = receiver.receiver.events()
    request = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == "buy_goods")
    ).scalar_one()
    body = json.loads(got.body)
    assert body["type"] == "payment.received" and got.type == "payment.received"
    assert body["id"] == got.event_id and body["id"].startswith("evt_")
    assert body["data"] == {
        "transaction": request.code,
        "amount": 250_00,
        "currency": "KES",
        "reference": None,
        "payer": {"name": "Juma Otieno", "phone": "+2547120***11"},
    }
    assert signed_by(secret, got.body, got.signature)  # our own reading of the documented scheme
    assert not signed_by("whsec_another", got.body, got.signature)
    assert got.verified  # and the receiver's
    db.session.expire_all()
    [row] = db.session.execute(select(Delivery)).scalars()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    ledger_ok()


def test_a_receiver_that_fails_then_recovers_gets_every_event_exactly_once(app, juma, till, receiver):
    endpoint_for(till, receiver)
    ids = [buy_goods(juma, till, amount) for amount in (100_00, 200_00, 300_00)]
    assert jobs.execute_transfers() == 3
    receiver.receiver.fail_next(4)

    first = jobs.deliver_events()
    assert first["delivered"] + first["retry"] == 3 and first["retry"] >= 1
    # Retries come due later; each call is a job the maintenance job would ring.
    later = utcnow()
    for _ in range(6):
        later += timedelta(hours=7)
        delivery.deliver_due(db.session, 100, now=later)
    db.session.expire_all()
    assert {r.status for r in db.session.execute(select(Delivery)).scalars()} == {"delivered"}

    received = [r.event_id for r in receiver.receiver.events()]
    assert sorted(received) == sorted(set(received)) and len(received) == 3  # each once
    sources = dict(db.session.execute(select(Event.id, Event.source_id)).all())
    assert sorted(sources[e] for e in received) == sorted(ids)
    assert receiver.receiver.attempts == 3 + 4

    # A job that runs again, or a batch executed twice, writes no event twice.
    assert jobs.execute_transfers() == 0
    assert db.session.execute(select(func.count()).select_from(Event)).scalar_one() == 3


def test_backoff_doubles_with_jitter_and_gives_up_after_three_days(app, config, juma, till, receiver):
    import random

    config(EVENT_RETRY_BASE_SECONDS=30, EVENT_RETRY_MAX_SECONDS=6 * 3600, EVENT_RETRY_FOR_SECONDS=3 * 86400)
    rng = random.Random(7)
    for attempt in range(1, 20):
        ceiling = min(6 * 3600, 30 * 2 ** (attempt - 1))
        delay = delivery.backoff(attempt, rng).total_seconds()
        assert ceiling / 2 <= delay <= ceiling
    assert delivery.backoff(1, rng) <= timedelta(seconds=30)
    assert delivery.backoff(30, rng) >= timedelta(hours=3)  # capped at six hours, jittered

    endpoint_for(till, receiver)
    buy_goods(juma, till, 100_00)
    jobs.execute_transfers()
    receiver.receiver.fail_next(1000)  # down for good
    db.session.expire_all()
    row = db.session.execute(select(Delivery)).scalar_one()
    start, give_up = row.created_at, row.give_up_at
    assert give_up - start == timedelta(days=3)
    now, moments = start, []
    while True:
        delivery.deliver_due(db.session, 10, now=now)
        db.session.expire_all()
        row = db.session.get(Delivery, row.id)
        moments.append(now)
        if row.status != DeliveryStatus.PENDING.value:
            break
        assert row.next_attempt_at > now and row.next_attempt_at <= give_up
        now = row.next_attempt_at
    assert row.status == "failed" and row.last_status_code == 500
    assert moments[-1] == give_up  # a last attempt at the three-day mark, then no more
    gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:], strict=False)]
    assert gaps[0] <= 30 and max(gaps) <= 6 * 3600
    assert 15 <= row.attempts <= 40
    assert delivery.count_due(db.session, now=give_up + timedelta(days=1)) == 0


def test_a_lost_ring_is_picked_up_by_the_maintenance_job(app, juma, till, receiver, redis):
    endpoint_for(till, receiver)
    buy_goods(juma, till, 100_00)
    jobs.execute_transfers()
    redis.flushdb()  # the ring is lost with the queue
    assert jobs.maintain()["events_due"] == 1
    jobs.deliver_events()
    assert len(receiver.receiver.events()) == 1


def test_a_merchant_without_an_endpoint_gets_events_but_no_deliveries(app, juma, till):
    buy_goods(juma, till, 100_00)
    jobs.execute_transfers()
    assert db.session.execute(select(func.count()).select_from(Event)).scalar_one() == 1
    assert db.session.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0


def test_a_protected_purchase_is_a_payment_when_its_hold_is_posted(app, juma, till, receiver):
    from ussd_app.payments import holds

    endpoint_for(till, receiver, events=["payment.received"])
    hold = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.PROTECTED_PURCHASE.value,
        debit_account_id=juma,
        credit_account_id=till,
        amount=500_00,
        hold_seconds=3600,
    )
    db.session.commit()
    jobs.execute_transfers()
    assert db.session.execute(select(func.count()).select_from(Event)).scalar_one() == 0  # held only
    db.session.expire_all()
    hold = db.session.get(TransferRequest, hold.id)
    # The buyer confirms delivery: the hold is posted to the merchant.
    assert holds.resolve(db.session, hold, RequestKind.PROTECTED_POST) is not None
    db.session.commit()
    jobs.execute_transfers()
    [event] = db.session.execute(select(Event)).scalars()
    assert event.type == "payment.received" and json.loads(event.payload)["data"]["amount"] == 500_00
    assert event.source_id == holds.resolution_id(hold.id)


def test_every_kind_that_emits_names_known_event_types():
    from ussd_app.events import EventType

    for row in kinds.ROWS:
        if row.events is not None:
            for name in (row.events.posted, row.events.failed):
                assert name is None or name in {t.value for t in EventType}
    assert {"buy_goods", "pay_bill", "protected_post"} <= kinds.EVENT_KINDS


def test_a_merchants_payment_requests_tell_its_system_paid_declined_and_expired(app, juma, till, receiver):
    from datetime import datetime

    from ussd_app.payments import payment_requests as pr
    from ussd_app.users import find_by_account, find_by_phone

    endpoint_for(till, receiver)
    shop, payer = find_by_account(db.session, till), find_by_phone(db.session, "+254712000111")
    paid, declined, lapsed = (
        pr.create(db.session, shop, f"grp{n}", pr.Kind.MERCHANT, [(payer.phone, 100_00 * n)], f"Order {n}")[0]
        for n in (1, 2, 3)
    )
    db.session.commit()
    assert pr.pay(db.session, payer, paid.id) is not None
    assert pr.decline(db.session, payer, declined.id)
    db.session.commit()
    jobs.execute_transfers()  # posts the payment and settles the request
    jobs.settle_payment_requests(expire=True, now=datetime(2100, 1, 1))
    jobs.deliver_events()

    got = {r.type: json.loads(r.body)["data"] for r in receiver.receiver.events()}
    assert set(got) == {
        "payment.received",
        "payment_request.paid",
        "payment_request.declined",
        "payment_request.expired",
    }
    code = db.session.get(TransferRequest, f"{paid.id}.p0").code
    assert got["payment_request.paid"] == {
        "payment_request": paid.id,
        "amount": 100_00,
        "currency": "KES",
        "reference": None,
        "description": "Order 1",
        "payer": {"name": "Juma Otieno", "phone": "+2547120***11"},
        "transaction": code,
    }
    assert got["payment.received"]["transaction"] == code
    assert got["payment_request.declined"]["payment_request"] == declined.id
    assert got["payment_request.expired"]["payment_request"] == lapsed.id
    assert got["payment_request.expired"]["transaction"] is None


def test_a_job_that_died_mid_post_leaves_its_claim_to_be_sent_again_after_the_timeout(
    app, juma, till, receiver
):
    """The one window for a duplicate: the receiver may see the id twice and must ignore it."""
    endpoint_for(till, receiver)
    buy_goods(juma, till, 100_00)
    jobs.execute_transfers()
    [taken] = delivery.claim_batch(db.session, 10)  # claimed and committed; then the job dies
    assert delivery.count_due(db.session) == 0  # nobody else sends it meanwhile
    assert jobs.deliver_events() == {"delivered": 0, "retry": 0, "failed": 0}
    later = taken.give_up_at - timedelta(days=3) + delivery.claim_timeout() + timedelta(seconds=1)
    assert delivery.deliver_due(db.session, 10, now=later) == {"delivered": 1, "retry": 0, "failed": 0}
    db.session.expire_all()
    row = db.session.get(Delivery, taken.id)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert [r.event_id for r in receiver.receiver.events()] == [taken.event_id]


@pytest.fixture
def trickler():
    yield from trickling_server(every=0.2)


def test_a_merchant_whose_server_trickles_delays_the_others_by_the_deadline_at_most(
    app, config, juma, till, receiver, trickler
):
    """Mama Mboga's server answers 200, Content-Length 100, then a byte every 0.2 s (20 s in
    all); Kisumu Water's answers at once. Their events are in one batch: Kisumu Water's is
    recorded delivered within the per-delivery deadline, not after the trickle."""
    water = create_user(
        db.session, phone="+254700000003", name="Kisumu Water", role="merchant", pin="2222", till="888880"
    )
    db.session.commit()
    endpoint_for(water.account_id, receiver, "water")
    configure(db.session, till, url=f"{trickler.url}/hooks/mboga")
    db.session.commit()
    buy_goods(juma, till, 100_00)
    buy_goods(juma, water.account_id, 200_00)
    jobs.execute_transfers()
    config(EVENT_DELIVERY_DEADLINE_SECONDS=1.0)

    started = time.monotonic()
    counts = delivery.deliver_due(db.session, 10)
    elapsed = time.monotonic() - started

    assert counts == {"delivered": 1, "retry": 1, "failed": 0}
    assert elapsed < 1.0 + 1.5, elapsed
    assert [e.name for e in receiver.receiver.events()] == ["water"]
    slow = db.session.execute(
        select(Delivery).where(Delivery.status == DeliveryStatus.PENDING.value)
    ).scalar_one()
    assert slow.last_error == "no answer: deadline passed"
