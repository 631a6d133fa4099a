"""``PUT /api/v1/webhooks``: the signing secret kept across PUTs unless rotated, URLs we would
not call refused, the settings readable without their secret; and the events a merchant's own
payouts and refunds produce."""

import json

import pytest
from sqlalchemy import select

from tests.api_helpers import auth, fund_merchant, get, make_key, post
from tests.events_helpers import running_receiver, signed_by
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.events.models import Event
from ussd_app.extensions import db
from worker import jobs


@pytest.fixture
def receiver():
    yield from running_receiver()


def put(client, key, body, idempotency_key=None):
    import uuid

    headers = {**auth(key), "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    return client.put("/api/v1/webhooks", json=body, headers=headers)


def test_the_secret_is_shown_only_when_made_and_kept_across_puts_unless_rotated(client, merchant, receiver):
    key = make_key(merchant)
    assert get(client, "/webhooks", key).status_code == 404
    first = put(client, key, {"url": f"{receiver.url}/hooks/a", "events": ["payment.received"]})
    assert first.status_code == 200, first.get_json()
    secret = first.get_json()["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    moved = put(client, key, {"url": f"{receiver.url}/hooks/b"})
    assert moved.status_code == 200 and "secret" not in moved.get_json()
    assert moved.get_json()["url"].endswith("/hooks/b") and moved.get_json()["events"] == ["*"]
    assert secret not in moved.get_data(as_text=True)

    rotation = {"url": f"{receiver.url}/hooks/b", "rotate_secret": True}
    rotated = put(client, key, rotation, idempotency_key="rotate-1").get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    # Not replayed from a store: a retried rotation rotates again, its answer's secret signs.
    again = put(client, key, rotation, idempotency_key="rotate-1")
    assert again.headers.get("Idempotent-Replayed") is None
    assert again.get_json()["secret"] not in (secret, rotated["secret"])
    receiver.receiver.secret = again.get_json()["secret"]

    shown = get(client, "/webhooks", key)
    assert shown.status_code == 200 and "secret" not in shown.get_json()
    assert again.get_json()["secret"] not in shown.get_data(as_text=True)


def test_a_collect_key_cannot_read_the_secret_and_no_secret_is_stored(client, merchant, receiver):
    """A leaked collect-scope key of the same merchant sets the endpoint again: no secret comes
    back, and none lies in the idempotency table (the answers it keeps for 24 hours)."""
    owner = make_key(merchant, name="back office")
    made = put(client, owner, {"url": f"{receiver.url}/hooks/a"}, idempotency_key="made-1").get_json()
    secret = made["secret"]
    leaked = make_key(merchant, scopes=["collect"], name="till app")
    answer = put(client, leaked, {"url": f"{receiver.url}/hooks/a"}, idempotency_key="leaked-1")
    assert answer.status_code == 200 and "secret" not in answer.get_json()
    assert secret not in answer.get_data(as_text=True)
    stored = [r.body for r in db.session.execute(select(IdempotencyRecord)).scalars()]
    assert not any(secret in body or "whsec_" in body for body in stored)


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"url": "ftp://shop.example/x"}, "url: an http or https URL"),
        ({"url": "https://shop.example/x", "events": ["payment.sent"]}, "events"),
        ({"url": "https://shop.example/x", "events": []}, "events"),
        ({"url": "https://user:pw@shop.example/x"}, "url: a URL without a user name"),
        ({"url": "https://93.184.215.14/x", "validation_url": "gopher://x"}, "validation_url"),
        ({"url": 5}, "url"),
        ({"url": "https://shop.example/x", "extra": 1}, "extra"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(client, merchant, body, problem):
    answer = put(client, make_key(merchant), body)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == "invalid_request" and problem in error["message"]


def test_production_refuses_an_inside_url(client, config, merchant):
    key = make_key(merchant)
    config(TUMA_ENV="production")
    answer = put(client, key, {"url": "https://169.254.169.254/latest"})
    assert answer.status_code == 422 and "public address" in answer.get_json()["error"]["message"]


def test_a_key_without_the_collect_scope_cannot_set_them(client, merchant):
    answer = put(client, make_key(merchant, scopes=["read"]), {"url": "https://93.184.215.14/x"})
    assert answer.status_code == 403


def test_a_payout_made_through_the_api_arrives_as_payout_posted(client, merchant, customer, receiver):
    key = make_key(merchant)
    secret = put(client, key, {"url": f"{receiver.url}/hooks/shop"}).get_json()["secret"]
    fund_merchant(merchant.phone, 5_000_00)
    answer = post(
        client, "/payouts", key, {"phone": customer.phone, "amount": 1_000_00, "reference": "SAL-1"}
    )
    assert answer.status_code in (200, 201, 202), answer.get_json()
    jobs.execute_transfers()
    jobs.deliver_events()
    [got] = [e for e in receiver.receiver.events() if e.type == "payout.posted"]
    data = json.loads(got.body)["data"]
    assert data["amount"] == 1_000_00 and data["reference"] == "SAL-1"
    assert data["recipient"] == {"name": "Juma Otieno", "phone": "+2547120***11"}
    assert signed_by(secret, got.body, got.signature)
    [event] = db.session.execute(select(Event).where(Event.type == "payout.posted")).scalars()
    assert event.account_id == merchant.account_id


def test_a_refused_payout_arrives_as_payout_failed_without_the_recipients_name(
    client, merchant, customer, receiver
):
    """The merchant has no money: the event says why, and names no one (a refused payout must
    not tell a merchant whose number it was)."""
    key = make_key(merchant)
    put(client, key, {"url": f"{receiver.url}/hooks/shop"})
    answer = post(
        client, "/payouts", key, {"phone": customer.phone, "amount": 1_000_00, "reference": "SAL-2"}
    )
    assert answer.status_code == 202, answer.get_json()
    jobs.execute_transfers()
    jobs.deliver_events()
    [got] = [e for e in receiver.receiver.events() if e.type == "payout.failed"]
    data = json.loads(got.body)["data"]
    assert data["failure"] == "exceeds_credits" and data["reference"] == "SAL-2"
    assert data["recipient"] == {"name": None, "phone": "+2547120***11"}
