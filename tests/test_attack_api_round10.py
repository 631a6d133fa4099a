"""Attack round 10 on the merchant API and the back office's API keys: what an outside
attacker, a merchant's system or an operator met, each closed (docs/threat-model.md)."""

import base64

import pytest

from tests.admin_helpers import login, operator
from tests.admin_helpers import post as admin_post
from tests.api_helpers import get, make_key, post
from tests.escrow_helpers import at_once, sms_to
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.api.keys import ApiKey
from ussd_app.extensions import db


def _purge() -> None:
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()


def _requests() -> list[tuple]:
    from ussd_app.payments.payment_requests import PaymentRequest

    db.session.expire_all()
    rows = [
        (r.id, r.payer_phone, r.amount, r.reason, r.reference, r.expires_at)
        for r in db.session.query(PaymentRequest).order_by(PaymentRequest.id)
    ]
    db.session.commit()
    return rows


def test_a_payment_request_key_reused_after_the_purge_is_refused_and_changes_nothing(
    client, merchant, customer, second_customer
):
    """After the 24 h purge, a payment request's Idempotency-Key with another body answered
    201 with the first request (another customer, another amount asked: the merchant's system
    believed it made) and wrote the new body's reference and expiry onto the first request
    (shortening, or lengthening, what the customer had been told). Now 422
    idempotency_key_reused and nothing changes, as for a payout or a refund; the same body
    still gets the first answer."""
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 100, "description": "Milk", "reference": "ORDER-1"}
    first = post(client, "/payment-requests", key, body, "pr-1")
    assert first.status_code == 201, first.json
    before = _requests()
    for changed in (
        {"phone": second_customer.phone},
        {"amount": 999},
        {"description": "Eggs"},
        {"reference": "ORDER-2"},
        {"expires_in": 60},
    ):
        _purge()
        refused = post(client, "/payment-requests", key, {**body, **changed}, "pr-1")
        assert refused.status_code == 422, (changed, refused.json)
        assert refused.json["error"]["code"] == "idempotency_key_reused"
        assert _requests() == before
    _purge()
    again = post(client, "/payment-requests", key, body, "pr-1")
    assert again.status_code == 201 and again.json == first.json
    assert _requests() == before
    seen = get(client, f"/payment-requests/{first.json['id']}", key).json
    assert (seen["reference"], seen["expires_at"]) == ("ORDER-1", first.json["expires_at"])


@pytest.mark.parametrize(
    "bound",
    [
        {"since": "0001-01-01T00:00:00+03:00"},
        {"until": "9999-12-31T23:59:59-03:00"},
        {"since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59-12:00"},
    ],
)
def test_a_statement_bounded_at_the_calendars_ends_is_answered_not_a_500(client, merchant, bound):
    """``since=0001-01-01T00:00:00+03:00`` ("from the start", in Nairobi's offset) was an
    OverflowError turning it into UTC: a 500. A bound off the calendar in UTC bounds as the
    calendar's first or last moment does."""
    key = make_key(merchant)
    page = get(client, "/transactions", key, **bound)
    assert page.status_code == 200, page.json
    assert page.json == {"data": [], "has_more": False, "next_cursor": None}


def test_a_cursor_with_an_offset_or_at_the_calendars_ends_is_answered_not_a_500(client, merchant):
    key = make_key(merchant)
    for raw in ("0001-01-01T00:00:00+03:00|x", "9999-12-31T23:59:59-05:00|x", "2026-01-01T00:00:00|x"):
        cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        page = get(client, "/transactions", key, cursor=cursor)
        assert page.status_code in (200, 422), (raw, page.json)


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/payment-requests/x%00y"),
        ("get", "/allowances/al_%00"),
        ("post", "/allowances/al_%00/charges"),
        ("post", "/allowances/al_%00/charges/batch"),
        ("post", "/allowances/al_%01x/settle"),
    ],
)
def test_an_id_in_the_path_with_a_nul_is_not_found_not_a_500(client, merchant, method, path):
    """PostgreSQL refuses a NUL in a query: ``GET /allowances/al_%00`` (and a charge, a batch,
    a settle, a payment request) was a 500 with an ERROR logged. No id holds a control
    character: 404 not_found, as for any id that is not the caller's."""
    key = make_key(merchant)
    body = {"charges": [{"amount": 100}]} if path.endswith("batch") else {"amount": 100}
    if path.endswith("settle"):
        body = {}
    answer = get(client, path, key) if method == "get" else post(client, path, key, body)
    assert answer.status_code == 404, answer.json
    assert answer.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("scopes", [[], ["reed"], ["admin"]])
def test_a_key_made_in_the_back_office_with_no_known_scope_is_refused_not_given_every_scope(
    client, merchant, scopes
):
    """The form dropped unknown scopes and an empty list meant "every scope": an operator who
    ticked nothing (or a crafted form naming "reed") made a key that pays out. Now refused
    (400, no key made, nothing audited)."""
    from ussd_app.admin.models import AuditEntry

    operator()
    login(client)
    answer = admin_post(
        client, "/admin/api-keys", {"phone": "0700000002", "name": "till app", "scopes": scopes}
    )
    assert answer.status_code == 400
    assert "scopes are some of" in answer.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.query(ApiKey).count() == 0
    assert db.session.query(AuditEntry).filter_by(action="api_key.create").count() == 0


def test_the_cli_refuses_an_empty_scopes_option_and_defaults_to_every_scope_only_when_left_out(
    runner, merchant
):
    """``api-keys create --scopes "$SCOPES"`` with the variable empty made a key of every
    scope; leaving the option out still does."""
    refused = runner.invoke(
        args=["api-keys", "create", "--phone", merchant.phone, "--name", "x", "--scopes", ""]
    )
    assert refused.exit_code != 0 and "scopes are some of" in refused.output
    db.session.expire_all()
    assert db.session.query(ApiKey).count() == 0
    made = runner.invoke(args=["api-keys", "create", "--phone", merchant.phone, "--name", "x"])
    assert made.exit_code == 0, made.output
    db.session.expire_all()
    assert [k.scopes for k in db.session.query(ApiKey)] == ["collect,payout,read"]


@pytest.mark.parametrize("path", ["/payment-requests", "/allowances"])
def test_asks_to_one_number_sent_at_once_stay_within_the_days_cap(app, merchant, customer, path):
    """The cap on asks to one number a day (three) was counted, then inserted, with nothing
    between: eight asks sent side by side (distinct Idempotency-Keys) all passed the count, and
    the customer got eight SMS where the cap allows three. The count is now taken under the
    payer's row lock, so they count one after the other."""
    key = make_key(merchant)
    body = {"phone": customer.phone, "amount": 100, "description": "Milk"}
    if path == "/allowances":
        body = {"phone": customer.phone, "limit": 200_00, "max_charge": 5_00, "period": "week"}
        body["description"] = "News"
    answers = at_once(app, *[lambda: post(app.test_client(), path, key, body) for _ in range(8)])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 3 + [422] * 5, statuses
    refused = {a.json["error"]["code"] for a in answers if a.status_code == 422}
    assert refused <= {"too_many_requests_to_payer", "too_many_allowance_requests"}
    assert len(sms_to(customer.phone)) <= 3


def _audited(action: str) -> list[tuple]:
    from ussd_app.admin.models import AuditEntry

    db.session.expire_all()
    rows = [(e.target, e.details) for e in db.session.query(AuditEntry).filter_by(action=action)]
    db.session.commit()
    return rows


def test_the_operator_commands_that_move_money_or_grant_access_are_audited_as_the_back_office_is(
    client, runner, customer, agent, merchant
):
    """E-float issued with ``flask float issue`` (money made), a dispute decided with ``flask
    disputes decide`` (held money sent one way), a lock lifted with ``accounts unlock`` and a
    key made or revoked with ``api-keys`` wrote no audit row, where the same action in the back
    office writes one: the audit log missed every one of them. Each now writes the back
    office's row, ``via: cli`` and no operator."""
    from tests.escrow_helpers import buy_protected, cash_in
    from tests.ussd_helpers import Phone

    issued = runner.invoke(
        args=["float", "issue", "--phone", agent.phone, "--amount", "500", "--reference", "DEP-9"]
    )
    assert issued.exit_code == 0, issued.output
    code = issued.output.split()[0]
    assert _audited("float.issue") == [
        (code, {"amount": 500_00, "phone": agent.phone, "reference": "DEP-9", "via": "cli"})
    ]

    cash_in(customer, agent)
    hold = buy_protected(client)
    from tests.escrow_helpers import PIN

    Phone(client, "0712000111").walk("3", "1", "2", PIN)
    decided = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "buyer"])
    assert decided.exit_code == 0, decided.output
    [(target, detail)] = _audited("decision.approve")
    assert target == f"protected:{hold.code}" and detail["via"] == "cli"

    unlocked = runner.invoke(args=["accounts", "unlock", "--phone", customer.phone])
    assert unlocked.exit_code == 0, unlocked.output
    assert _audited("account.unlock") == [(customer.phone, {"via": "cli"})]

    made = runner.invoke(
        args=["api-keys", "create", "--phone", merchant.phone, "--name", "shop", "--scopes", "read"]
    )
    assert made.exit_code == 0, made.output
    key_id = made.output.strip().splitlines()[-1].split("_")[1]
    assert _audited("api_key.create") == [(key_id, {"phone": merchant.phone, "scopes": "read", "via": "cli"})]
    assert made.output.strip().splitlines()[-1] not in str(_audited("api_key.create"))
    revoked = runner.invoke(args=["api-keys", "revoke", key_id])
    assert revoked.exit_code == 0, revoked.output
    assert _audited("api_key.revoke") == [(key_id, {"phone": merchant.phone, "via": "cli"})]
