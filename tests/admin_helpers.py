"""Signing in to the back office through the test client, the way a browser does."""

import re

from ussd_app.admin.models import create_operator
from ussd_app.extensions import db

EMAIL = "ops@tuma.example"
PASSWORD = "a long operator passphrase"


def operator(email=EMAIL, name="Olive Operator", password=PASSWORD):
    op = create_operator(db.session, email=email, name=name, password=password)
    db.session.commit()
    return op


def csrf_token(client, path="/admin/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email=EMAIL, password=PASSWORD):
    token = csrf_token(client)
    return client.post("/admin/login", data={"email": email, "password": password, "csrf_token": token})


def post(client, path, data=None, page="/admin/"):
    """A form post with the CSRF token a page of the back office carries."""
    data = dict(data or {})
    data["csrf_token"] = csrf_token(client, page)
    return client.post(path, data=data)
