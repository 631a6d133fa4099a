"""/api/v1/allowances: a merchant asks, the customer approves (as My approvals does, after the
PIN), the merchant charges with no SMS, settles as one payment, and reads it; only that
merchant sees or charges it; every POST answers once per Idempotency-Key."""

import pytest

from tests.api_helpers import execute_all, get, ledger_check, make_key, post
from tests.escrow_helpers import FUNDS, funded_customer, sms_to
from tests.ussd_helpers import available, person
from ussd_app.extensions import db
from ussd_app.payments import allowances as al
from ussd_app.sms.outbox import OutboxMessage

TERMS = {
    "phone": "0712000111",
    "limit": 200_00,
    "max_charge": 5_00,
    "period": "week",
    "description": "Daily News",
}


def approve(allowance_id: str) -> None:
    """The customer approves in My approvals (PIN checked there); the worker makes the hold."""
    from ussd_app.users import find_by_phone

    customer = find_by_phone(db.session, "+254712000111")
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()


@pytest.fixture
def key(app, config, merchant):
    config(API_RATE_PER_MINUTE=1_000_000)
    funded_customer()
    return make_key(merchant)


@pytest.fixture
def active(client, key) -> str:
    made = post(client, "/allowances", key, {**TERMS, "reference": "READER-7"})
    assert made.status_code == 201, made.json
    approve(made.json["id"])
    return made.json["id"]


def sms_count() -> int:
    from sqlalchemy import func, select

    db.session.expire_all()
    n = db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    db.session.commit()
    return n


def test_asked_approved_charged_settled_and_read(client, key, merchant):
    made = post(client, "/allowances", key, {**TERMS, "reference": "READER-7"}, "ask-1")
    assert made.status_code == 201, made.json
    allowance = made.json
    assert (allowance["status"], allowance["limit"], allowance["max_charge"], allowance["period"]) == (
        "awaiting_approval",
        200_00,
        5_00,
        "week",
    )
    assert allowance["id"].startswith("al_") and allowance["phone"] == "+254712000111"
    assert sms_to("+254712000111")[-1].startswith("MAMA MBOGA asks to charge you up to KES 200.00 a week")
    assert post(client, "/allowances", key, {**TERMS, "reference": "READER-7"}, "ask-1").json == allowance
    approve(allowance["id"])
    seen = get(client, f"/allowances/{allowance['id']}", key).json
    assert (seen["status"], seen["left"], seen["charges"]) == ("active", 200_00, 0)
    assert seen["period_ends"] is not None

    before = sms_count()
    taken = post(
        client, f"/allowances/{allowance['id']}/charges", key, {"amount": 1_00, "reference": "A-1"}, "c-1"
    )
    assert taken.status_code == 201, taken.json
    assert (taken.json["amount"], taken.json["left"], taken.json["charges"]) == (1_00, 199_00, 1)
    again = post(
        client, f"/allowances/{allowance['id']}/charges", key, {"amount": 1_00, "reference": "A-1"}, "c-1"
    )
    assert again.json == taken.json  # the same key: the same charge, once
    other = post(client, f"/allowances/{allowance['id']}/charges", key, {"amount": 2_00}, "c-1")
    assert (other.status_code, other.json["error"]["code"]) == (422, "idempotency_key_reused")
    over = post(client, f"/allowances/{allowance['id']}/charges", key, {"amount": 5_01})
    assert (over.status_code, over.json["error"]["code"]) == (422, "exceeds_max_charge")

    rows = [{"amount": 1_00, "reference": f"B-{n}"} for n in range(250)]
    batch = post(client, f"/allowances/{allowance['id']}/charges/batch", key, {"charges": rows}, "batch-1")
    assert batch.status_code == 201, batch.json
    assert (batch.json["accepted"], batch.json["rejected"], batch.json["left"]) == (199, 51, 0)
    assert batch.json["results"][199]["error"]["code"] == "exceeds_allowance_left"
    repeat = post(client, f"/allowances/{allowance['id']}/charges/batch", key, {"charges": rows}, "batch-1")
    assert repeat.json == batch.json
    past = post(client, f"/allowances/{allowance['id']}/charges", key, {"amount": 1_00})
    assert (past.status_code, past.json["error"]["code"]) == (409, "exceeds_allowance_left")
    assert sms_count() == before  # 200 charges, no SMS

    settled = post(client, f"/allowances/{allowance['id']}/settle", key, {})
    assert settled.status_code == 202, settled.json
    settlement = settled.json["settlement"]
    assert (settlement["amount"], settlement["charges"], settlement["status"]) == (200_00, 200, "queued")
    assert settled.json["allowance"]["status"] == "settling"
    busy = post(client, f"/allowances/{allowance['id']}/charges", key, {"amount": 1_00})
    assert (busy.status_code, busy.json["error"]["code"]) == (409, "allowance_not_active")
    merchant_before = available(merchant.account_id)
    execute_all()
    seen = get(client, f"/allowances/{allowance['id']}", key).json
    assert seen["last_settlement"]["status"] == "posted"
    assert seen["last_settlement"]["transaction"] == settlement["transaction"]
    # The week's limit is used up: no new hold until the week ends; nothing left to charge.
    assert (seen["status"], seen["left"], seen["tab"]) == ("active", 0, 0)
    assert available(merchant.account_id) == merchant_before + 200_00 - 1_00  # less the 0.5% fee
    code = settlement["transaction"]
    assert len([m for m in sms_to("+254712000111") if code in m]) == 1
    payment = get(client, f"/transactions/{code}", key).json
    assert (payment["direction"], payment["type"], payment["amount"]) == ("in", "allowance_post", 200_00)
    assert available(db.session.get(al.Allowance, allowance["id"]).customer_account_id) == FUNDS - 200_00
    ledger_check(client.application.test_cli_runner())


def test_the_edge_refuses_bad_terms(client, key):
    for body, code in (
        ({**TERMS, "max_charge": 300_00}, "invalid_request"),  # more than the limit
        ({**TERMS, "limit": 0}, "invalid_request"),
        ({**TERMS, "limit": "100"}, "invalid_request"),  # strings are not amounts
        ({**TERMS, "period": "year"}, "invalid_request"),
        ({**TERMS, "phone": "12"}, "invalid_phone"),
        ({**TERMS, "phone": "0712999999"}, "customer_not_found"),
        ({**TERMS, "phone": "0700000002"}, "customer_not_found"),  # a merchant, not a customer
        ({**TERMS, "currency": "USD"}, "currency_not_supported"),
    ):
        answer = post(client, "/allowances", key, body)
        assert (answer.status_code, answer.json["error"]["code"]) == (422, code), body
    for _ in range(3):
        assert post(client, "/allowances", key, TERMS).status_code == 201
    too_many = post(client, "/allowances", key, TERMS)
    assert (too_many.status_code, too_many.json["error"]["code"]) == (422, "too_many_allowance_requests")


def test_keys_scopes_and_another_merchants_allowance(client, key, active, merchant):
    path = f"/allowances/{active}"
    assert client.get(f"/api/v1{path}").status_code == 401
    read_only = make_key(merchant, scopes=("read",), name="ro")
    assert get(client, path, read_only).status_code == 200
    refused = post(client, f"{path}/charges", read_only, {"amount": 1_00})
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "insufficient_scope")
    stranger = person("+254700000009", "Other Shop", role="merchant", till="654321")
    theirs = make_key(stranger, name="other")
    for answer in (
        get(client, path, theirs),
        post(client, f"{path}/charges", theirs, {"amount": 1_00}),
        post(client, f"{path}/charges/batch", theirs, {"charges": [{"amount": 1_00}]}),
        post(client, f"{path}/settle", theirs, {}),
        get(client, "/allowances/al_nosuchthing", key),
    ):
        assert (answer.status_code, answer.json["error"]["code"]) == (404, "not_found")
    assert get(client, path, key).json["charges"] == 0  # nothing was charged by the stranger


def test_a_batch_with_a_malformed_row_is_refused_whole(client, key, active):
    rows = [{"amount": 1_00}, {"amount": 0}]
    answer = post(client, f"/allowances/{active}/charges/batch", key, {"charges": rows})
    assert (answer.status_code, answer.json["error"]["code"]) == (422, "invalid_request")
    assert "row 2" in answer.json["error"]["message"]
    too_big = post(client, f"/allowances/{active}/charges/batch", key, {"charges": [{"amount": 1}] * 1001})
    assert too_big.status_code == 422
    assert get(client, f"/allowances/{active}", key).json["charges"] == 0


def test_settle_with_nothing_charged_does_nothing(client, key, active):
    answer = post(client, f"/allowances/{active}/settle", key, None)
    assert answer.status_code == 202, answer.json
    assert answer.json["settlement"] is None and answer.json["allowance"]["status"] == "active"


def test_the_document_lists_the_allowance_operations(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    operations = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    assert operations >= {
        ("POST", "/api/v1/allowances"),
        ("GET", "/api/v1/allowances/{allowance_id}"),
        ("POST", "/api/v1/allowances/{allowance_id}/charges"),
        ("POST", "/api/v1/allowances/{allowance_id}/charges/batch"),
        ("POST", "/api/v1/allowances/{allowance_id}/settle"),
    }
    assert "AllowanceCreate" in str(paths["/api/v1/allowances"]["post"]["requestBody"])
