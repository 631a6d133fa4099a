"""Webhook refusals, table-driven: a request without the secret, with a wrong one, from a
disallowed address, too large or too frequent gets the right status and nothing else happens:
no USSD session is started or moved on, no transfer recorded, no PIN try counted, no delivery
report applied, no inbound SMS stored or answered. The same request, let through, does act
(so each check below could fail)."""

import time

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.sms_helpers import agent_with_float, execute, outbox, person, send
from tests.ussd_helpers import Phone
from tests.ussd_helpers import person as ussd_person
from ussd_app import phones
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.sms_commands.inbound import InboundMessage
from ussd_app.users import User
from ussd_app.ussd import sessions

PIN = "8642"
SECRET = "s3cret-value"
USSD_TOO_LARGE = "END Sorry, this request could not be read. Please dial again."
USSD_TOO_MANY = "END Too many requests. Please wait a minute and dial again."


def _fill_rate(redis, phone: str, limit: int) -> None:
    """This minute's (and the next one's) budget for ``phone`` already spent (counted by the
    number in E.164, whatever its spelling)."""
    phone = phones.normalize(phone)
    minute = int(time.time() // 60)
    for m in (minute, minute + 1):
        redis.set(f"tuma:ratelimit:{phone}:{m}", limit, ex=180)


# name: (arm(config, redis, phone), extra request kwargs, /ussd answer, /sms status)
CASES = {
    "no secret": (lambda c, r, p: c(WEBHOOK_SECRET=SECRET), {}, (403, "forbidden"), 403),
    "wrong secret": (
        lambda c, r, p: c(WEBHOOK_SECRET=SECRET),
        {"query_string": {"key": "wrong"}},
        (403, "forbidden"),
        403,
    ),
    "disallowed address": (
        lambda c, r, p: c(WEBHOOK_ALLOWED_IPS="10.0.0.0/8"),  # the test client is 127.0.0.1
        {},
        (403, "forbidden"),
        403,
    ),
    "too large": (
        lambda c, r, p: c(WEBHOOK_MAX_BODY_BYTES=2_000),
        {"pad": "x" * 5_000},
        (200, USSD_TOO_LARGE),  # Africa's Talking shows the answer: a clean END
        413,
    ),
    "too frequent": (
        lambda c, r, p: (c(WEBHOOK_RATE_PER_MINUTE=5), _fill_rate(r, p, 5)),
        {},
        (200, USSD_TOO_MANY),
        429,
    ),
}
IDS = list(CASES)
OFF = dict(WEBHOOK_SECRET=None, WEBHOOK_ALLOWED_IPS=None, WEBHOOK_MAX_BODY_BYTES=0, WEBHOOK_RATE_PER_MINUTE=0)


def post(client, path: str, fields: dict, extra: dict):
    extra = dict(extra)
    if "pad" in extra:
        fields = {**fields, "pad": extra.pop("pad")}
    return client.post(path, data=fields, **extra)


def ussd_fields(phone: Phone, text: str) -> dict:
    return {
        "sessionId": phone.session_id,
        "serviceCode": "*384*7#",
        "phoneNumber": phone.number,
        "networkCode": "63902",
        "text": text,
    }


def requests_count() -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()


@pytest.mark.parametrize("case", IDS)
def test_a_refused_first_hop_starts_no_session(client, redis, config, case):
    arm, extra, (status, body), _ = CASES[case]
    ussd_person("+254712000111", "Juma Otieno", pin=PIN)
    phone = Phone(client, "0712000111")
    arm(config, redis, phone.number)
    answer = post(client, "/ussd", ussd_fields(phone, ""), extra)
    assert (answer.status_code, answer.get_data(as_text=True)) == (status, body)
    assert sessions.load(phone.session_id) is None
    assert redis.keys("tuma:ussd:*") == []


@pytest.mark.parametrize("case", IDS)
def test_a_refused_pin_hop_sends_nothing_and_leaves_the_session_where_it_was(client, redis, config, case):
    arm, extra, (status, body), _ = CASES[case]
    juma = ussd_person("+254712000111", "Juma Otieno", pin=PIN)
    fund(juma.account_id, 5_000_00)
    ussd_person("+254712000222", "Wanjiru Kamau", pin="9753")
    phone = Phone(client, "0712000111")
    assert phone.walk("1", "0712000222", "1000", "1").startswith("CON Enter your PIN")
    before = sessions.load(phone.session_id).to_json()
    arm(config, redis, phone.number)
    final = "*".join([*phone.inputs, PIN])
    answer = post(client, "/ussd", ussd_fields(phone, final), extra)
    assert (answer.status_code, answer.get_data(as_text=True)) == (status, body)
    assert requests_count() == 0
    assert sessions.load(phone.session_id).to_json() == before
    db.session.expire_all()
    assert db.session.get(User, juma.id).pin_failures in (0, None)
    # Let through, the very same hop sends the money once.
    config(**OFF)
    assert phone.send(PIN).startswith("END Sending KES 1,000.00 to Wanjiru Kamau")
    assert requests_count() == 1


@pytest.mark.parametrize("case", IDS)
def test_a_refused_delivery_report_changes_nothing(client, redis, config, case):
    arm, extra, _, status = CASES[case]
    agent = agent_with_float()
    amina = person("+254712000401", "Amina Hassan")
    send(agent, amina, 100_00)
    execute()
    row = outbox(phone=amina.phone)[0]
    row.gateway_message_id = "ATXid_refused_1"  # as if the sender had handed it over
    db.session.commit()
    row_id, state = row.id, (row.status, row.delivery_status)
    fields = {"id": "ATXid_refused_1", "status": "Success", "phoneNumber": amina.phone}
    arm(config, redis, amina.phone)
    answer = post(client, "/sms/delivery", fields, extra)
    assert answer.status_code == status
    db.session.expire_all()
    again = db.session.get(OutboxMessage, row_id)
    assert (again.status, again.delivery_status) == state
    config(**OFF)
    assert client.post("/sms/delivery", data=fields).status_code == 200
    db.session.expire_all()
    assert db.session.get(OutboxMessage, row_id).status == "delivered"


@pytest.mark.parametrize("case", IDS)
def test_a_refused_inbound_sms_is_neither_stored_nor_answered(client, redis, config, case):
    arm, extra, _, status = CASES[case]
    fields = {"from": "+254712000501", "to": "22384", "text": "HELP", "id": "at-inbound-refused-1"}
    arm(config, redis, fields["from"])
    answer = post(client, "/sms/inbound", fields, extra)
    assert answer.status_code == status
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(InboundMessage)).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0
    config(**OFF)
    assert client.post("/sms/inbound", data=fields).status_code == 200
    db.session.expire_all()
    assert db.session.execute(select(func.count()).select_from(InboundMessage)).scalar_one() == 1
