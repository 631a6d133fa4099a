"""A payment request made through the merchant API shows its payer's registered name to the
merchant only as a counted name look-up of its owner: the rule and allowance of payouts and of
the menus (``fraud.grant_look_ups``, ``NAME_LOOKUP_LIMIT_BUSINESS``, keyed on the owner's
normalised number), taken once when the API accepts the request and recorded with it
(``payment_requests.payer_named``). Beyond the allowance the request is still made; the owner's
USSD My requests and its "declined your request" SMS show the number until the payer pays.
Through the real API, USSD webhook, Redis and database."""

import json
from datetime import timedelta

from sqlalchemy import select

from tests.api_helpers import execute_all, get, make_key, post
from tests.escrow_helpers import PIN, sms_to
from tests.test_name_lookup_payouts import left
from tests.ussd_helpers import Phone, fresh
from ussd_app.api.idempotency import IdempotencyRecord
from ussd_app.clock import utcnow
from ussd_app.events.models import Event
from ussd_app.extensions import db
from ussd_app.payments import payment_requests as pr
from ussd_app.users import find_by_phone
from worker import jobs


def my_requests(client, phone: str) -> list[str]:
    """Every payer line of the owner's USSD My requests (each group opened in a new session)."""
    _, listing = fresh(client, phone, "6")
    if not listing.startswith("CON My requests"):
        return []
    groups = [line for line in listing.splitlines()[1:] if line[:1].isdigit()]
    lines = []
    for n in range(1, len(groups) + 1):
        _, screen = fresh(client, phone, "6", str(n))
        lines += [line.split(". ", 1)[1] for line in screen.splitlines()[1:] if ": " in line]
    return [line for line in lines if not line.startswith(("Remind", "Cancel"))]


def ask(client, key: str, phone: str, idempotency_key: str | None = None, **fields):
    body = {"phone": phone, "amount": 1, "description": "Milk", **fields}
    return post(client, "/payment-requests", key, body, idempotency_key)


def test_within_the_allowance_the_name_shows_beyond_it_the_number(
    client, config, merchant, customer, second_customer
):
    config(NAME_LOOKUP_LIMIT_BUSINESS=1)
    key = make_key(merchant)
    first, second = (ask(client, key, p.phone) for p in (customer, second_customer))
    assert first.status_code == second.status_code == 201  # made all the same
    assert left(merchant.phone, 1) == 0
    assert sorted(my_requests(client, merchant.phone)) == ["+254712000222: not paid", "Juma Otieno: not paid"]
    # The API names nobody either way.
    for made in (first, second):
        seen = get(client, f"/payment-requests/{made.json['id']}", key).json
        assert "name" not in json.dumps(seen)
    for payer, made in ((customer, first), (second_customer, second)):
        assert pr.decline(db.session, payer, made.json["id"])
    db.session.commit()
    assert [body for body in sms_to(merchant.phone) if "declined" in body] == [
        "JUMA OTIENO +254712000111 declined your request of KES 0.01 for Milk.",
        "+254712000222 declined your request of KES 0.01 for Milk.",
    ]
    declined = db.session.execute(select(Event).where(Event.type == "payment_request.declined")).scalars()
    assert [json.loads(e.payload)["data"]["payer"]["name"] for e in declined] == [None, None]


def test_the_declined_sms_beyond_the_allowance_in_kiswahili(client, config, merchant, second_customer):
    config(NAME_LOOKUP_LIMIT_BUSINESS=0)
    owner = find_by_phone(db.session, merchant.phone)
    owner.language = "sw"
    db.session.commit()
    made = ask(client, make_key(merchant), second_customer.phone)
    assert pr.decline(db.session, second_customer, made.json["id"])
    db.session.commit()
    assert sms_to(merchant.phone)[-1] == "+254712000222 amekataa ombi lako la KES 0.01 kwa Milk."


def test_a_request_beyond_the_allowance_names_its_payer_once_paid(client, config, merchant):
    """Paying tells the merchant who paid (its receipt names the payer, as every payment's
    does): the paid SMS and event name them whatever the look-up's answer."""
    from tests.escrow_helpers import funded_customer

    config(NAME_LOOKUP_LIMIT_BUSINESS=0)
    funded_customer()
    key = make_key(merchant)
    made = ask(client, key, "+254712000111", amount=250_00)
    assert my_requests(client, merchant.phone) == ["+254712000111: not paid"]
    phone = Phone(client, "0712000111")
    phone.dial()
    phone.send("3")
    phone.send("1")
    phone.send("1")
    assert phone.send(PIN) == "END Approved. You will receive an SMS confirmation."
    execute_all()
    jobs.settle_payment_requests()
    assert get(client, f"/payment-requests/{made.json['id']}", key).json["status"] == "paid"
    assert any(s.startswith("JUMA OTIENO +254712000111 paid your request") for s in sms_to(merchant.phone))


def test_a_replayed_request_counts_its_look_up_once(client, config, merchant, customer):
    """The same Idempotency-Key again, and again after its remembered answer was purged: one
    look-up, and the answer it was first given (here: named)."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=3)
    key = make_key(merchant)
    first = ask(client, key, customer.phone, "ask-1")
    again = ask(client, key, customer.phone, "ask-1")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json == first.json
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    purged = ask(client, key, customer.phone, "ask-1")
    assert purged.status_code == 201 and purged.json["id"] == first.json["id"]
    assert left(merchant.phone, 3) == 2
    assert my_requests(client, merchant.phone) == ["Juma Otieno: not paid"]


def test_a_purged_replay_beyond_the_allowance_stays_nameless(client, config, merchant, customer):
    """Its first answer (no name) is kept: a look-up freed later does not name it on a replay."""
    config(NAME_LOOKUP_LIMIT_BUSINESS=0)
    key = make_key(merchant)
    first = ask(client, key, customer.phone, "late")
    config(NAME_LOOKUP_LIMIT_BUSINESS=300)
    db.session.query(IdempotencyRecord).delete()
    db.session.commit()
    assert ask(client, key, customer.phone, "late").json["id"] == first.json["id"]
    assert left(merchant.phone, 300) == 300  # nothing counted
    assert my_requests(client, merchant.phone) == ["+254712000111: not paid"]


def test_a_refused_request_counts_nothing(client, config, merchant, customer, agent):
    config(NAME_LOOKUP_LIMIT_BUSINESS=2, REQUESTS_PER_PAYER_PER_DAY=1)
    key = make_key(merchant)
    for phone, code in (
        ("0712999999", "payer_not_found"),  # not on Tuma
        (agent.phone, "payer_not_found"),  # not a customer
        (merchant.phone, "payer_not_found"),  # the owner's own number (a merchant)
        ("0812", "invalid_phone"),
    ):
        refused = ask(client, key, phone)
        assert refused.json["error"]["code"] == code, refused.json
    other = ask(client, key, customer.phone, currency="UGX")
    assert other.status_code == 422, other.json
    assert left(merchant.phone, 2) == 2
    assert ask(client, key, customer.phone).status_code == 201  # one look-up
    too_often = ask(client, key, customer.phone)  # the day's one request to this number is made
    assert too_often.json["error"]["code"] == "too_many_requests_to_payer"
    owner = find_by_phone(db.session, merchant.phone)
    owner.locked_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    assert ask(client, key, "+254712000222").status_code == 403
    assert left(merchant.phone, 2) == 1
