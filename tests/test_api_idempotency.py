"""Idempotency keys are kept at least 24 hours, then purged by the maintenance job; production
refuses to start with the API's protections off."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_helpers import make_key, post
from ussd_app.api import check_config
from ussd_app.api.idempotency import IdempotencyRecord
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
