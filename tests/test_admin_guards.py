"""Every back-office route, found from the app's URL map (so a page added later is covered
too): refused without a session, every form refused without its CSRF token; and an operator's
password is nowhere in clear: not in the database, the audit log, the logs or the cookie."""

import base64
import hashlib
import logging
import zlib

import pytest
from sqlalchemy import String, Text, select

from tests.admin_helpers import EMAIL, PASSWORD, csrf_token, login, operator
from ussd_app.admin.models import AuditEntry, Operator
from ussd_app.extensions import db

OPEN = {"admin.login", "admin.static"}


def admin_routes(app, method):
    """(endpoint, url) for every /admin route answering ``method``, arguments filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in OPEN or method not in rule.methods:
            continue
        values = {
            arg: 1 if rule._converters[arg].__class__.__name__ == "IntegerConverter" else "x"
            for arg in rule.arguments
        }
        with app.test_request_context():
            from flask import url_for

            found.append((rule.endpoint, url_for(rule.endpoint, **values)))
    return found


@pytest.fixture(autouse=True)
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True


def test_the_url_map_has_the_pages_and_forms_the_guards_are_checked_on(app):
    gets = {e for e, _ in admin_routes(app, "GET")}
    posts = {e for e, _ in admin_routes(app, "POST")}
    assert {"admin.dashboard", "admin.ledger", "admin.transfers", "admin.disputes", "admin.queues"} <= gets
    assert {"admin.review_page"} <= gets
    assert {"admin.logout", "admin.lock", "admin.decide", "admin.retry_sms", "admin.float_issue"} <= posts
    assert {"admin.review_decide", "admin.review_void"} <= posts


def test_no_page_without_signing_in(app, client):
    for endpoint, url in admin_routes(app, "GET"):
        response = client.get(url)
        assert response.status_code == 302, endpoint
        assert response.headers["Location"].startswith("/admin/login"), endpoint


def test_no_form_without_signing_in_even_with_a_token(app, client):
    token = csrf_token(client)
    for endpoint, url in admin_routes(app, "POST"):
        response = client.post(url, data={"csrf_token": token, "decision": "approve", "reason": "x"})
        assert response.status_code == 302, endpoint
        assert response.headers["Location"].startswith("/admin/login"), endpoint
    assert [a.action for a in db.session.execute(select(AuditEntry)).scalars()] == []


def test_no_form_without_its_csrf_token_even_signed_in(app, client):
    operator()
    login(client)
    before = db.session.execute(select(AuditEntry.id)).scalars().all()
    for endpoint, url in admin_routes(app, "POST"):
        for data in ({}, {"csrf_token": "forged"}):
            response = client.post(url, data=data | {"decision": "approve", "reason": "x"})
            assert response.status_code == 400, endpoint
            assert "did not come from this site" in response.get_data(as_text=True)
    assert db.session.execute(select(AuditEntry.id)).scalars().all() == before
    assert client.get("/admin/").status_code == 200  # still signed in: nothing was logged out


def _cookie_payload(client) -> str:
    """The signed (not encrypted) session cookie's JSON: ``[.]payload.timestamp.signature``."""
    value = client.get_cookie("session", path="/admin").value
    compressed = value.startswith(".")
    raw = value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return (zlib.decompress(data) if compressed else data).decode()


def test_an_operators_password_is_never_stored_in_clear(app, client, runner, caplog):
    caplog.set_level(logging.DEBUG)
    other = "another operator passphrase"
    result = runner.invoke(
        args=["operators", "create", "--email", "b@tuma.example", "--name", "B", "--password", other]
    )
    assert result.exit_code == 0 and other not in result.output
    operator()
    login(client, password=PASSWORD + "x")  # wrong
    login(client, email=PASSWORD, password=PASSWORD)  # the password typed in the email box
    login(client, email=f"{PASSWORD}@oops", password=PASSWORD)
    assert login(client).status_code == 302
    payload = _cookie_payload(client)
    assert "admin_session" in payload and PASSWORD not in payload
    # Nor in Redis (sessions, sign-in counters), not even as a plain hash of the e-mail box.
    redis = app.extensions["redis"]
    in_redis = " ".join(str(k) + str(redis.dump(k)) for k in redis.scan_iter("tuma:admin:*"))
    assert "tuma:admin:signin:account:" in in_redis
    for secret in (PASSWORD, hashlib.sha256(PASSWORD.encode()).hexdigest()):
        assert secret not in in_redis

    stored = []
    for model in (Operator, AuditEntry):
        columns = [c for c in model.__table__.columns if isinstance(c.type, String | Text)]
        for row in db.session.execute(select(*columns)).all():
            stored += [str(v) for v in row if v is not None]
    assert stored
    for secret in (PASSWORD, other):
        assert not [v for v in stored if secret in v]
        assert secret not in caplog.text
    hashes = db.session.execute(select(Operator.password_hash)).scalars().all()
    assert len(hashes) == 2 and all(h.startswith("$argon2id$") for h in hashes)
    assert EMAIL in stored  # the audit log does name the operator who signed in
