"""The phone simulator: off unless enabled; its page drives the real /ussd with Africa's
Talking's form fields, and its inbox reads the local SMS gateway through this origin."""

import html
import json
import re

import pytest
from sqlalchemy import select

from tests.helpers import fund
from tests.ops_helpers import closed_port
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from worker.jobs import execute_transfers, send_sms


@pytest.fixture
def simulator(app):
    app.config["SIMULATOR_ENABLED"] = True
    yield app.test_client()
    app.config["SIMULATOR_ENABLED"] = False


def test_off_unless_enabled(client):
    assert client.get("/simulator/").status_code == 404
    assert client.get("/simulator/messages?phone=0700000003").status_code == 404
    assert client.get("/simulator/static/simulator.js").status_code == 404


def test_page_shows_several_phones_and_its_script_speaks_africas_talking(simulator):
    page = simulator.get("/simulator/").get_data(as_text=True)
    for number in ("+254700000001", "+254700000002", "+254700000003", "+254700000004"):
        assert f'data-phone="{number}"' in page
    assert 'data-ussd-url="/ussd"' in page and 'data-service-code="*384*7#"' in page
    assert 'data-messages-url="/simulator/messages"' in page
    [script_url] = re.findall(r'<script src="([^"]+)"', page)
    with simulator.get(script_url) as response:
        script = response.get_data(as_text=True)
    for field in ("sessionId", "serviceCode", "phoneNumber", "networkCode", "text"):
        assert f"{field}:" in script
    assert 'this.inputs.join("*")' in script  # every input so far, as Africa's Talking sends
    assert "cdn" not in script.lower() and "http" not in script  # nothing from outside


def inbox(simulator, phone: str) -> list[dict]:
    return simulator.get("/simulator/messages", query_string={"phone": phone}).json["messages"]


def test_a_conversation_as_the_script_posts_it_and_the_inbox(simulator, customer, second_customer):
    fund(customer.account_id, 500_000)
    # The run's gateway keeps what earlier tests sent the cast: only what comes after counts.
    seen = {phone: len(inbox(simulator, phone)) for phone in ("+254712000111", "+254712000222")}
    inputs = []
    for key in ("", "1", "0712000222", "1000", "1", "8642"):
        if key:
            inputs.append(key)
        reply = simulator.post(
            "/ussd",
            data={
                "sessionId": "SIMabc123",
                "serviceCode": "*384*7#",
                "phoneNumber": "+254712000111",
                "networkCode": "63902",
                "text": "*".join(inputs),
            },
        ).get_data(as_text=True)
    assert reply.startswith("END ") and "SMS" in reply
    assert inbox(simulator, "+254712000222")[seen["+254712000222"] :] == []

    [request] = db.session.execute(select(TransferRequest)).scalars()
    execute_transfers(request.id)
    send_sms()
    received = inbox(simulator, "0712000222")[seen["+254712000222"] :]
    assert len(received) == 1
    assert "Confirmed" in received[0]["text"] and "JUMA OTIENO" in received[0]["text"]
    assert set(received[0]) == {"id", "from", "text", "at"}
    sent = inbox(simulator, "+254712000111")[seen["+254712000111"] :]
    assert len(sent) == 1 and "WANJIRU KAMAU" in sent[0]["text"]


def test_inbox_errors_are_answers_not_500s(simulator, app):
    assert simulator.get("/simulator/messages?phone=not-a-phone").status_code == 400
    assert simulator.get("/simulator/messages").status_code == 400
    url = app.config["AT_API_URL"]
    app.config["AT_API_URL"] = f"http://127.0.0.1:{closed_port()}"
    try:
        response = simulator.get("/simulator/messages?phone=0712000222")
        assert response.status_code == 502 and response.json["messages"] == []
    finally:
        app.config["AT_API_URL"] = url


def test_the_events_pane_lists_what_the_demo_merchants_system_received(simulator, app, runner, monkeypatch):
    """The demo seed points the demo merchant's webhooks at the local receiver; a till payment
    shows in the pane, its signature checked with the demo secret."""
    from devtools.demo import DEMO_WEBHOOK_SECRET
    from devtools.receiver import Receiver, serve_in_thread
    from tests.escrow_helpers import funded_customer
    from ussd_app.payments.submit import mint_request_id, record_request
    from ussd_app.users import find_by_phone
    from worker.jobs import deliver_events

    running = serve_in_thread(Receiver(secret=DEMO_WEBHOOK_SECRET))
    try:
        monkeypatch.setenv("TUMA_DEMO_RECEIVER_URL", running.url)
        assert simulator.get("/simulator/events").get_json() == {"events": []}
        assert runner.invoke(args=["demo", "seed"]).exit_code == 0
        payer = funded_customer()
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind="buy_goods",
            debit_account_id=payer,
            credit_account_id=find_by_phone(db.session, "+254700000002").account_id,
            amount=75_00,
        )
        db.session.commit()
        execute_transfers()
        deliver_events()
        [event] = simulator.get("/simulator/events").get_json()["events"]
        assert event["type"] == "payment.received" and event["verified"] is True
        assert event["data"]["amount"] == 75_00 and event["data"]["payer"]["name"] == "Juma Otieno"
        # As Tuma shows amounts (TZS whole, thousands grouped), not the page's own "75.00".
        assert event["amount_text"] == "KES 75.00"
        assert 'id="merchant-events"' in simulator.get("/simulator/").get_data(as_text=True)
    finally:
        running.stop()
    monkeypatch.setenv("TUMA_DEMO_RECEIVER_URL", closed_port_url())
    assert simulator.get("/simulator/events").status_code == 502


def closed_port_url() -> str:
    return f"http://127.0.0.1:{closed_port()}"


def test_a_phone_can_switch_to_another_gateways_protocol(simulator, customer):
    """Each phone offers the other gateways; the page says where each posts and the script
    writes and reads each one's own fields. A dial over Hubtel's JSON, as the script posts it,
    shows the same home menu."""
    page = simulator.get("/simulator/").get_data(as_text=True)
    for value in ("at", "hubtel", "arkesel", "nalo", "beem", "mtn"):
        assert f'<option value="{value}">' in page
    [urls] = re.findall(r'data-gateway-urls="([^"]+)"', page)
    urls = json.loads(html.unescape(urls))
    assert urls == {name: f"/ussd/{name}" for name in ("hubtel", "arkesel", "nalo", "beem", "mtn")}
    [script_url] = re.findall(r'<script src="([^"]+)"', page)
    with simulator.get(script_url) as response:
        script = response.get_data(as_text=True)
    for field in ("SessionId:", "Sequence:", "newSession:", "MSGTYPE:", "session_id:", "messageType:"):
        assert field in script
    hubtel = {
        "Type": "Initiation",
        "Mobile": "254712000111",
        "SessionId": "SIMhub1",
        "ServiceCode": "*384*7#",
        "Message": "*384*7#",
        "Operator": "simulator",
        "Sequence": 1,
        "ClientState": "",
    }
    answer = simulator.post(urls["hubtel"], json=hubtel).get_json()
    assert answer["Type"] == "Response" and answer["Message"].startswith("Tuma\n1. Send money")
