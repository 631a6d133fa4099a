"""The back office makes and revokes API keys, audited; a key is shown once and never stored."""

import re

from tests.admin_helpers import login, operator, post
from tests.api_helpers import get
from ussd_app.admin.models import AuditEntry
from ussd_app.api.keys import ApiKey
from ussd_app.extensions import db


def test_make_show_once_use_and_revoke_a_key(client, merchant):
    operator()
    login(client)
    page = post(
        client, "/admin/api-keys", {"phone": "0700000002", "name": "till app", "scopes": ["payout", "read"]}
    )
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    key = re.search(r'<code id="new-key">([^<]+)</code>', html).group(1)
    assert get(client, "/balance", key).status_code == 200
    row = db.session.query(ApiKey).one()
    assert row.scopes == "payout,read"
    assert key not in client.get("/admin/api-keys").get_data(as_text=True)  # shown once
    [made] = db.session.query(AuditEntry).filter_by(action="api_key.create").all()
    assert made.target == row.key_id and key not in (made.detail or "")
    assert post(client, f"/admin/api-keys/{row.key_id}/revoke", {}).status_code == 302
    assert db.session.query(AuditEntry).filter_by(action="api_key.revoke").count() == 1
    assert get(client, "/balance", key).status_code == 401


def test_only_merchants_and_agents_and_a_name_are_needed(client, customer):
    operator()
    login(client)
    refused = post(client, "/admin/api-keys", {"phone": customer.phone, "name": "x", "scopes": ["read"]})
    assert refused.status_code == 400 and "only merchants and agents" in refused.get_data(as_text=True)
    assert post(client, "/admin/api-keys", {"phone": "nonsense", "name": "x"}).status_code == 400
    assert db.session.query(ApiKey).count() == 0


def test_signed_out_nobody_makes_keys(client, merchant):
    response = client.post("/admin/api-keys", data={"phone": merchant.phone, "name": "x"})
    assert response.status_code in (302, 400, 401, 403) and db.session.query(ApiKey).count() == 0


def test_reloading_the_page_that_shows_a_new_key_makes_no_second_key(client, merchant):
    """The new key is shown on the answer to the form's POST; a reload sends the same POST again.
    It made a second active key, never shown: now the form's one-time mark refuses it (409),
    and a fresh form makes another key."""
    operator()
    login(client)
    page = client.get("/admin/api-keys").get_data(as_text=True)
    once = re.search(r'name="once" value="([^"]+)"', page).group(1)
    form = {"phone": "0700000002", "name": "till app", "scopes": ["read"], "once": once}
    assert post(client, "/admin/api-keys", form).status_code == 200
    again = post(client, "/admin/api-keys", form)
    assert again.status_code == 409 and "sent already" in again.get_data(as_text=True)
    assert db.session.query(ApiKey).count() == 1
    fresh = re.search(r'name="once" value="([^"]+)"', again.get_data(as_text=True)).group(1)
    assert post(client, "/admin/api-keys", {**form, "once": fresh}).status_code == 200
    assert db.session.query(ApiKey).count() == 2
    assert db.session.query(AuditEntry).filter_by(action="api_key.create").count() == 2
