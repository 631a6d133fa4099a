"""The local Africa's Talking gateway as a developer and a phone simulator use it: its own
process on a port, the real SDK sending to it, its inbox and its faults over HTTP; and the
whole path with a real worker process."""

import os
import socket
import subprocess
import sys

import pytest
import requests
from africastalking.Service import AfricasTalkingException

from tests import sms_helpers
from tests.helpers import wait_for
from tests.sms_helpers import agent_with_float, person, send
from ussd_app.africas_talking import make_service

gateway = sms_helpers.gateway  # the fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    answer = requests.get(url, timeout=5)
    answer.raise_for_status()
    return answer.json()


def post_json(url, payload):
    answer = requests.post(url, json=payload, timeout=5)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture(scope="module")
def gateway_process():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.gateway", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return get_json(f"{url}/messages") is not None
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout=20, message="the gateway process to listen")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_the_sdk_sends_to_the_gateway_process_and_the_inbox_shows_it(gateway_process):
    sms = make_service("sandbox", "dev-key", gateway_process)
    answer = sms.send("Habari", ["+254712000901", "+254712000902"], sender_id="TUMA")
    recipients = answer["SMSMessageData"]["Recipients"]
    assert [(r["number"], r["statusCode"], r["status"]) for r in recipients] == [
        ("+254712000901", 101, "Success"),
        ("+254712000902", 101, "Success"),
    ]
    # "+" unencoded in a query string arrives as a space: both spellings find the inbox.
    for query in ("%2B254712000901", "+254712000901"):
        [message] = get_json(f"{gateway_process}/messages?phone={query}")["messages"]
        assert (message["message"], message["sender"], message["id"]) == (
            "Habari",
            "TUMA",
            recipients[0]["messageId"],
        )


def test_faults_are_set_over_http(gateway_process):
    sms = make_service("sandbox", "dev-key", gateway_process)
    post_json(f"{gateway_process}/_gateway/faults", {"fail_next": 1, "http_status": 503})
    with pytest.raises(AfricasTalkingException):
        sms.send("one", ["+254712000903"])
    post_json(f"{gateway_process}/_gateway/faults", {"refuse": "+254712000903", "status_code": 406})
    [recipient] = sms.send("two", ["+254712000903"])["SMSMessageData"]["Recipients"]
    assert (recipient["statusCode"], recipient["status"], recipient["messageId"]) == (
        406,
        "UserInBlacklist",
        "None",
    )
    assert get_json(f"{gateway_process}/messages?phone=%2B254712000903")["messages"] == []
    with pytest.raises(requests.HTTPError) as bad:
        post_json(f"{gateway_process}/_gateway/faults", {"fail_next": "many"})
    assert bad.value.response.status_code == 400


def test_an_outage_of_one_number_fails_its_calls_only_until_it_recovers(gateway_process):
    sms = make_service("sandbox", "dev-key", gateway_process)
    faults = f"{gateway_process}/_gateway/faults"
    post_json(faults, {"outage": 500, "phone": "+254712000905"})
    for _ in range(2):
        with pytest.raises(AfricasTalkingException):
            sms.send("poison", ["+254712000905"])
        [fine] = sms.send("fine", ["+254712000906"])["SMSMessageData"]["Recipients"]
        assert fine["statusCode"] == 101
    post_json(faults, {"recover": True, "phone": "+254712000906"})  # another number's: no change
    with pytest.raises(AfricasTalkingException):
        sms.send("poison", ["+254712000905"])
    post_json(faults, {"recover": True, "phone": "+254712000905"})
    [back] = sms.send("back", ["+254712000905"])["SMSMessageData"]["Recipients"]
    assert back["statusCode"] == 101
    inbox = get_json(f"{gateway_process}/messages?phone=%2B254712000905")["messages"]
    assert [m["message"] for m in inbox] == ["back"]


def test_requests_without_credentials_or_fields_are_refused_like_africas_talking(gateway_process):
    url = f"{gateway_process}/version1/messaging"
    no_key = requests.post(url, data={"username": "u", "to": "+254712000904", "message": "m"}, timeout=5)
    assert no_key.status_code == 401
    no_to = requests.post(url, data={"username": "u", "message": "m"}, headers={"apiKey": "k"}, timeout=5)
    assert no_to.status_code == 400


def test_a_real_worker_process_executes_a_send_and_delivers_both_receipts(app, gateway):
    agent = agent_with_float()
    amina = person("+254712000911", "Amina Hassan")
    baraka = person("+254712000912", "Baraka Otieno", language="sw")
    send(agent, amina, 1_000_00)
    send(amina, baraka, 100_00)
    env = dict(
        os.environ,
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        AT_API_URL=app.config["AT_API_URL"],
        AT_API_KEY="test-key",
        PIN_PEPPER=app.config["PIN_PEPPER"],
    )
    from ussd_app.payments.submit import announce

    announce(force=True)
    out = subprocess.run(
        [sys.executable, "-m", "worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    wait_for(lambda: len(gateway.inbox()) >= 5, timeout=5, message="float + 2 x 2 receipts")
    assert (
        "Confirmed. You have received KES 1,000.00 from ALI AGENT"
        in gateway.inbox("+254712000911")[0].message
    )
    assert any(
        "Umepokea KES 100.00 kutoka kwa AMINA HASSAN" in m.message for m in gateway.inbox("+254712000912")
    )
