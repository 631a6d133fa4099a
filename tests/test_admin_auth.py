"""Back-office sign-in, sessions, CSRF and the operators CLI."""

import pytest
from sqlalchemy import select

from tests.admin_helpers import EMAIL, PASSWORD, csrf_token, login, operator, post
from tests.ussd_helpers import person
from ussd_app.admin.models import AuditEntry, Operator
from ussd_app.extensions import db

PAGES = [
    "/admin/",
    "/admin/ledger",
    "/admin/accounts",
    "/admin/transfers",
    "/admin/transfers/ABCDEFGHIJ",
    "/admin/disputes",
    "/admin/sms",
    "/admin/float",
    "/admin/queues",
    "/admin/audit",
]


def actions():
    return [r.action for r in db.session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()]


@pytest.fixture(autouse=True)
def csrf_on(app):
    app.config["WTF_CSRF_ENABLED"] = True  # the default; said out loud for these tests
    yield


@pytest.mark.parametrize("page", PAGES)
def test_every_page_sends_a_stranger_to_sign_in(client, page):
    response = client.get(page)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def test_an_action_without_a_session_changes_nothing(client, app):
    user = person("+254712300001", "Lock Me")
    response = post(client, f"/admin/accounts/{user.id}/lock", {"reason": "x"}, page="/admin/login")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    db.session.refresh(user)
    assert user.locked_until is None


def test_wrong_password_is_refused_and_audited(client):
    operator()
    response = login(client, password="not the password at all")
    assert response.status_code == 401
    assert "Wrong email or password" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert login(client, email="nobody@tuma.example").status_code == 401
    assert actions() == ["login.refused", "login.refused"]


def test_sign_in_then_pages_then_sign_out(client):
    op = operator()
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    for page in PAGES[:4] + PAGES[5:]:
        assert client.get(page).status_code == 200, page
    assert client.get("/admin/").headers["Cache-Control"] == "no-store"
    assert post(client, "/admin/logout").status_code == 302
    assert client.get("/admin/").status_code == 302
    assert actions() == ["login", "logout"]
    assert db.session.get(Operator, op.id).last_login_at is not None


def test_next_only_leads_inside_the_back_office(client):
    operator()
    token = csrf_token(client)
    response = client.post(
        "/admin/login?next=https://evil.example/",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/admin/"


def test_a_deactivated_operator_is_signed_out_and_cannot_sign_in(client):
    op = operator()
    login(client)
    op.active = False
    db.session.commit()
    assert client.get("/admin/").status_code == 302
    assert login(client).status_code == 401


def test_an_idle_session_ends(client, app):
    operator()
    login(client)
    app.config["ADMIN_IDLE_MINUTES"] = -1
    try:
        assert client.get("/admin/").status_code == 302
    finally:
        app.config["ADMIN_IDLE_MINUTES"] = 30


def test_forms_without_a_valid_csrf_token_are_refused(client):
    operator()
    # Sign-in itself needs the token.
    response = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302
    login(client)
    user = person("+254712300002", "Keep Open")
    for token in (None, "forged-token"):
        data = {"reason": "fraud"} | ({"csrf_token": token} if token else {})
        response = client.post(f"/admin/accounts/{user.id}/lock", data=data)
        assert response.status_code == 400
        assert "expired" in response.get_data(as_text=True)
    db.session.refresh(user)
    assert user.locked_until is None
    assert "account.lock" not in actions()


def test_operators_cli_creates_an_operator_with_an_argon2_hash(runner):
    result = runner.invoke(
        args=[
            "operators",
            "create",
            "--email",
            "New@Tuma.example",
            "--name",
            "New Op",
            "--password",
            PASSWORD,
        ]
    )
    assert result.exit_code == 0, result.output
    op = db.session.execute(select(Operator)).scalar_one()
    assert op.email == "new@tuma.example"
    assert op.password_hash.startswith("$argon2id$") and PASSWORD not in op.password_hash
    assert op.check_password(PASSWORD) and not op.check_password("wrong")
    assert actions() == ["operator.create"]


def test_operators_cli_prompts_for_the_password_and_refuses_short_ones(runner):
    result = runner.invoke(
        args=["operators", "create", "--email", "p@tuma.example", "--name", "P"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    short = runner.invoke(
        args=["operators", "create", "--email", "s@tuma.example", "--name", "S", "--password", "short"]
    )
    assert short.exit_code != 0 and "at least 12" in short.output
    again = runner.invoke(
        args=["operators", "create", "--email", "p@tuma.example", "--name", "P", "--password", PASSWORD]
    )
    assert again.exit_code != 0 and "already exists" in again.output


def test_the_demo_operator_of_make_run_is_created_once_and_never_in_production(runner, app):
    from devtools.demo import DEMO_OPERATOR

    email, _name, password = DEMO_OPERATOR
    for _ in range(2):
        result = runner.invoke(args=["demo", "operator"])
        assert result.exit_code == 0, result.output
        assert f"demo operator: {email} / {password}" in result.output
    [op] = db.session.execute(select(Operator)).scalars()
    assert op.email == email and op.check_password(password) and password not in op.password_hash
    assert actions() == ["operator.create"]
    db.session.delete(op)
    db.session.execute(AuditEntry.__table__.delete())
    db.session.commit()
    app.config["TUMA_ENV"] = "production"
    try:
        refused = runner.invoke(args=["demo", "operator"])
    finally:
        app.config["TUMA_ENV"] = "development"
    assert refused.exit_code != 0 and "no demo operator in production" in refused.output
    assert db.session.execute(select(Operator)).scalars().all() == []
