"""Issue 15 item 4: operators' sessions live on the server, so a cookie copied before sign-out,
deactivation or expiry is worth nothing after it; production cookies are Secure, HttpOnly
and SameSite."""

import time

import pytest
from sqlalchemy import select

from tests.admin_helpers import EMAIL, PASSWORD, csrf_token, login, operator, post
from tests.conftest import make_app, reset_data, sqlite_url
from tests.ussd_helpers import person
from ussd_app.admin import operator_sessions
from ussd_app.extensions import db
from ussd_app.users import User


@pytest.fixture(autouse=True)
def csrf_on(config):
    config(WTF_CSRF_ENABLED=True, ADMIN_IDLE_MINUTES=30, ADMIN_ABSOLUTE_HOURS=12)


def copy_of(client, app):
    """Another browser holding a copy of ``client``'s cookie, as an attacker who stole it."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session", path="/admin").value)
    return thief


def works(client) -> bool:
    return client.get("/admin/accounts").status_code == 200


def session_keys(redis):
    return list(redis.scan_iter(operator_sessions.SESSION_PREFIX + "*"))


def test_a_cookie_copied_before_sign_out_does_not_work_after_it(client, app, redis):
    operator()
    login(client)
    thief = copy_of(client, app)
    assert works(thief)  # the copy is as good as the original while the session lives
    assert post(client, "/admin/logout").status_code == 302
    assert not works(client)
    response = thief.get("/admin/accounts")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    # Nor can the copy act: the lock is refused, the customer stays unlocked.
    user = person("+254712300009", "Keep Open")
    token = csrf_token(thief, "/admin/login")
    thief.post(f"/admin/accounts/{user.id}/lock", data={"reason": "x", "csrf_token": token})
    assert db.session.execute(select(User.locked_until).where(User.id == user.id)).scalar_one() is None
    assert session_keys(redis) == []


def test_the_cookie_holds_a_random_token_not_the_operator(client, app, redis):
    op = operator()
    login(client)
    first = client.get_cookie("session", path="/admin").value
    [key] = session_keys(redis)
    assert redis.hget(key, "operator_id") == str(op.id).encode()
    post(client, "/admin/logout")
    login(client)
    assert client.get_cookie("session", path="/admin").value != first
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(client.get_cookie("session", path="/admin").value)
    assert set(data) - {"csrf_token", "_flashes"} == {"admin_session"}
    assert len(data["admin_session"]) >= 40 and str(op.id) != data["admin_session"]


def test_deactivation_ends_every_open_session_at_once(client, app, runner, redis):
    op = operator()
    login(client)
    other_browser = app.test_client()
    login(other_browser)
    thief = copy_of(client, app)
    assert works(client) and works(other_browser) and works(thief)
    result = runner.invoke(args=["operators", "deactivate", "--email", EMAIL])
    assert result.exit_code == 0 and "2 open sessions ended" in result.output
    assert session_keys(redis) == []
    # Even if the operator is made active again, the old sessions stay dead.
    db.session.get(type(op), op.id).active = True
    db.session.commit()
    assert not works(client) and not works(other_browser) and not works(thief)
    assert login(app.test_client()).status_code == 302  # a new sign-in is a new session


def test_an_idle_session_ends_and_stays_ended(client, app, config, redis):
    operator()
    login(client)
    thief = copy_of(client, app)
    [key] = session_keys(redis)
    assert 0 < redis.ttl(key) <= 30 * 60  # Redis drops it after the idle time by itself
    config(ADMIN_IDLE_MINUTES=-1)
    assert not works(thief)
    config(ADMIN_IDLE_MINUTES=30)  # back to normal: the session is gone, not just hidden
    assert not works(client) and not works(thief)
    assert session_keys(redis) == []


def test_a_busy_session_still_ends_at_the_absolute_timeout(client, app, redis):
    operator()
    login(client)
    [key] = session_keys(redis)
    assert works(client)
    # Signed in 12 hours and a second ago, and busy all along (seen just now).
    redis.hset(key, mapping={"created": time.time() - 12 * 3600 - 1, "seen": time.time()})
    assert not works(client)
    assert session_keys(redis) == []
    # Near the end, the idle TTL is cut to what is left of the absolute one.
    login(client)
    [key] = session_keys(redis)
    redis.hset(key, "created", time.time() - 12 * 3600 + 120)
    assert works(client)
    assert 0 < redis.ttl(key) <= 120


def test_csrf_keeps_working_with_server_side_sessions(client):
    operator()
    login(client)
    user = person("+254712300010", "Lock Me")
    response = post(client, f"/admin/accounts/{user.id}/lock", {"reason": "fraud"}, page="/admin/accounts")
    assert response.status_code == 302
    assert db.session.execute(select(User.locked_until).where(User.id == user.id)).scalar_one() is not None
    forged = client.post(f"/admin/accounts/{user.id}/unlock", data={"csrf_token": "forged"})
    assert forged.status_code == 400


def production_app():
    return make_app(
        sqlite_url(),
        TUMA_ENV="production",
        SECRET_KEY="a production secret key for the test",
        PIN_PEPPER="a production pepper",
        AT_API_KEY="a production key",
        WEBHOOK_SECRET="a webhook secret",
    )


def test_production_cookies_are_secure_httponly_and_samesite(app):
    prod = production_app()
    with prod.app_context():
        reset_data()
        operator()
        browser = prod.test_client()
        response = login(browser)
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert browser.get("/admin/").status_code == 200
        db.session.remove()
    # Development (plain http on a laptop) keeps HttpOnly and SameSite, without Secure.
    dev = app.test_client()
    operator(email="dev@tuma.example")
    cookie = login(dev, email="dev@tuma.example", password=PASSWORD).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Path=/admin;" in cookie + ";"  # sent to the back office only


def test_only_the_back_office_reads_or_writes_its_cookie(client, app, redis):
    """A browser sends the back office's cookie only under /admin (its Path); a webhook or API
    request that carries one anyway (a copy set for "/") neither refreshes nor clears it (no
    Set-Cookie, no "Vary: Cookie"), and the operator is still signed in after it. /admin still
    reads and refreshes it."""
    app.config["PERMANENT_SESSION_LIFETIME"] = 3600
    operator()
    login(client)
    cookie = client.get_cookie("session", path="/admin").value
    client.set_cookie("session", cookie)  # a copy for every path, sent with the hop below
    hop = client.post("/ussd", data={"sessionId": "s1", "phoneNumber": "0711000001", "text": ""})
    assert hop.status_code == 200 and hop.get_data(as_text=True).startswith(("CON", "END"))
    assert "Set-Cookie" not in hop.headers and "Cookie" not in hop.headers.get("Vary", "")
    assert client.get("/nowhere").headers.get("Set-Cookie") is None
    assert client.get_cookie("session", path="/admin").value == cookie
    page = client.get("/admin/accounts")
    assert page.status_code == 200 and "Cookie" in page.headers.get("Vary", "")
    # Signed out, a webhook hop does not sign anyone in again or bring the cookie back.
    client.set_cookie("session", "not a signed value")
    client.set_cookie("session", "not a signed value", path="/admin")
    assert (
        "Set-Cookie"
        not in client.post("/ussd", data={"sessionId": "s2", "phoneNumber": "0711000001"}).headers
    )
    assert client.get("/admin/accounts").status_code == 302
