"""Who may call /api/v1: keys from the CLI, 401 without a valid key, 403 outside its scopes or
for a locked owner, 429 over the key's rate."""

from datetime import datetime, timedelta

from tests.api_helpers import auth, get, make_key
from ussd_app.api.keys import ApiKey, digest
from ussd_app.extensions import db
from ussd_app.users import OPERATOR_LOCK_UNTIL


def test_cli_prints_the_key_once_on_the_last_line_and_stores_only_its_hash(app, runner, merchant, client):
    result = runner.invoke(args=["api-keys", "create", "--phone", "0700000002", "--name", "web shop"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("tuma_")
    row = db.session.query(ApiKey).one()
    assert row.secret_hash == digest(key) and key not in (row.secret_hash, row.key_id, row.name)
    assert get(client, "/balance", key).status_code == 200
    listed = runner.invoke(args=["api-keys", "list"])
    assert row.key_id in listed.output and key not in listed.output
    assert runner.invoke(args=["api-keys", "revoke", row.key_id]).exit_code == 0
    assert get(client, "/balance", key).status_code == 401


def test_only_merchants_and_agents_get_keys(runner, customer):
    result = runner.invoke(args=["api-keys", "create", "--phone", customer.phone, "--name", "x"])
    assert result.exit_code != 0 and "only merchants and agents" in result.output


def test_no_key_a_wrong_key_or_a_mangled_one_is_401_with_the_error_shape(client, merchant):
    key = make_key(merchant)
    for headers in ({}, auth("tuma_000000000000_nope"), auth(key[:-1] + "x"), {"Authorization": key}):
        response = client.get("/api/v1/balance", headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_outside_its_scopes_is_403(client, merchant):
    key = make_key(merchant, scopes=("collect",))
    response = get(client, "/balance", key)
    assert response.status_code == 403 and response.json["error"]["code"] == "insufficient_scope"


def test_a_locked_owner_is_403(client, merchant):
    key = make_key(merchant)
    for until in (datetime.now() + timedelta(hours=1), OPERATOR_LOCK_UNTIL):
        db.session.merge(merchant).locked_until = until
        db.session.commit()
        response = get(client, "/balance", key)
        assert response.status_code == 403 and response.json["error"]["code"] == "account_locked"


def test_over_the_rate_is_429_per_key(client, merchant, agent, config):
    config(API_RATE_PER_MINUTE=3)
    key, other = make_key(merchant), make_key(agent)
    codes = [get(client, "/balance", key).status_code for _ in range(4)]
    if codes[-1] == 200:  # the minute turned between two requests: one more fills the new one
        codes = [get(client, "/balance", key).status_code for _ in range(4)]
    assert codes[-1] == 429 and 200 in codes
    assert get(client, "/balance", other).status_code == 200


def test_unknown_paths_and_methods_answer_json(client, merchant):
    assert client.get("/api/v1/nothing-here").json["error"]["code"] == "not_found"
    response = client.delete("/api/v1/balance", headers=auth(make_key(merchant)))
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"


def test_a_405_names_the_methods_the_path_takes(client, merchant):
    """RFC 9110: a 405 carries ``Allow`` (found by schemathesis from outside, check ST204)."""
    key = make_key(merchant)
    response = client.open("/api/v1/webhooks", method="TRACE", headers=auth(key))
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"
    assert {"GET", "PUT"} <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert response.mimetype == "application/json"
    response = client.delete("/api/v1/payouts", headers=auth(key))
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_the_document_is_openapi_3_1_and_the_page_renders(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/balance" in doc["paths"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and b"/api/v1/balance" in page.data and b"unpkg" not in page.data


def test_the_key_is_never_logged(client, merchant, caplog):
    key = make_key(merchant)
    with caplog.at_level("DEBUG"):
        get(client, "/balance", key)
        get(client, "/balance", key[:-2] + "zz")  # a wrong one is logged as refused, not shown
        client.get("/api/v1/balance", headers={"Authorization": "Bearer " + key + "x"})
    assert "refused a request with an unknown or revoked key" in caplog.text
    assert key[len("tuma_") + 13 :] not in caplog.text and "Bearer" not in caplog.text


def test_docs_api_md_lists_every_error_code():
    import pathlib

    from ussd_app.api.errors import CODES

    text = (pathlib.Path(__file__).parent.parent / "docs" / "api.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in text]
    assert not missing, missing
