"""Issue 15 (back-office part): an operator changes a customer's KYC tier from the accounts
page; the change is audited with the operator, the old and the new tier, and the worker's
limits follow it at once."""

import pytest
from sqlalchemy import select

from tests.admin_helpers import login, operator, post
from tests.sms_helpers import agent_with_float, execute, person, send
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import User

SMALL = {
    "LIMITS_BASIC_MAJOR": "1000,2000,5000",
    "LIMITS_FULL_MAJOR": "3000,6000,20000",
    "VELOCITY_MAX_COUNT": 0,
    "VELOCITY_MAX_VALUE_MAJOR": 0,
}


def kes(major: int) -> int:
    return major * 100


@pytest.fixture
def signed_in(client, config):
    config(**SMALL)
    op = operator()
    login(client)
    return client, op.id


def tier_rows():
    return list(
        db.session.execute(
            select(AuditEntry).where(AuditEntry.action == "account.tier").order_by(AuditEntry.id)
        ).scalars()
    )


def user(phone) -> User:
    db.session.expire_all()
    return db.session.execute(select(User).where(User.phone == phone)).scalar_one()


def result_of(request_id) -> TransferRequest:
    db.session.expire_all()
    return db.session.get(TransferRequest, request_id)


def set_tier(client, phone, tier, note):
    u = user(phone)
    return post(
        client, f"/admin/accounts/{u.id}/tier", {"tier": tier, "id_document": note}, page="/admin/accounts"
    )


def test_raising_a_tier_is_audited_and_lifts_the_limits_at_once(signed_in):
    client, op = signed_in
    agent = agent_with_float()
    amina = person("+254711000001", "Amina Wanjiku")
    baraka = person("+254711000002", "Baraka Otieno")
    deposit = send(agent, amina, kes(4_000), kind="deposit")
    execute()
    assert result_of(deposit).status == "accepted"

    too_much = send(amina, baraka, kes(2_500))  # over basic's KES 1,000 a transfer
    execute()
    assert result_of(too_much).result == "limit_transaction_exceeded"

    page = client.get("/admin/accounts?q=0711000001").get_data(as_text=True)
    assert 'placeholder="ID document checked"' in page and "Raise to full</button>" in page
    response = set_tier(client, amina.phone, "full", "National ID 12345678")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Amina Wanjiku +254711000001: tier basic → full." in page
    assert user(amina.phone).tier == "full"
    [row] = tier_rows()
    assert row.operator_id == op and row.target == amina.phone
    assert row.details == {"old_tier": "basic", "new_tier": "full", "id_document": "National ID 12345678"}

    allowed = send(amina, baraka, kes(2_500))  # within full's KES 3,000 a transfer
    execute()
    assert result_of(allowed).status == "accepted"

    # Lowering it again (say the ID was forged) is audited the same way and bites at once.
    page = client.get("/admin/accounts?q=0711000001").get_data(as_text=True)
    assert 'placeholder="why it is lowered"' in page and "Lower to basic</button>" in page
    set_tier(client, amina.phone, "basic", "ID reported stolen")
    assert user(amina.phone).tier == "basic"
    assert tier_rows()[-1].details == {
        "old_tier": "full",
        "new_tier": "basic",
        "id_document": "ID reported stolen",
    }
    again = send(amina, baraka, kes(1_200))
    execute()
    assert result_of(again).result == "limit_transaction_exceeded"
    audit_page = client.get("/admin/audit").get_data(as_text=True)
    assert "account.tier" in audit_page and "ops@tuma.example" in audit_page


def test_lowering_a_tier_below_the_balance_held_says_so(signed_in):
    client, _ = signed_in
    agent = agent_with_float()
    amina = person("+254711000001", "Amina Wanjiku")
    set_tier(client, amina.phone, "full", "Passport A1234567")
    deposit = send(agent, amina, kes(8_000), kind="deposit")  # fits full's KES 20,000
    execute()
    assert result_of(deposit).status == "accepted"
    response = set_tier(client, amina.phone, "basic", "ID check failed")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "over the basic tier&#39;s balance limit of KES 5,000.00" in page
    assert user(amina.phone).tier == "basic"


def test_bad_tier_changes_are_refused_and_not_audited(signed_in):
    client, _ = signed_in
    amina = person("+254711000001", "Amina Wanjiku")
    agent = person("+254700000101", "Ali Agent", role="agent")
    cases = [
        (amina.phone, "full", ""),  # no ID document recorded
        (amina.phone, "platinum", "ID 1"),  # no such tier
        (amina.phone, "basic", "ID 1"),  # already basic
        (agent.phone, "full", "ID 1"),  # agents have no KYC tier
    ]
    for phone, tier, note in cases:
        response = set_tier(client, phone, tier, note)
        assert response.status_code == 302
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "Refused" in page or "Choose a tier" in page, (phone, tier, note)
    assert user(amina.phone).tier == "basic" and user(agent.phone).tier == "basic"
    assert tier_rows() == []
    page = client.get("/admin/accounts?q=0700000101").get_data(as_text=True)
    assert "Raise to" not in page and "Lower to" not in page  # no tier form for an agent
