"""Idempotency keys are kept at least 24 hours, then purged by the maintenance job; production
refuses to start with the API's protections off."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_helpers import make_key, post
from tests.conftest import PG_URL
from ussd_app.api import check_config
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.api.keys import ApiKey
from ussd_app.extensions import db
from ussd_app.security import InsecureConfig
from worker import jobs


def test_keys_are_kept_a_day_then_purged(client, merchant, customer, config):
    config(API_IDEMPOTENCY_HOURS=1)  # never less than 24 hours, whatever is set
    key = make_key(merchant)
    for name in ("old", "young"):
        assert (
            post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, name).status_code == 202
        )
    rows = {r.key: r for r in db.session.query(IdempotencyRecord)}
    rows["old"].created_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=25)
    rows["young"].created_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=23)
    db.session.commit()
    assert jobs.maintain()["idempotency_keys_purged"] == 1
    assert [r.key for r in db.session.query(IdempotencyRecord)] == ["young"]


PRODUCTION = {"TUMA_ENV": "production", "API_RATE_PER_MINUTE": 600, "API_MAX_BODY_BYTES": 2**21}


@pytest.mark.parametrize(
    "unsafe",
    [
        {"API_RATE_PER_MINUTE": 0},
        {"API_MAX_BODY_BYTES": 0},
        {"API_MAX_BODY_BYTES": 2**30},
        {"API_IDEMPOTENCY_HOURS": 1},
    ],
)
def test_production_refuses_the_api_unprotected(unsafe):
    check_config({**PRODUCTION, "API_IDEMPOTENCY_HOURS": 24})
    with pytest.raises(InsecureConfig):
        check_config({**PRODUCTION, "API_IDEMPOTENCY_HOURS": 24, **unsafe})
    check_config({**PRODUCTION, **unsafe, "TUMA_ENV": "development"})  # fine outside production


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL only: on SQLite the second request waits its turn")
def test_a_second_request_gives_up_waiting_with_409_while_the_first_still_runs(
    app, client, merchant, customer, config
):
    """The first request's transaction holds the new row (here: held open by hand); the second
    waits API_IDEMPOTENCY_WAIT_MS on the unique key, then answers 409 and records nothing."""
    import threading

    from sqlalchemy import insert

    config(API_IDEMPOTENCY_WAIT_MS=300)
    key = make_key(merchant)
    key_row = db.session.query(ApiKey).one()
    holding, release = threading.Event(), threading.Event()

    def first():
        with app.app_context():
            db.session.execute(
                insert(IdempotencyRecord).values(
                    api_key_id=key_row.id,
                    key="busy",
                    fingerprint="x",
                    status=0,
                    body="",
                    created_at=datetime(2026, 1, 1),
                )
            )
            holding.set()
            release.wait(10)
            db.session.rollback()
            db.session.remove()

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    try:
        response = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "busy")
    finally:
        release.set()
        thread.join(10)
    assert response.status_code == 409 and response.json["error"]["code"] == "idempotency_in_progress"
    assert response.headers["Retry-After"] == "1"
    assert post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "busy").status_code == 202


def _purge() -> None:
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()


def _recorded() -> list[tuple[str, int]]:
    from ussd_app.payments.models import TransferRequest

    db.session.expire_all()
    rows = [(r.id, r.amount) for r in db.session.query(TransferRequest).filter_by(kind="payout")]
    db.session.commit()
    return sorted(rows)


def test_a_key_once_used_never_pays_another_body_even_after_its_row_is_purged(
    client, merchant, customer, second_customer
):
    """The transfers' ids derive from the key: after the 24 h purge, a key's second body is
    refused (422 idempotency_key_reused), never a 500, never paid; the same body replays."""
    key = make_key(merchant)
    csv_type = {"Content-Type": "text/csv"}
    assert post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "k1").status_code == 202
    batch = "phone,amount\n0712000111,100\n0712000222,200\n"
    first_batch = post(client, "/payouts/batch", key, batch, "k2", **csv_type)
    assert first_batch.status_code == 202
    before = _recorded()
    _purge()
    refused = [
        post(client, "/payouts", key, {"phone": customer.phone, "amount": 5000}, "k1"),
        post(client, "/payouts/batch", key, "phone,amount\n0712000111,5000\n", "k2", **csv_type),
        post(client, "/payouts/batch", key, "phone,amount\n0712000111,100\n", "k2", **csv_type),
        post(client, "/payouts/batch", key, "phone,amount\n0712000111,100\n", "k1", **csv_type),
        post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "k2"),
    ]
    for answer in refused:
        assert answer.status_code == 422, answer.json
        assert answer.json["error"]["code"] == "idempotency_key_reused"
    assert _recorded() == before
    _purge()
    again = post(client, "/payouts/batch", key, batch, "k2", **csv_type)
    assert again.status_code == 202 and again.json == first_batch.json  # the same body: the same rows
    same = post(client, "/payouts", key, {"phone": customer.phone, "amount": 100}, "k1")
    assert same.status_code == 202 and _recorded() == before


def test_an_allowance_key_once_used_asks_nothing_new_after_its_row_is_purged(
    client, merchant, customer, config
):
    """The allowance's id derives from the key: after the purge, the same body answers the
    first allowance (not counted again against the payer's three a day, no second SMS) and
    another body under the key is refused (422 idempotency_key_reused)."""
    from ussd_app.payments import allowances as al

    config(REQUESTS_PER_PAYER_PER_DAY=1)
    key = make_key(merchant)
    body = {"phone": customer.phone, "limit": 200_00, "max_charge": 5_00, "period": "week"}
    body["description"] = "News"
    first = post(client, "/allowances", key, body, "a1")
    assert first.status_code == 201, first.json
    _purge()
    again = post(client, "/allowances", key, body, "a1")
    assert again.status_code == 201 and again.json == first.json
    for changed in ({"limit": 300_00}, {"description": "Other"}, {"max_charge": 6_00}):
        _purge()  # each body meets the allowance the id remembers, not the key's stored answer
        refused = post(client, "/allowances", key, {**body, **changed}, "a1")
        assert refused.json["error"]["code"] == "idempotency_key_reused", refused.json
    db.session.expire_all()
    assert db.session.query(al.Allowance).count() == 1
