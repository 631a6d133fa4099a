"""Attacks from outside on what the look-up branch built (payouts name their recipients only as
counted look-ups of their merchant, the API's chunked body cap, the back office's cookie path):
through the real app (test client), real Redis and the real database. Each test is a finding:
fixed with it, or ``xfail(strict=True)`` saying why it is left."""

import re

from tests.admin_helpers import EMAIL, PASSWORD, operator

# -- 2. the back office behind a proxy's path prefix ----------------------------------------------


def test_the_back_office_behind_a_path_prefix_keeps_its_session(app, config):
    """Served under a proxy's prefix (SCRIPT_NAME /tuma, a case the back office's routing is
    tested for), the cookie's ``Path=/admin`` is not the path the browser asks for
    (/tuma/admin/...): the browser never sends it back, so the sign-in form's CSRF token is
    refused and nobody can sign in. Its path is the back office's as the browser sees it."""
    config(WTF_CSRF_ENABLED=True)
    operator()
    browser = app.test_client()
    base = "http://localhost/tuma/"
    page = browser.get("/admin/login", base_url=base)
    assert "Path=/tuma/admin" in page.headers["Set-Cookie"], page.headers["Set-Cookie"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    signed_in = browser.post("/admin/login", base_url=base, data=form)
    assert signed_in.status_code == 302, signed_in.get_data(as_text=True)[:300]
    home = browser.get("/admin/", base_url=base)
    assert home.status_code == 200 and "Sign out" in home.get_data(as_text=True)
    # Still nowhere else: not to the API or the webhooks under the same prefix.
    assert browser.get_cookie("session", path="/tuma/admin") is not None
    assert browser.get_cookie("session", path="/") is None
    # And without a prefix it is /admin, as before.
    plain = app.test_client()
    assert "Path=/admin;" in plain.get("/admin/login").headers["Set-Cookie"] + ";"
