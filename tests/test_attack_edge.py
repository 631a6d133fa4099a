"""An outside review of the fifth round (the edge): a URL-encoded form read by Tuma's own short
path, the back office's session opened for /admin alone, the one-parse mobile check and Flask's
context variables read directly. Each test pins what an attacker would try against one of them:
the field that wins when a gateway's body repeats one (for the hop and for its rate limit
alike), bodies and content types the property tests do not generate, every way a path can
reach a back-office view, spellings of a number with spaces or "tel:", and nested contexts."""

import io
import json

import phonenumbers
import pytest
from flask import Request
from flask.sessions import NullSession
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.admin_helpers import login, operator
from tests.conftest import default_db_url, make_app
from tests.test_forms import read, same
from tests.test_phones_mobile_check import EXAMPLES, assert_same
from tests.ussd_helpers import CUSTOMER, CUSTOMER_MENU, options, person
from ussd_app import country, security
from ussd_app.forms import URLENCODED, TumaRequest

# -- 1. the form ----------------------------------------------------------------------------


def rate_count(redis, phone: str) -> int:
    return sum(int(redis.get(key)) for key in redis.keys(f"tuma:ratelimit:{phone}:*"))


def test_a_repeated_field_is_its_first_value_for_the_hop_and_for_its_count(client, config, redis):
    """A body that names two numbers (or two sessions, two texts) is the first one's hop, and
    the first one's count: the rate limit and the hop never disagree on who dialled."""
    config(WEBHOOK_RATE_PER_MINUTE=60)
    person(CUSTOMER["phone"], CUSTOMER["name"], pin=CUSTOMER["pin"])
    body = (
        "sessionId=first&sessionId=second&serviceCode=%2A384%2A7%23"
        "&phoneNumber=%2B254712000111&phoneNumber=%2B254711000009&from=%2B254711000008"
        "&text=&text=2"
    )
    answer = client.post("/ussd", data=body, content_type=URLENCODED).get_data(as_text=True)
    # The registered customer's home menu: not a stranger's language menu (the second number),
    # not the "2" shortcut (the second text).
    assert options(answer) == CUSTOMER_MENU
    assert rate_count(redis, "+254712000111") == 1
    assert rate_count(redis, "+254711000009") == 0 and rate_count(redis, "+254711000008") == 0
    assert redis.exists("tuma:ussd:session:first") and not redis.exists("tuma:ussd:session:second")


def test_a_body_past_the_multipart_limits_reads_as_werkzeug_reads_it(app):
    """More fields than MAX_FORM_PARTS and a value past MAX_FORM_MEMORY_SIZE: Werkzeug limits
    neither for a URL-encoded body, and nor does the short path. Should a Werkzeug upgrade
    start to, this says so (the property tests' bodies are far below both limits)."""
    assert app.config["MAX_FORM_PARTS"] < 1500 and app.config["MAX_FORM_MEMORY_SIZE"] < 600_000
    body = "&".join(f"f{i}=%2A{i}" for i in range(1500))
    body += "&big=" + "x" * 600_000 + "&phoneNumber=%2B254711000001"
    same(body.encode(), URLENCODED)
    kind, fields, _, _ = read(TumaRequest, body.encode(), URLENCODED)
    assert kind == "form" and len(fields) == 1502 and fields[-1] == ("phoneNumber", "+254711000001")


BODY = b"phoneNumber=%2B254711000001&phoneNumber=+254711000002;phoneNumber=3&=x&text=caf\xc3\xa9%E9%2"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=ISO-8859-1",
        "application/x-www-form-urlencoded;charset=utf-16",
        "APPLICATION/X-WWW-FORM-URLENCODED; CHARSET=UTF-8",
        " application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;",
        "application/x-www-form-urlencoded ; a=b",
        "application/x-www-form-urlencoded, text/plain",
        "application/x-www-form-urlencoded\x00",
        "application/x-url-encoded",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "",
    ],
)
@pytest.mark.parametrize("body", [BODY, BODY.replace(b"caf\xc3\xa9", b"caf\xe9"), b""])
def test_any_content_type_reads_as_werkzeug_reads_it(app, content_type, body):
    def read_raw(request_class):
        environ = EnvironBuilder(method="POST", path="/ussd", data=body).get_environ()
        environ["CONTENT_TYPE"] = content_type
        request = request_class(environ)
        return list(request.form.items(multi=True)), list(request.files.items(multi=True))

    assert read_raw(TumaRequest) == read_raw(Request), content_type


def streamed_environ(path: str, body: bytes) -> dict:
    """A body sent chunked: no Content-Length, the server (gunicorn) terminates the stream."""
    environ = EnvironBuilder(method="POST", path=path, content_type=URLENCODED).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    return environ


@pytest.mark.parametrize("extra", [-1, 0, 1, 500])
def test_a_streamed_body_is_read_whole_or_refused_never_cut(app, extra):
    """Werkzeug's limited stream stops at the cap without a word when a streamed body is read
    whole, and its parser reads the body cut there; here it is read whole up to the cap and
    too large past it."""
    body = b"text=1*0711000002*500&phoneNumber=%2B254711000001&pad="
    body += b"x" * (100 - len(body) + extra)
    werkzeugs = Request(streamed_environ("/ussd", body))
    werkzeugs.max_content_length = 100
    ours = TumaRequest(streamed_environ("/ussd", body))
    ours.max_content_length = 100
    if extra <= 0:
        assert ours.form == werkzeugs.form and ours.form["pad"] == "x" * (46 + extra)
    else:
        assert werkzeugs.form["pad"] == "x" * 46  # (Werkzeug's: the body cut at the cap)
        with pytest.raises(RequestEntityTooLarge):
            ours.form  # noqa: B018


def test_a_streamed_body_past_the_webhook_cap_is_refused_as_one_with_a_length(app, config):
    """A USSD hop or an SMS sent chunked and past WEBHOOK_MAX_BODY_BYTES gets the refusal a
    body with a Content-Length gets (the phone's END, a 413), not a hop or an SMS read from
    the body cut at the cap; at the cap it is read."""
    config(WEBHOOK_MAX_BODY_BYTES=2_000)

    def streamed(path: str, body: bytes) -> str:
        app_iter, status, _ = run_wsgi_app(app, streamed_environ(path, body), buffered=True)
        return status + " " + b"".join(app_iter).decode()

    def hop(session: str, pad: int) -> bytes:
        head = f"sessionId={session}&phoneNumber=%2B254711000001&text=&pad=".encode()
        return head + b"x" * (2_000 - len(head) + pad)

    assert streamed("/ussd", hop("at-the-cap", 0)).startswith("200 OK CON ")
    refused = "200 OK END Sorry, this request could not be read. Please dial again."
    assert streamed("/ussd", hop("past-the-cap", 1)) == refused
    assert streamed("/ussd", hop("far-past-the-cap", 5_000)) == refused
    sms = b"id=s1&from=%2B254711000001&to=12345&text=" + b"x" * 3_000
    assert streamed("/sms/inbound", sms) == "413 REQUEST ENTITY TOO LARGE body too large"
    # A gateway's JSON, whole within the cap and padded past it, is refused too (read cut at
    # the cap, it was a valid object, and answered).
    doc = json.dumps(
        {
            "Mobile": "254711000001",
            "SessionId": "hub-streamed",
            "ServiceCode": "384",
            "Type": "Initiation",
            "Message": "*384*7#",
            "Operator": "mtn",
        }
    ).encode()
    environ = streamed_environ("/ussd/hubtel", doc + b" " * 5_000)
    environ["CONTENT_TYPE"] = "application/json"
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    answer = json.loads(b"".join(app_iter))
    assert (
        status == "200 OK" and answer["Label"] == "Sorry, this request could not be read. Please dial again."
    )
    environ = streamed_environ("/ussd/hubtel", doc)
    environ["CONTENT_TYPE"] = "application/json"
    app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
    assert json.loads(b"".join(app_iter))["Label"].startswith("Welcome to Tuma")


# -- 2. the back office's session -------------------------------------------------------------


def test_every_back_office_route_is_under_the_prefix_that_opens_its_session(app):
    """Only /admin opens the signed-cookie session: a back-office view anywhere else would
    see nobody signed in and fail (a 500) on a sign-in or a CSRF token."""
    for rule in app.url_map.iter_rules():
        under = rule.rule == "/admin" or rule.rule.startswith("/admin/")
        assert rule.endpoint.startswith("admin.") == under, rule.rule


@pytest.mark.parametrize(
    ("script_name", "path_info"),
    [
        ("", "/admin/accounts"),
        ("", "//admin/accounts"),
        ("", "///admin//accounts"),
        ("", "admin/accounts"),
        ("/tuma", "/admin/accounts"),
        ("/admin", "/accounts"),
        ("", "/admin%2Faccounts"),
        ("", "/%61dmin/accounts"),
        ("", "/ADMIN/accounts"),
        ("", "/admin;x/accounts"),
        ("", "/admin/../admin/accounts"),
        ("", "/x/../admin/accounts"),
        ("", "/admin\\accounts"),
        ("", "/adminaccounts"),
        ("", "/ussd"),
    ],
)
def test_a_request_that_reaches_a_back_office_view_has_the_back_office_session(
    client, app, script_name, path_info
):
    """However a path is written (a proxy's prefix, doubled or missing slashes, escapes), a
    request routed to a back-office view has the signed-cookie session, and the operator
    signed in with it is signed in there; one outside /admin has the null one."""
    operator()
    login(client)
    cookie = client.get_cookie("session", path="/admin").value
    environ = EnvironBuilder(path="/", headers={"Cookie": f"session={cookie}"}).get_environ()
    environ.update(SCRIPT_NAME=script_name, PATH_INFO=path_info)
    with app.request_context(environ) as ctx:
        endpoint = ctx.request.endpoint
        admin_view = endpoint is not None and endpoint.startswith("admin.")
        null = isinstance(ctx.session, NullSession)
        assert not (admin_view and null), (endpoint, ctx.request.path)
        if not admin_view and not ctx.request.path.startswith("/admin/"):
            assert null, (endpoint, ctx.request.path)  # (a redirect or 404 under /admin may read it)
    if admin_view:
        app_iter, status, _ = run_wsgi_app(app, environ, buffered=True)
        assert status == "200 OK" and b"Sign out" in b"".join(app_iter)


# -- 3. the mobile check ------------------------------------------------------------------------

_SERVICE_EXAMPLES = [
    raw for raw, region in EXAMPLES if region in set(country.PROFILES) | {"US", "IT", "GB", "AR", "001"}
]


@pytest.mark.parametrize("service", sorted(country.PROFILES))
def test_padded_and_tel_spellings_get_the_same_answer(service):
    """Spaces around a number, "tel:" with a space after it, and a spelling padded to just
    inside and just past the 32 characters read: what the property test does not make."""
    for raw in _SERVICE_EXAMPLES:
        padded = (f" {raw}", f"{raw} ", f"\t{raw}", f"tel: {raw}", f"tel:{raw} ", raw.rjust(32))
        padded += (raw.rjust(33),)
        for spelled in padded:
            assert_same(spelled, service)


def test_the_service_countries_own_mobiles_pass_the_one_parse_path(app):
    for code, profile in country.PROFILES.items():
        number = phonenumbers.parse(profile.example_mobile)
        assert phonenumbers.region_code_for_number(number) == code
        spelled = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        with app.app_context():
            from ussd_app import phones

            assert phones.normalize_mobile(f"tel:{profile.example_mobile} ", code) == profile.example_mobile
            assert phones.normalize_mobile(spelled, code) == profile.example_mobile


# -- 4. Flask's context variables ---------------------------------------------------------------


def test_the_country_is_the_innermost_apps_and_the_default_outside_any(app):
    """``country.profile()``/``languages()`` read Flask's context variable directly: the
    innermost app context's app, as ``current_app`` would be, and the default outside one."""
    ghana = make_app(default_db_url(), COUNTRY="GH")
    assert country.profile().code == app.config["COUNTRY"]
    with ghana.app_context():
        assert country.profile().code == "GH" and country.languages() == country.PROFILES["GH"].languages
        with app.test_request_context("/ussd", method="POST"):
            assert country.profile().code == app.config["COUNTRY"]
        assert country.profile().code == "GH"
    assert country.profile().code == app.config["COUNTRY"]
    # Outside every context (the fixture's popped for a moment, as in a bare script).
    from flask.globals import _cv_app

    token = _cv_app.set(None)
    try:
        assert country.profile().code == country.DEFAULT_COUNTRY
        assert country.languages() == country.PROFILES[country.DEFAULT_COUNTRY].languages
        assert security.deferred_rate() is None
    finally:
        _cv_app.reset(token)


def test_after_a_hop_nothing_is_left_deferred(client, app, config):
    """The hop's deferred count belongs to its request: once the request is over, the app
    context the test holds (as a worker or shell would) has nothing deferred to count."""
    config(WEBHOOK_RATE_PER_MINUTE=60)
    answer = client.post("/ussd", data={"sessionId": "after", "phoneNumber": "+254711000001", "text": ""})
    assert answer.get_data(as_text=True).startswith("CON ")
    assert security.deferred_rate() is None
    form = {"sessionId": "x", "phoneNumber": "+254711000001"}
    with app.test_request_context("/ussd", method="POST", data=form):
        assert security.deferred_rate() is None  # the guard did not run: nothing was deferred
