"""A phone talking to ``POST /ussd`` the way Africa's Talking relays it, and people to talk to."""

import itertools
import json
import re
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import event

from ussd_app import reads
from ussd_app.extensions import db
from ussd_app.users import create_user

_sessions = itertools.count(1)
SERVICE_CODE = "*384*7#"

# Every item of a registered customer's home menu, by number (``options`` reads them).
CUSTOMER_MENU_ITEMS = {
    "1": "Send money",
    "2": "My account",
    "3": "My approvals",
    "4": "Withdraw cash",
    "5": "Buy goods",
    "6": "Pay bill",
    "7": "Buy airtime",
    "8": "Request money",
    "9": "My requests",
    "10": "Tip or donate",
    "11": "Standing orders",
    "12": "Allowances",
}
# Its first screen: the first nine items, then "98. More" (the rest is on the next page).
CUSTOMER_MENU = {**{key: CUSTOMER_MENU_ITEMS[key] for key in "123456789"}, "98": "More"}


class Phone:
    """One USSD session from ``number``. ``send`` types an input; the gateway joins all inputs
    so far with ``*`` (``append=True``) or, like some networks, sends only the newest one."""

    def __init__(self, client, number: str, *, append: bool = True, session_id: str | None = None):
        self.client = client
        self.number = number
        self.append = append
        self.session_id = session_id or f"ATUid_test_{next(_sessions)}"
        self.inputs: list[str] = []
        self.last_text: str | None = None

    def post(self, text: str) -> str:
        self.last_text = text
        response = self.client.post(
            "/ussd",
            data={
                "sessionId": self.session_id,
                "serviceCode": SERVICE_CODE,
                "phoneNumber": self.number,
                "networkCode": "63902",
                "text": text,
            },
        )
        assert response.status_code == 200, response.status_code
        assert response.mimetype == "text/plain"
        body = response.get_data(as_text=True)
        assert body.startswith(("CON ", "END ")), body
        return body

    def dial(self) -> str:
        return self.post("")

    def send(self, value: str) -> str:
        self.inputs.append(value)
        return self.post("*".join(self.inputs) if self.append else value)

    def repeat(self) -> str:
        """The gateway sends the last request again (a retry after a timeout)."""
        return self.post(self.last_text)

    def walk(self, *values: str) -> str:
        body = self.dial()
        for value in values:
            body = self.send(value)
        return body


def screen(body: str) -> str:
    return body[4:]


def is_resume_offer(body: str) -> bool:
    """The offer to continue a dropped session ("Continue sending ... ?" and the like)."""
    return body.startswith("CON ") and body.endswith("\n1. Yes\n2. No, start again")


def fresh(client, number: str, *inputs: str, kind: type[Phone] = Phone) -> tuple[Phone, str]:
    """A new session of ``number`` (a ``kind`` of Phone) from the home menu: an unfinished one is
    not resumed (the offer, in English or Kiswahili, is declined); then ``inputs`` typed one by
    one. The phone and the last screen."""
    phone = kind(client, number)
    body = phone.dial()
    if is_resume_offer(body) or body.endswith("\n1. Ndiyo\n2. Hapana, anza upya"):
        body = phone.send("2")
    for value in inputs:
        body = phone.send(value)
    return phone, body


def local(phone: str) -> str:
    """A Kenyan number as people type it: +254712000111 -> 0712000111."""
    return "0" + phone[4:]


def options(body: str) -> dict[str, str]:
    """{"1": "Send money", ...} from a menu screen."""
    return dict(re.findall(r"^(\d+)\. (.+)$", screen(body), flags=re.M))


def person(
    phone: str,
    name: str = "Juma Otieno",
    *,
    pin: str = "8642",
    role: str = "customer",
    language="en",
    till: str | None = None,
):
    user = create_user(db.session, phone=phone, name=name, role=role, pin=pin, language=language, till=till)
    db.session.commit()
    return user


# The cast every test shares (the fixtures ``customer``, ``second_customer``, ``agent`` and
# ``merchant`` in conftest.py): who they are, their numbers and PINs. Money is the test's own.
CUSTOMER = dict(phone="+254712000111", name="Juma Otieno", pin="8642")
SECOND_CUSTOMER = dict(phone="+254712000222", name="Wanjiru Kamau", pin="9753")
AGENT = dict(phone="+254700000101", name="Ali Agent", pin="1111", role="agent")
MERCHANT = dict(phone="+254700000002", name="Mama Mboga", pin="2222", role="merchant", till="123456")


def available(account_id: int) -> int:
    """A wallet's available balance, read fresh (worker jobs end the session they used)."""
    from ussd_app.ledger import Account

    return db.session.get(Account, account_id, populate_existing=True).available


@contextmanager
def statements_sent():
    """The SQL statements sent while inside (a list, filled as they go): by the app's session
    and by a menu hop's reads (``ussd_app.reads``, their own engine on PostgreSQL)."""
    sent: list[str] = []
    engines = [db.engine] + [e for e in [reads.engine(current_app)] if e is not None]

    def note(_conn, _cursor, statement, *_args):
        sent.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", note)


def session_doc(redis, session_id: str) -> dict:
    """A session's document as Redis holds it, its seal checked and taken off."""
    from ussd_app.ussd import sessions

    key = f"tuma:ussd:session:{session_id}"
    return json.loads(sessions.unseal(key, redis.get(key)))


def put_session_doc(redis, session_id: str, doc: dict, ex: int = 180) -> None:
    """Write ``doc`` as the session's value, sealed as the app seals it (a test's shortcut to a
    state, e.g. facts aged a minute)."""
    from ussd_app.ussd import sessions

    key = f"tuma:ussd:session:{session_id}"
    redis.set(key, sessions.seal(key, json.dumps(doc)), ex=ex)
