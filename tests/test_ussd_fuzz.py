"""Random input at random points of every flow: always a clean CON/END screen that fits,
never a 500, and no money moves without the right PIN after a confirmation."""

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import person
from ussd_app.extensions import db
from ussd_app.ledger import Account
from ussd_app.payments.models import TransferRequest
from ussd_app.users import User
from ussd_app.ussd import approvals, gsm7
from ussd_app.ussd.approvals import PendingApproval

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
    customer=st.booleans(),
    point=st.integers(min_value=0, max_value=100),
    inputs=st.lists(texts, min_size=1, max_size=3),
    append=st.booleans(),
)
def test_random_input_anywhere_gets_a_clean_screen_and_moves_no_money(
    app, client, waiting, customer, point, inputs, append
):
    juma = db.session.execute(select(User).where(User.phone == "+254712000111")).scalar_one_or_none()
    if juma is None:
        juma = person("+254712000111", "Juma Otieno", pin=PIN)
        person("+254712000222", "Wanjiru Kamau", pin="9753")
        fund(juma.account_id, 500_000)
    juma.pin_failures, juma.locked_until = 0, None  # random wrong PINs must not starve later examples
    pin_hash = juma.pin_hash
    db.session.commit()

    if customer:
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
