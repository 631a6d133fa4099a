"""A posted form reads the same through Tuma's request (``forms.py``: the short road for
URL-encoded bodies) as through Flask's own: the same fields in the same order, the same empty
form for a body that is not UTF-8, the same refusal of a body over the limit."""

import pytest
from flask import Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder

from ussd_app.forms import TumaRequest

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "Application/X-WWW-Form-URLEncoded",
    "text/plain",
    "application/json",
    None,
]


def read(request_class, body: bytes, content_type, limit=None):
    environ = EnvironBuilder(method="POST", path="/ussd", data=body, content_type=content_type).get_environ()
    request = request_class(environ)
    if limit is not None:
        request.max_content_length = limit
    try:
        form = request.form
        return (
            "form",
            list(form.items(multi=True)),
            list(request.files.items(multi=True)),
            request.stream.read(),
        )
    except Exception as exc:
        return (type(exc), getattr(exc, "code", None))


def same(body: bytes, content_type, limit=None):
    assert read(TumaRequest, body, content_type, limit) == read(Request, body, content_type, limit), (
        body,
        content_type,
    )


_PIECES = st.sampled_from(
    [
        "&",
        "=",
        "+",
        "%",
        "%2",
        "%2A",
        "%2a",
        "%zz",
        "%C3%A9",
        "%C3",
        "%FF",
        "%00",
        "a",
        "text",
        "phoneNumber",
        "254",
        "*",
        "#",
        " ",
        "é",
        ";",
        "&&",
        "==",
        "\x00",
        "%25",
        "%26",
        "%3D",
        "%2B",
        "%2b",
        "%7F",
        "%7f",
        "%80",
        "%e9",
        "%E9",
        "%41",
        "%7g",
        "%g7",
        "%%",
        "%2A%",
        "%C3%A9",
        "%E2%82",
        "%AC",
    ]
)
BODIES = st.one_of(
    st.lists(_PIECES, max_size=30).map("".join).map(lambda s: s.encode()),
    st.binary(max_size=80),
    st.text(max_size=60).map(lambda s: s.encode()),
    st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=6).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode()
    ),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, content_type=st.sampled_from(CONTENT_TYPES))
def test_any_body_reads_as_werkzeug_reads_it(app, body, content_type):
    with app.app_context():
        same(body, content_type)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, limit=st.integers(0, 90))
def test_the_body_limit_refuses_as_werkzeug_refuses(app, body, limit):
    with app.app_context():
        same(body, CONTENT_TYPES[0], limit)


def test_a_gateway_hop_reads_its_fields_and_a_long_body_is_too_large(app):
    body = (
        b"sessionId=ATUid_1&serviceCode=%2A384%2A7%23&phoneNumber=%2B254711000001"
        b"&text=1%2A0711000002&networkCode="
    )
    with app.app_context():
        environ = EnvironBuilder(method="POST", data=body, content_type=CONTENT_TYPES[0]).get_environ()
        form = TumaRequest(environ).form
        assert form["serviceCode"] == "*384*7#" and form["phoneNumber"] == "+254711000001"
        assert form["text"] == "1*0711000002" and form["networkCode"] == ""
        environ = EnvironBuilder(method="POST", data=body, content_type=CONTENT_TYPES[0]).get_environ()
        request = TumaRequest(environ)
        request.max_content_length = 50
        with pytest.raises(RequestEntityTooLarge):
            request.form  # noqa: B018


def test_the_app_reads_forms_with_it(app):
    assert app.request_class is TumaRequest
