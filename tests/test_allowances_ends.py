"""An allowance's own end (``ends_at``): the merchant sets it through the API (optional, ISO
8601, in the future, in the OpenAPI document), the customer sees it in My approvals and My
allowances, and at that moment the tab settles and the allowance expires: the merchant's
``allowance.expired`` and ONE SMS to the customer."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.api_helpers import execute_all, get, make_key, post
from tests.escrow_helpers import FUNDS, funded_customer, ledger_ok, sms_to
from tests.test_allowances import approved, cast, charge, count, events, state, the  # noqa: F401
from tests.test_api_allowances import TERMS
from tests.test_ussd_allowances import ALLOWANCES, APPROVALS, dial
from tests.ussd_helpers import available
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.messages import when
from ussd_app.payments import allowances as al
from ussd_app.payments.models import TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from worker import jobs


@pytest.fixture
def key(app, config, merchant):
    config(API_RATE_PER_MINUTE=1_000_000)
    funded_customer()
    return make_key(merchant)


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


def test_the_merchant_sets_an_end_and_the_customer_sees_it_before_the_pin(client, key):
    ends = datetime.now(UTC) + timedelta(days=40)
    made = post(client, "/allowances", key, {**TERMS, "ends_at": iso(ends)}, "ask-end")
    assert made.status_code == 201, made.json
    assert made.json["ends_at"] == ends.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert get(client, f"/allowances/{made.json['id']}", key).json["ends_at"] == made.json["ends_at"]
    # The same key and body again: the same allowance; the same key with another end: refused.
    assert post(client, "/allowances", key, {**TERMS, "ends_at": iso(ends)}, "ask-end").json == made.json
    other = post(client, "/allowances", key, {**TERMS, "ends_at": iso(ends + timedelta(days=1))}, "ask-end")
    assert other.status_code == 422
    # Without an end: none (as before).
    plain = post(client, "/allowances", key, TERMS)
    assert plain.status_code == 201 and plain.json["ends_at"] is None

    day = when(ends.replace(tzinfo=None))[0]
    # The SMS asking for approval says the end too (the one without an end does not).
    asking = [m for m in sms_to("+254712000111") if "asks to charge you" in m]
    assert asking[0] == (
        f"MAMA MBOGA asks to charge you up to KES 200.00 a week till {day}, max KES 5.00 a charge. "
        "Approve or decline: *384*7# > My approvals"
    )
    assert asking[-1].startswith("MAMA MBOGA asks to charge you up to KES 200.00 a week, at most KES 5.00")
    phone = dial(client)
    phone.send(APPROVALS)
    screen = phone.send("1")
    assert f"a week until {day}, at most KES 5.00 a charge? The limit is held each period.\n" in screen, (
        screen
    )
    schema = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    assert "ends_at" in schema["AllowanceCreate"]["properties"]
    assert "ends_at" in schema["Allowance"]["properties"]


def test_the_sms_asking_in_kiswahili_says_the_end(client, key):
    from sqlalchemy import update

    from ussd_app.users import User

    db.session.execute(update(User).where(User.phone == "+254712000111").values(language="sw"))
    db.session.commit()
    ends = datetime.now(UTC) + timedelta(days=40)
    made = post(client, "/allowances", key, {**TERMS, "ends_at": iso(ends)}, "ask-sw")
    assert made.status_code == 201, made.json
    day = when(ends.replace(tzinfo=None))[0]
    assert sms_to("+254712000111")[-1] == (
        f"MAMA MBOGA anaomba kukutoza hadi KES 200.00 kwa wiki mpaka {day}, isizidi KES 5.00 kwa malipo. "
        "Kubali/kataa: *384*7# > Idhini zangu"
    )


def test_replaying_a_create_after_its_ends_at_has_passed_answers_as_the_first_time(client, key):
    """A merchant whose first answer was lost retries with the same key and body; meanwhile its
    ``ends_at`` has passed. The retry gets the stored answer (the allowance made), not a 422 that
    would make it think nothing was made; another body on that key is still refused."""
    import time

    ends = datetime.now(UTC) + timedelta(seconds=1)
    body = {**TERMS, "ends_at": ends.isoformat()}
    made = post(client, "/allowances", key, body, "ask-soon")
    assert made.status_code == 201, made.json
    while datetime.now(UTC) <= ends:  # until its end has passed
        time.sleep(0.05)
    again = post(client, "/allowances", key, body, "ask-soon")
    assert (again.status_code, again.json) == (201, made.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = post(client, "/allowances", key, {**body, "limit": 300_00}, "ask-soon")
    assert (other.status_code, other.json["error"]["code"]) == (422, "invalid_request")
    assert "ends_at: in the future" in other.json["error"]["message"]
    fresh = post(client, "/allowances", key, body, "ask-late")
    assert (fresh.status_code, fresh.json["error"]["code"]) == (422, "invalid_request")
    assert count(al.Allowance) == 1


@pytest.mark.parametrize(
    "ends_at",
    [
        "2020-01-01T00:00:00Z",  # past
        "yesterday",
        "2027-02-30T00:00:00",  # no such day
        "2027-01-01T25:00:00",
        "9999-12-31T23:59:59-05:00",  # off the calendar once in UTC
        "2999-01-01T00:00:00Z",  # too far ahead
        "2027-01-01T00:00:00+24:00",
        1893456000,  # a Unix time is not ISO 8601
        "",
    ],
)
def test_an_end_that_is_not_a_future_iso_8601_moment_is_a_clear_422(client, key, ends_at):
    day = (datetime.now(UTC) + timedelta(days=200)).date()
    fine = post(client, "/allowances", key, {**TERMS, "ends_at": f"{day}T23:59:59.999999999+03:00"})
    assert fine.status_code == 201 and fine.json["ends_at"] == f"{day}T20:59:59.999999Z", fine.json
    made = post(client, "/allowances", key, {**TERMS, "ends_at": ends_at})
    assert made.status_code == 422, made.json
    assert made.json["error"]["code"] == "invalid_request", made.json
    assert count(al.Allowance) == 1


def test_at_its_end_the_tab_settles_and_it_expires_with_one_sms(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    ends = the(allowance_id).period_starts_at + timedelta(days=3)  # mid-week
    db.session.execute(
        al.Allowance.__table__.update().where(al.Allowance.id == allowance_id).values(ends_at=ends)
    )
    db.session.commit()
    for n in range(3):
        charge(allowance_id, merchant, 5_00, n)
    sms_before = count(OutboxMessage)
    assert jobs.settle_allowances(now=ends - timedelta(seconds=1)) == 0  # not yet
    assert jobs.settle_allowances(now=ends) == 1
    execute_all()
    assert state(allowance_id) == "expired"
    post_ = db.session.get(TransferRequest, f"{allowance_id}.h1.r")
    assert (post_.kind, post_.amount, post_.status) == ("allowance_post", 15_00, "accepted")
    assert count(OutboxMessage) == sms_before + 1
    assert sms_to(customer.phone)[-1].endswith("Allowance ended: the rest of its hold is released.")
    assert [e["allowance"] for e in events("allowance.expired")] == [allowance_id]
    assert available(customer.account_id) == FUNDS - 15_00
    assert jobs.settle_allowances(now=ends + timedelta(days=30)) == 0
    assert count(TransferRequest, TransferRequest.kind == "allowance") == 1  # no next hold
    ledger_ok()


def test_at_its_end_with_nothing_charged_it_says_it_ended_once(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    ends = the(allowance_id).period_ends_at + timedelta(days=2)  # in the second week
    db.session.execute(
        al.Allowance.__table__.update().where(al.Allowance.id == allowance_id).values(ends_at=ends)
    )
    db.session.commit()
    jobs.settle_allowances(now=the(allowance_id).period_ends_at)  # rolls on: nothing charged
    execute_all()
    sms_before = count(OutboxMessage)
    assert jobs.settle_allowances(now=ends) == 1
    execute_all()
    assert state(allowance_id) == "expired"
    assert count(OutboxMessage) == sms_before + 1
    assert sms_to(customer.phone)[-1] == (
        f"Allowance for MAMA MBOGA has ended ({when(ends)[0]}). Nothing more will be charged or held."
    )
    assert [e["allowance"] for e in events("allowance.expired")] == [allowance_id]
    assert available(customer.account_id) == FUNDS
    ledger_ok()


def test_my_allowances_shows_its_end_and_an_ask_past_its_end_cannot_be_approved(client, key):
    soon = datetime.now(UTC) + timedelta(days=40)
    made = post(client, "/allowances", key, {**TERMS, "ends_at": iso(soon)}).json
    from tests.test_api_allowances import approve

    approve(made["id"])
    phone = dial(client)
    phone.send(ALLOWANCES)
    phone.send("2")
    shown = phone.send("1")
    assert f"\nEnds {when(soon.replace(tzinfo=None))[0]}\n" in shown, shown
    # An ask whose end passed while it waited: not listed, not approvable.
    late = post(
        client, "/allowances", key, {**TERMS, "ends_at": iso(datetime.now(UTC) + timedelta(minutes=5))}
    )
    db.session.execute(
        al.Allowance.__table__.update()
        .where(al.Allowance.id == late.json["id"])
        .values(ends_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    from ussd_app.users import find_by_phone

    customer = find_by_phone(db.session, "+254712000111")
    assert [a.id for a in al.awaiting(db.session, customer)] == []
    assert not al.approve(db.session, customer, late.json["id"])
    db.session.rollback()
    assert jobs.settle_allowances() == 1  # it expires
    assert the(late.json["id"]).state == "expired"


@pytest.mark.parametrize("language", ["en", "sw"])
def test_the_end_fits_both_screens_with_a_long_name_and_big_figures(app, language):
    """The worst case: a long merchant name, KES 1,000,000 a month, 999 charges, Kiswahili.
    Every screen is checked to fit (``Screens``); the end date and the figures are all there."""
    from sqlalchemy import update

    from tests.escrow_helpers import cash_in
    from tests.test_ussd_allowances import JUMA
    from tests.ussd_helpers import AGENT, CUSTOMER, person
    from ussd_app.users import User, create_user

    juma = person(**CUSTOMER)
    cash_in(juma, person(**AGENT))
    db.session.execute(update(User).where(User.id == juma.id).values(language=language))
    long_name = create_user(
        db.session,
        phone="+254700000004",
        name="Nairobi Evening Chronicle Digital Edition",
        role="merchant",
        pin="2222",
        till="777777",
    )
    db.session.commit()
    ends = utcnow() + timedelta(days=1000)
    al.ask(
        db.session,
        long_name,
        JUMA,
        limit=1_000_000_00,
        max_charge=1_000_00,
        period="month",
        description="Daily articles",
        reference=None,
        allowance_id="al_long",
        ends_at=ends,
    )
    db.session.commit()
    day = when(ends)[0]
    phone = dial(app.test_client())
    phone.send(APPROVALS)
    details = phone.send("1")
    assert day in details and "1,000,000.00" in details and "1,000.00" in details, details
    db.session.execute(
        al.Allowance.__table__.update()
        .where(al.Allowance.id == "al_long")
        .values(state="active", charge_count=999, charged=999_999_00, period_ends_at=ends)
    )
    db.session.commit()
    phone = dial(app.test_client())
    phone.send(ALLOWANCES)
    phone.send("2")
    shown = phone.send("1")
    assert shown.count(day) == 2 and "999" in shown, shown  # the period's end and its own end
