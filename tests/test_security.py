"""Webhook protection (shared secret, IP allow-list, per-phone rate limit, body cap) and the
refusal to run production on development secrets. Every refusal is a clean answer, never a 500."""

import base64
import ipaddress

import pytest

from tests import conftest
from ussd_app import create_app
from ussd_app.security import InsecureConfig, check_config, check_secrets

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


def test_other_surfaces_are_not_affected(client, config):
    config(WEBHOOK_SECRET="s3cret-value", WEBHOOK_ALLOWED_IPS="10.0.0.1")
    assert client.get("/no-such-page").status_code == 404


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
