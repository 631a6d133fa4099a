"""Webhook protection (shared secret, IP allow-list, per-phone rate limit, body cap) and the
refusal to run production on development secrets. Every refusal is a clean answer, never a 500."""

import base64

import pytest

from tests import conftest
from ussd_app import create_app
from ussd_app.security import InsecureConfig, check_secrets

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
