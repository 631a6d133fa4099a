"""Allowances attacked from outside (the API with real keys, USSD, the worker's jobs): each test
here once showed a lost promise (money, an event, an identity) and now holds."""

import pytest
from sqlalchemy import create_engine, text

from tests.api_helpers import execute_all, get, make_key, post
from tests.escrow_helpers import funded_customer
from tests.test_allowances import asked, charge, events, period_over, state
from tests.ussd_helpers import CUSTOMER, MERCHANT, person
from ussd_app.database import is_postgres
from ussd_app.extensions import db
from ussd_app.payments import allowances as al

TERMS = {"phone": "0712000111", "limit": 200_00, "max_charge": 5_00, "period": "week", "description": "News"}


def test_a_merchant_hears_approved_when_the_first_hold_is_made_in_a_later_period(backend_app):
    """Approved with no money: paused. The money comes, the next period's hold is made and
    charges are taken: the merchant, who waits for ``allowance.approved`` to start charging,
    must hear it then (it was sent only for hold number 1, which was refused)."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "paused"
    from tests.helpers import fund

    fund(customer.account_id, 500_00)
    period_over(allowance_id)
    from worker import jobs

    jobs.after_allowance_batch()
    assert state(allowance_id) == "active"
    assert charge(allowance_id, merchant, 1_00, 1).ok
    approved = events("allowance.approved")
    assert [e["allowance"] for e in approved] == [allowance_id]


@pytest.fixture
def key(app, config, merchant):
    config(API_RATE_PER_MINUTE=1_000_000)
    funded_customer()
    return make_key(merchant)


def test_an_allowance_id_with_anything_after_it_is_not_that_allowance(client, key):
    """Ids are compared whole: ``<id>EXTRA`` is no allowance (it was cut to 32 characters and
    answered, charged and echoed as the real one)."""
    made = post(client, "/allowances", key, TERMS)
    assert made.status_code == 201, made.json
    allowance_id = made.json["id"]
    assert get(client, f"/allowances/{allowance_id}", key).status_code == 200
    alias = allowance_id + "EXTRA"
    seen = get(client, f"/allowances/{alias}", key)
    assert (seen.status_code, seen.json["error"]["code"]) == (404, "not_found")
    charged = post(client, f"/allowances/{alias}/charges", key, {"amount": 1_00})
    assert (charged.status_code, charged.json["error"]["code"]) == (404, "not_found")
    settled = post(client, f"/allowances/{alias}/settle", key, {})
    assert (settled.status_code, settled.json["error"]["code"]) == (404, "not_found")


def test_another_merchants_charge_does_not_wait_on_the_allowances_lock(backend_app):
    """Another merchant's charge on an allowance answers not found at once, even while its
    merchant's charge holds the row: it takes no lock on a row that is not its own (else it
    waits, a timing oracle that the id exists and is being charged, and it holds the real
    merchant's charges up while it waits)."""
    if not is_postgres(db.session):
        pytest.skip("SQLite's transactions hold the whole database")
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    other = person("+254700000003", "Duka Kuu", pin="3333", role="merchant", till="654321")
    allowance_id = asked(customer, merchant)
    engine = create_engine(str(db.engine.url.render_as_string(hide_password=False)))
    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(text("SELECT id FROM allowances WHERE id = :id FOR UPDATE"), {"id": allowance_id})
        db.session.execute(text("SET LOCAL lock_timeout = '2s'"))
        outcome = al.charge(db.session, allowance_id, other.account_id, 1_00, None, charge_id="x-1")
        db.session.rollback()
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert outcome.code == "allowance_not_found"


@pytest.mark.parametrize("language", ["en", "sw"])
def test_the_settlement_sms_fits_one_segment_with_as_many_charges_as_its_amount_allows(app, language):
    """A settlement of 1-cent charges counts as many charges as its amount has minor units
    (8 digits at the largest per-transfer limit), not the 2 digits the shared segment test
    assumes: the Kiswahili text ran to 163 characters, a second segment per settlement."""
    from tests.test_sms_segments import longest
    from ussd_app import limits
    from ussd_app.i18n import t
    from ussd_app.messages import allowances as texts
    from ussd_app.ussd.gsm7 import length

    biggest = max(limits.tier_limits(tier).per_transfer for tier in ("basic", "full"))
    fields = {**longest(app), "count": biggest}
    for english in (texts.SETTLED, texts.SETTLED_ENDED):
        text = t(language, english, domain="sms", **fields)
        assert length(text) <= 160, (length(text), text)
