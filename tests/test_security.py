"""Webhook protection (shared secret, IP allow-list, per-phone rate limit, body cap) and the
refusal to run production on development secrets. Every refusal is a clean answer, never a 500.

The refusals' effects, table-driven: a request without the secret, with a wrong one, from a
disallowed address, too large or too frequent gets the right status and nothing else happens:
no USSD session is started or moved on, no transfer recorded, no PIN try counted, no delivery
report applied, no inbound SMS stored or answered. The same request, let through, does act
(so each check below could fail)."""

import base64
import ipaddress
import time

import pytest
from sqlalchemy import func, select

from tests import conftest
from tests.helpers import fund
from tests.sms_helpers import agent_with_float, execute, outbox, person, send
from tests.ussd_helpers import Phone
from ussd_app import create_app, phones
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.security import InsecureConfig, check_config, check_secrets
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.sms_commands.inbound import InboundMessage
from ussd_app.users import User
from ussd_app.ussd import sessions

PHONE = "+254711000001"


def hop(client, text="", phone=PHONE, query="", **kwargs):
    return client.post(
        "/ussd" + query,
        data={"sessionId": f"ATUid_{phone}", "serviceCode": "*384*7#", "phoneNumber": phone, "text": text},
        **kwargs,
    )


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_everything_is_open_until_configured(client):
    response = hop(client)
    assert response.status_code == 200 and response.get_data(as_text=True).startswith("CON ")


def test_a_shared_secret_in_the_url_or_basic_auth_is_required(client, config):
    config(WEBHOOK_SECRET="s3cret-value")
    for response in (
        hop(client),
        hop(client, query="?key=wrong"),
        hop(client, headers=basic("africastalking", "wrong")),
        client.post("/ussd/events", data={"sessionId": "s1"}),
        client.post("/sms/delivery", data={"id": "x", "status": "Success"}),
        client.post("/sms/inbound", data={"from": PHONE, "to": "12345", "text": "hi"}),
    ):
        assert response.status_code == 403
        assert response.get_data(as_text=True) == "forbidden"
    assert hop(client, query="?key=s3cret-value").get_data(as_text=True).startswith("CON ")
    assert hop(client, headers=basic("africastalking", "s3cret-value")).status_code == 200
    events = client.post("/ussd/events?key=s3cret-value", data={"sessionId": "s1", "status": "Success"})
    assert events.status_code == 200


def test_ip_allow_list_uses_the_socket_address_unless_proxies_are_trusted(client, config):
    config(WEBHOOK_ALLOWED_IPS="10.0.0.0/8, 192.0.2.7")
    assert hop(client).status_code == 403  # the test client is 127.0.0.1
    # A caller cannot claim an address: X-Forwarded-For is ignored without trusted proxies.
    assert hop(client, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 403
    assert hop(client, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    config(WEBHOOK_TRUSTED_PROXIES=1)
    # One proxy of ours appended the address it saw; anything left of it is the caller's claim.
    assert hop(client, headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.5"}).status_code == 403
    assert hop(client, headers={"X-Forwarded-For": "203.0.113.5, 10.1.2.3"}).status_code == 200
    assert hop(client).status_code == 403  # no header: not through our proxy
    config(WEBHOOK_ALLOWED_IPS="not-an-address, 10.0.0.0/8")
    assert hop(client, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200


def test_a_phone_that_hammers_the_webhook_is_told_to_wait(client, config):
    config(WEBHOOK_RATE_PER_MINUTE=3)
    # 7 hops span at most two one-minute windows, so at least one window sees more than 3.
    answers = [hop(client, phone=PHONE).get_data(as_text=True) for _ in range(7)]
    assert "END Too many requests. Please wait a minute and dial again." in answers
    assert hop(client, phone="+254711000002").get_data(as_text=True).startswith("CON ")
    inbound = [client.post("/sms/inbound", data={"from": "+254711000003", "to": "1"}) for _ in range(7)]
    assert 429 in [r.status_code for r in inbound]


# One number, spelled as people and gateways spell it.
SPELLINGS = (
    "0711000001",
    "254711000001",
    "+254 711 000 001",
    "tel:+254711000001",
    "0711-000-001",
    "0711.000.001",
)
_dials = iter(range(1_000_000))


def dial(client, phone, **kwargs):
    """A fresh session's first hop (a new dial) from ``phone``."""
    return client.post(
        "/ussd",
        data={"sessionId": f"ATUid_dial_{next(_dials)}", "serviceCode": "*384*7#", "phoneNumber": phone},
        **kwargs,
    ).get_data(as_text=True)


def test_other_spellings_of_a_number_share_its_limit(client, config):
    """Issue 15 item 5: 720 dials in a minute, 120 in each spelling, were all answered."""
    config(WEBHOOK_RATE_PER_MINUTE=60)
    answers = [dial(client, SPELLINGS[n % len(SPELLINGS)]) for n in range(720)]
    refused = answers.count("END Too many requests. Please wait a minute and dial again.")
    answered = [a for a in answers if a.startswith("CON ")]
    # 60 a (fixed) minute; the 720 dials fall in at most two minutes.
    assert len(answered) <= 120 and refused == 720 - len(answered)
    assert dial(client, "+254711000002").startswith("CON ")  # another number has its own count


def test_a_numbers_count_is_kept_by_its_number_and_forgotten_on_its_own(client, config, redis):
    """The hops count (in the script that takes their session) under the number in E.164,
    however it was spelt, and the count's key expires by itself (set by the count that made
    it): Redis is not left a key per number and minute for ever."""
    config(WEBHOOK_RATE_PER_MINUTE=60)
    for spelling in SPELLINGS[:3]:
        assert dial(client, spelling).startswith("CON ")
    keys = redis.keys("tuma:ratelimit:+254711000001:*")  # one, or two across a minute's end
    assert sum(int(redis.get(key)) for key in keys) == 3
    assert all(0 < redis.ttl(key) <= 120 for key in keys)


def test_a_number_that_is_not_one_of_our_mobiles_ends_cleanly_and_counts_against_its_address(client, config):
    config(WEBHOOK_RATE_PER_MINUTE=5)
    unreadable = "END Sorry, this request could not be read. Please dial again."
    # Foreign, landline, toll-free, too short, not a number: a new one every time.
    junk = [f"+1415555{2600 + n}" for n in range(6)] + ["+255712345678", "+254201234567", "0800720000"]
    junk += ["+2547", "not a phone", "1" * 30]
    answers = [dial(client, number) for number in junk]
    assert set(answers) <= {unreadable, "END Too many requests. Please wait a minute and dial again."}
    # 12 from one address, 5 a (fixed) minute: at least 2 were told to wait.
    assert answers.count(unreadable) <= 10
    # The count is the address's: another address, or a real number, is not held up by it.
    assert dial(client, "+14155550000", environ_base={"REMOTE_ADDR": "192.0.2.9"}) == unreadable
    assert dial(client, "+254711000003").startswith("CON ")


def test_a_body_over_the_cap_gets_a_clean_answer(client, config):
    config(WEBHOOK_MAX_BODY_BYTES=2_000)
    response = hop(client, text="1*" * 5_000)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "END Sorry, this request could not be read. Please dial again."
    big = client.post("/sms/inbound", data={"from": PHONE, "text": "x" * 5_000})
    assert (big.status_code, big.get_data(as_text=True)) == (413, "body too large")


def test_production_refuses_development_secrets():
    check_secrets({"TUMA_ENV": "development", "SECRET_KEY": "dev-only-not-secret"})  # fine in dev
    with pytest.raises(InsecureConfig) as refused:
        check_secrets(
            {"TUMA_ENV": "production", "SECRET_KEY": "x" * 32, "PIN_PEPPER": "dev-pepper", "AT_API_KEY": ""}
        )
    assert "AT_API_KEY, PIN_PEPPER" in str(refused.value)
    check_secrets(
        {"TUMA_ENV": "production", "SECRET_KEY": "a" * 32, "PIN_PEPPER": "b" * 32, "AT_API_KEY": "c"}
    )


def test_create_app_will_not_start_production_on_the_defaults(tmp_path):
    with pytest.raises(InsecureConfig):
        create_app(
            {
                "TUMA_ENV": "production",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.sqlite3",
                "REDIS_URL": conftest.test_redis_url(),
                "SECRET_KEY": "dev-only-not-secret",
            }
        )


# -- production (issue 15 item 1) ---------------------------------------------------------

PRODUCTION = {
    "TUMA_ENV": "production",
    "SECRET_KEY": "a" * 32,
    "PIN_PEPPER": "b" * 32,
    "AT_API_KEY": "c" * 32,
}


def production_app(**settings):
    """A production app on the tests' database and Redis (create_app refuses before either)."""
    return conftest.make_app(conftest.default_db_url(), **PRODUCTION, **settings)


def refusal(**settings) -> str:
    with pytest.raises(InsecureConfig) as refused:
        production_app(**settings)
    return str(refused.value)


def test_production_will_not_start_with_open_webhooks(app):
    said = refusal()
    assert "TUMA_WEBHOOK_SECRET" in said and "TUMA_WEBHOOK_ALLOWED_IPS" in said
    # Either one opens the door to Africa's Talking only.
    client = production_app(WEBHOOK_SECRET="a-long-webhook-secret").test_client()
    assert hop(client).status_code == 403
    assert hop(client, query="?key=a-long-webhook-secret").get_data(as_text=True).startswith("CON ")
    client = production_app(WEBHOOK_ALLOWED_IPS="192.0.2.0/24").test_client()
    assert hop(client).status_code == 403  # from 127.0.0.1
    answer = hop(client, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert answer.get_data(as_text=True).startswith("CON ")


def test_production_will_not_start_with_the_phone_simulator(app):
    assert "TUMA_SIMULATOR_ENABLED" in refusal(WEBHOOK_SECRET="a-long-webhook-secret", SIMULATOR_ENABLED=True)
    config = {**PRODUCTION, "WEBHOOK_SECRET": "a-long-webhook-secret", "SIMULATOR_ENABLED": True}
    check_config({**config, "TUMA_ENV": "development"})  # `make run` turns it on


AT = "198.51.100.7"  # Africa's Talking, as our allow-list knows it
PROXY, OTHER_PROXY, STRANGER = "10.0.0.5", "10.0.1.3", "203.0.113.9"


def test_x_forwarded_for_is_believed_only_from_our_own_proxies(app):
    client = production_app(
        WEBHOOK_ALLOWED_IPS="198.51.100.0/24", WEBHOOK_TRUSTED_PROXIES=f"{PROXY}, 10.0.1.0/24"
    ).test_client()

    def through(peer, forwarded=None):
        headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
        return hop(client, environ_base={"REMOTE_ADDR": peer}, headers=headers).status_code

    assert through(STRANGER, AT) == 403  # a direct caller claims to be Africa's Talking
    assert through(PROXY, AT) == 200  # our proxy says Africa's Talking called
    assert through(PROXY, f"{AT}, {STRANGER}") == 403  # the stranger's claim, then what our proxy saw
    assert through(PROXY, f"{AT}, {OTHER_PROXY}") == 200  # two proxies of ours in a row
    assert through(PROXY, "not-an-address") == 403
    assert through(AT) == 200  # Africa's Talking straight to us
    assert through(PROXY) == 403  # the proxy itself is not Africa's Talking


def test_trusted_proxies_as_a_count_is_refused_in_production_and_bad_entries_anywhere(app):
    said = refusal(WEBHOOK_SECRET="a-long-webhook-secret", WEBHOOK_TRUSTED_PROXIES="1")
    assert "TUMA_WEBHOOK_TRUSTED_PROXIES is a count" in said
    for setting in ("WEBHOOK_TRUSTED_PROXIES", "WEBHOOK_ALLOWED_IPS"):
        with pytest.raises(InsecureConfig) as refused:
            check_config({"TUMA_ENV": "development", setting: "10.0.0.5, proxy.internal"})
        assert f"TUMA_{setting} has an entry that is not an address or network" in str(refused.value)


@pytest.mark.parametrize("setting", ["WEBHOOK_TRUSTED_PROXIES", "WEBHOOK_ALLOWED_IPS"])
@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0", "1.0.0.0/7", "2001::/16", "::ffff:0:0/96"])
def test_production_will_not_start_with_a_network_that_is_most_of_the_internet(app, setting, network):
    """0.0.0.0/0 as our proxies believes X-Forwarded-For from anyone; as the allow-list it
    passed the open-webhooks check while allowing everyone (attack on issue 15 item 1)."""
    settings = {"WEBHOOK_ALLOWED_IPS": "198.51.100.0/24", setting: f"10.0.0.5, {network}"}
    said = refusal(**settings)
    wide = ipaddress.ip_network(network, strict=False)
    assert f"TUMA_{setting} has {wide}, wider than /8 (IPv4) or /32 (IPv6)" in said
    check_config({**PRODUCTION, **settings, "TUMA_ENV": "development"})  # a lab may open it


def test_production_starts_with_networks_of_a_sane_size(app):
    client = production_app(
        WEBHOOK_ALLOWED_IPS="198.51.100.0/24, 2001:db8::/32", WEBHOOK_TRUSTED_PROXIES="10.0.0.0/8, fd00::/48"
    ).test_client()
    forged = {"X-Forwarded-For": "198.51.100.7"}
    assert hop(client, environ_base={"REMOTE_ADDR": STRANGER}, headers=forged).status_code == 403
    assert hop(client, environ_base={"REMOTE_ADDR": PROXY}, headers=forged).status_code == 200


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
def test_a_refused_first_hop_starts_no_session(client, redis, config, customer, case):
    arm, extra, (status, body), _ = CASES[case]
    phone = Phone(client, "0712000111")
    arm(config, redis, phone.number)
    answer = post(client, "/ussd", ussd_fields(phone, ""), extra)
    assert (answer.status_code, answer.get_data(as_text=True)) == (status, body)
    assert sessions.load(phone.session_id) is None
    assert redis.keys("tuma:ussd:*") == []


@pytest.mark.parametrize("case", IDS)
def test_a_refused_pin_hop_sends_nothing_and_leaves_the_session_where_it_was(
    client, redis, config, customer, second_customer, case
):
    arm, extra, (status, body), _ = CASES[case]
    fund(customer.account_id, 5_000_00)
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
    assert db.session.get(User, customer.id).pin_failures in (0, None)
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
