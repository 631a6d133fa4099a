"""Bad input everywhere. The end-of-session events, the SMS callbacks and the back office's
forms take malformed encodings, huge and missing fields, injection strings, unicode, negative
and enormous amounts and numbers in every format, and answer with a status below 500 every
time; no bad input moves money, and what is stored is shown harmlessly (escaped, never
evaluated). On /ussd, random input at random points of every flow: always a clean CON/END
screen that fits, never a 500, and no money moves without the right PIN after a confirmation."""

import html
import itertools
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.admin_helpers import csrf_token, login, operator
from tests.helpers import fund
from tests.ussd_helpers import AGENT, CUSTOMER, person
from ussd_app.cli import run_check
from ussd_app.extensions import db
from ussd_app.ledger import Account
from ussd_app.payments.models import TransferRequest
from ussd_app.users import User, create_user
from ussd_app.ussd import approvals, gsm7
from ussd_app.ussd.approvals import PendingApproval

INJECTIONS = [
    "'; drop table users;--",
    "' OR '1'='1",
    "1; DELETE FROM accounts",
    "{{7*7}}",
    "{% for x in range(3) %}x{% endfor %}",
    "${7*7}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "%s%s%s%n",
    "../../etc/passwd",
    "\x00\x01\x1b[31m",
    "\r\nSet-Cookie: x=1",
]


def forms(number: str) -> list[str]:
    """The ways one Kenyan mobile ``number`` (+2547XXXXXXXX) may be typed, and a few that are
    no number of ours."""
    local = number[4:]
    return [
        number,
        number[1:],
        "0" + local,
        f"0{local[:3]} {local[3:6]} {local[6:]}",
        local,
        "00" + number[1:],
        f"+254 ({local[:3]}) {local[3:6]}-{local[6:]}",
        "+1 555 0100",
        "+",
        "0" * 80,
        "".join(chr(0x0660 + int(d)) for d in "0" + local),  # Arabic-Indic digits
        "",
    ]


NUMBERS = forms(CUSTOMER["phone"])  # the cast's customer's
AMOUNTS = ["-1", "-0", "0", "1", "100", "12.50", "1e400", "9" * 40, "NaN", "Infinity", "1,000", "١٠٠", " 5 "]

nasty = st.one_of(
    st.sampled_from(INJECTIONS + NUMBERS + AMOUNTS),
    st.text(max_size=60),
    st.text(min_size=200, max_size=5000),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
)
fields = st.dictionaries(
    st.sampled_from(
        [
            "sessionId",
            "phoneNumber",
            "serviceCode",
            "networkCode",
            "status",
            "cost",
            "durationInMillis",
            "input",
            "errorMessage",
            "date",
            "from",
            "to",
            "text",
            "id",
            "linkId",
            "failureReason",
            "retryCount",
        ]
    ),
    nasty,
    max_size=10,
)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_nothing_moved() -> None:
    assert db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one() == 0
    db.session.commit()


@pytest.mark.parametrize("path", ["/ussd/events", "/sms/inbound", "/sms/delivery", "/ussd"])
@FUZZ
@given(form=fields)
def test_webhooks_answer_any_form_without_a_500(client, path, form):
    response = client.post(path, data=form)
    assert response.status_code < 500, (path, form, response.status_code)
    if path == "/ussd":
        assert response.get_data(as_text=True).startswith(("CON ", "END "))


RAW_BODIES = [
    b"sessionId=%ZZ&phoneNumber=%FF%FE&text=%C3%28",  # bad percent-escapes, invalid UTF-8
    b"\xff\xfe\x00s\x00e\x00s\x00s",  # UTF-16 bytes in a form
    b"sessionId=a&sessionId=b&phoneNumber=+254712000111&phoneNumber=0712000111",
    b"&&&===&=&",
    b"phoneNumber=" + b"1" * 20_000,  # over the body limit
    b"text=" + b"%00" * 3000,
]


@pytest.mark.parametrize("path", ["/ussd", "/ussd/events", "/sms/inbound", "/sms/delivery"])
@pytest.mark.parametrize("body", RAW_BODIES)
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json",
    ],
)
def test_webhooks_answer_malformed_encodings_without_a_500(client, path, body, content_type):
    response = client.post(path, data=body, content_type=content_type)
    assert response.status_code < 500, (path, body[:40], response.status_code)
    assert_nothing_moved()


@pytest.fixture
def signed_in(client):
    operator()
    login(client)
    return client


def form_post(client, path, data, page="/admin/"):
    data = dict(data)
    data["csrf_token"] = csrf_token(client, page)
    return client.post(path, data=data)


@FUZZ
@given(
    phone=st.sampled_from(forms(AGENT["phone"])) | nasty,
    amount=st.sampled_from(AMOUNTS) | nasty,
    reference=nasty,
)
def test_float_form_takes_any_input_without_a_500_or_a_partial_issue(
    signed_in, agent, phone, amount, reference
):
    response = form_post(
        signed_in, "/admin/float", {"phone": phone, "amount": amount, "reference": reference}, "/admin/float"
    )
    assert response.status_code < 500, (phone, amount, reference)
    # Issued whole or not at all: every request accepted, and the ledger's invariants hold.
    statuses = set(db.session.execute(select(TransferRequest.status)).scalars())
    db.session.commit()
    assert statuses <= {"accepted"}
    assert run_check()


@FUZZ
@given(reason=nasty, tier=nasty, document=nasty, q=nasty, day=nasty, status=nasty)
def test_back_office_forms_and_searches_take_any_input_without_a_500(
    signed_in, second_customer, reason, tier, document, q, day, status
):
    user = second_customer
    answers = [
        form_post(signed_in, f"/admin/accounts/{user.id}/lock", {"reason": reason}),
        form_post(signed_in, f"/admin/accounts/{user.id}/unlock", {}),
        form_post(signed_in, f"/admin/accounts/{user.id}/tier", {"tier": tier, "id_document": document}),
        form_post(
            signed_in,
            "/admin/disputes/delivery/" + urllib.parse.quote(q[:40], safe=""),
            {"decision": status, "note": reason},
        ),
        signed_in.get("/admin/accounts", query_string={"q": q}),
        signed_in.get("/admin/transfers", query_string={"q": q, "date": day}),
        signed_in.get("/admin/sms", query_string={"status": status, "phone": q}),
    ]
    for response in answers:
        assert response.status_code < 500, (response.request.path, response.status_code)
    assert_nothing_moved()


def test_injection_strings_are_stored_verbatim_and_shown_escaped(signed_in):
    names = ["Robert'); DROP TABLE users;-- Tables", "{{7*7}} Jinja", "<script>alert(1)</script> Smith"]
    for i, name in enumerate(names):
        create_user(db.session, phone=f"+25471200033{i}", name=name, role="customer", pin=None)
    agent = person("+254712000339", "{{ config.SECRET_KEY }} Agent", role="agent", pin="1111")
    db.session.commit()
    response = form_post(
        signed_in,
        "/admin/float",
        {"phone": "0712000339", "amount": "100", "reference": "'; drop table users;--{{7*7}}"},
        "/admin/float",
    )
    assert response.status_code == 302

    # Stored as typed (bound parameters, not SQL), and the tables are all still there.
    stored = {
        f"{u.first_name} {u.last_name}".strip()
        for u in db.session.execute(select(User).where(User.phone.like("+25471200033%"))).scalars()
    }
    assert set(names) <= stored
    assert db.session.execute(select(func.count()).select_from(User)).scalar_one() == 4

    for page in ("/admin/accounts?q=%2B25471200033", "/admin/audit", "/admin/float", "/admin/transfers"):
        body = signed_in.get(page).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in body, page
        # Templates never evaluate data: the braces come back as text, not 49 or the secret.
        if page.startswith("/admin/accounts"):
            assert "{{7*7}} Jinja" in html.unescape(body)
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
            assert "DROP TABLE users" in html.unescape(body)
        assert not re.search(r"\b49 Jinja\b", body)
        assert signed_in.application.config["SECRET_KEY"] not in body or page == "/admin/float"
    audit = html.unescape(signed_in.get("/admin/audit").get_data(as_text=True))
    assert "'; drop table users;--{{7*7}}" in audit
    assert agent.account_id


@pytest.mark.parametrize("path", ["/ussd/events", "/sms/inbound", "/sms/delivery", "/ussd"])
def test_a_nul_in_any_field_is_refused_or_dropped_never_a_database_error(client, path):
    """PostgreSQL's text columns take no NUL; the fuzzer found /ussd/events answering 503 and
    /sms/inbound failing on one. A NUL never reaches the database now."""
    form = {name: "ATXid\x00x" for name in ("sessionId", "serviceCode", "networkCode", "status", "input")}
    form.update({"from": "+254712000111", "phoneNumber": "+254712000111", "to": "12345", "text": "hi\x00"})
    form.update({"id": "ATXid\x001", "linkId": "l\x00", "errorMessage": "\x00", "date": "2026\x00"})
    response = client.post(path, data=form)
    assert response.status_code < 500, response.status_code
    assert_nothing_moved()


PIN = "8642"
NEW_PIN = "1357"
REGISTRATION_PIN = "2468"

# Where the random input lands: a registered customer's flows, and an unknown number's.
CUSTOMER_POINTS = [
    [],
    ["1"],
    ["1", "0712000222"],
    ["1", "0712000222", "1000"],
    ["1", "0712000222", "1000", "1"],  # the PIN that would send
    ["2"],
    ["2", "1"],
    ["2", "2"],
    ["2", "3"],
    ["2", "3", PIN],
    ["2", "3", PIN, NEW_PIN],
    ["2", "4"],
    ["3"],
    ["3", "98"],
    ["3", "2"],
    ["3", "2", "1"],
]
STRANGER_POINTS = [
    [],
    ["1"],
    ["1", "Amina"],
    ["1", "Amina", "Hassan"],
    ["1", "Amina", "Hassan", REGISTRATION_PIN],
]

texts = st.one_of(
    st.sampled_from(
        ["", "0", "00", "98", "99", "1", "2", "3", "4", "*", "**", "#", "1*", "*1", "*#", "0000"]
    ),
    st.text(alphabet="0123456789*#", max_size=30),
    st.text(max_size=40),  # any unicode a form can carry
    st.text(alphabet="0123456789*#abcXYZ", min_size=150, max_size=3000),
    st.from_regex(r"[A-Za-z' -]{0,30}", fullmatch=True),
)
_sessions = itertools.count(1)


class ManyWaiting:
    """Enough items waiting to page, so random input lands on lists and their pages too."""

    name = "fuzz"

    def pending(self, session, user):
        return [
            PendingApproval(str(i), f"Pay KES {i},000.00 to Merchant Number {i:02d}") for i in range(1, 8)
        ]

    def approve(self, session, user, key):
        return True

    def decline(self, session, user, key):
        return True


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and someone to send to: made once, for every example."""
    fund(customer.account_id, 500_000)
    return customer


@pytest.fixture
def waiting():
    approvals.register(ManyWaiting())
    yield
    approvals.unregister(ManyWaiting.name)


_strangers = itertools.count(1)


def post(client, session_id: str, number: str, text: str) -> str:
    response = client.post(
        "/ussd",
        data={
            "sessionId": session_id,
            "serviceCode": "*384*7#",
            "phoneNumber": number,
            "networkCode": "63902",
            "text": text,
        },
    )
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.startswith(("CON ", "END ")), body
    assert gsm7.fits(body[4:]), body
    # The webhook turns any exception into this screen; random input must never cause one.
    assert body != "END Sorry, something went wrong. Please try again later.", text
    return body


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    as_customer=st.booleans(),
    point=st.integers(min_value=0, max_value=100),
    inputs=st.lists(texts, min_size=1, max_size=3),
    append=st.booleans(),
)
def test_random_input_anywhere_gets_a_clean_screen_and_moves_no_money(
    app, client, waiting, juma, as_customer, point, inputs, append
):
    juma.pin_failures, juma.locked_until = 0, None  # random wrong PINs must not starve later examples
    pin_hash = juma.pin_hash
    db.session.commit()

    if as_customer:
        number, prefix = "0712000111", CUSTOMER_POINTS[point % len(CUSTOMER_POINTS)]
    else:
        number = f"+2547130{next(_strangers):05d}"
        prefix = STRANGER_POINTS[point % len(STRANGER_POINTS)]
    session_id = f"fuzz-{next(_sessions)}"
    typed: list[str] = []
    post(client, session_id, number, "")
    for value in [*prefix, *inputs]:
        typed.append(value)
        post(client, session_id, number, "*".join(typed) if append else value)

    # The fuzzer never types the customer's PIN on its own (only the prefixes do, before a
    # change-PIN screen), so nothing may have been sent, whatever it typed.
    newest = [value.rsplit("*", 1)[-1] for value in inputs]
    if PIN not in newest:
        assert db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one() == 0
        account = db.session.get(Account, juma.account_id, populate_existing=True)
        assert account.available == 500_000
    # Put back whatever a lucky "new PIN typed twice" changed.
    db.session.get(User, juma.id).pin_hash = pin_hash
    db.session.commit()
