"""Africa's Talking's callbacks, posted as real form bodies: delivery reports and inbound SMS,
well-formed and malformed (a clear 4xx or a logged no-op, never a 500)."""

import logging

import pytest
from sqlalchemy import select

from tests import sms_helpers
from tests.sms_helpers import Person, agent_with_float, execute, outbox, send
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.queues import SMS_QUEUE, get_queue
from ussd_app.sms_commands.inbound import InboundMessage
from worker import jobs

gateway = sms_helpers.gateway  # the fixture


def deliver():
    counts = jobs.send_sms()
    db.session.remove()
    return counts


def code_of(request_id):
    return db.session.execute(
        select(TransferRequest.code).where(TransferRequest.id == request_id)
    ).scalar_one()


@pytest.fixture
def sent(gateway, customer):
    """One receipt, to the cast's customer, handed to the gateway: (its outbox row id, Africa's
    Talking's message id)."""
    agent = agent_with_float()
    send(agent, Person(customer.phone, customer.account_id), 100_00)
    execute()
    deliver()
    row = outbox(phone="+254712000111")[0]
    return row.id, row.gateway_message_id


def report(client, **fields):
    return client.post("/sms/delivery", data=fields)


# -- delivery reports ---------------------------------------------------------------------


def test_success_report_marks_the_message_delivered(client, sent):
    row_id, message_id = sent
    answer = report(
        client,
        id=message_id,
        status="Success",
        phoneNumber="+254712000111",
        networkCode="63902",
        retryCount="0",
    )
    assert answer.status_code == 200
    [row] = [r for r in outbox() if r.id == row_id]
    assert (row.status, row.delivery_status, row.network_code, row.delivery_retry_count) == (
        "delivered",
        "Success",
        "63902",
        0,
    )
    assert row.delivery_reported_at is not None


def test_a_gateway_id_given_to_two_messages_marks_the_one_to_the_reported_number(client, sent):
    """A gateway that handed one message id out twice (ids are its own; nothing makes them
    unique here): a report for it was a 500. It marks the message to the number it names."""
    from ussd_app.sms.outbox import OutboxMessage

    row_id, message_id = sent
    first = db.session.get(OutboxMessage, row_id)
    was = first.status
    twin = OutboxMessage(phone="+254712000999", body="another", status=was, gateway_message_id=message_id)
    db.session.add(twin)
    db.session.commit()
    twin_id = twin.id
    answer = report(client, id=message_id, status="Success", phoneNumber="+254712000111")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    rows = {r.id: r.status for r in outbox() if r.id in (row_id, twin_id)}
    assert rows == {row_id: "delivered", twin_id: was}


def test_failed_report_marks_the_message_failed_with_the_reason(client, sent):
    row_id, message_id = sent
    answer = report(
        client,
        id=message_id,
        status="Failed",
        phoneNumber="+254712000111",
        failureReason="UserInBlacklist",
        retryCount="3",
    )
    assert answer.status_code == 200
    [row] = [r for r in outbox() if r.id == row_id]
    assert (row.status, row.failure_reason, row.delivery_retry_count) == (
        "failed",
        "delivery Failed: UserInBlacklist",
        3,
    )


def test_reports_out_of_order_do_not_undo_a_final_status(client, sent):
    row_id, message_id = sent
    to = "+254712000111"
    assert report(client, id=message_id, status="Buffered", phoneNumber=to).status_code == 200
    assert [r.status for r in outbox() if r.id == row_id] == ["sent"]
    assert report(client, id=message_id, status="Success", phoneNumber=to).status_code == 200
    assert report(client, id=message_id, status="Buffered", phoneNumber=to).status_code == 200
    [row] = [r for r in outbox() if r.id == row_id]
    assert (row.status, row.delivery_status) == ("delivered", "Success")


def test_a_report_naming_another_number_is_ignored_and_logged(client, config, sent, caplog, monkeypatch):
    """Issue 15 item 13: a report for the right message id but another phone changes nothing."""
    row_id, message_id = sent
    monkeypatch.setattr(logging.getLogger("ussd_app.sms.webhooks"), "disabled", False)
    config(SMS_WEBHOOK_TOKEN="tok-s3cret-value", WEBHOOK_SECRET="key-s3cret-value")
    with caplog.at_level(logging.WARNING, logger="ussd_app.sms.webhooks"):
        for other in ("+254712000999", "0712 000 999", "not a number", "+14155552671"):
            answer = client.post(
                "/sms/delivery?token=tok-s3cret-value&key=key-s3cret-value",
                data={"id": message_id, "status": "Failed", "phoneNumber": other, "failureReason": "x"},
            )
            assert answer.status_code == 200
            assert answer.get_data(as_text=True) == "phone number does not match, ignored"
    [row] = [r for r in outbox() if r.id == row_id]
    assert (row.status, row.delivery_status, row.failure_reason) == ("sent", None, None)
    assert f"delivery report for '{message_id}' ignored" in caplog.text
    assert "tok-s3cret-value" not in caplog.text and "key-s3cret-value" not in caplog.text
    assert "+254712000999" not in caplog.text and "+254712000111" not in caplog.text  # masked
    # The message's own number, in any spelling, is the same number.
    answer = client.post(
        "/sms/delivery?token=tok-s3cret-value&key=key-s3cret-value",
        data={"id": message_id, "status": "Success", "phoneNumber": "0712-000-111"},
    )
    assert answer.get_data(as_text=True) == "OK"
    [row] = [r for r in outbox() if r.id == row_id]
    assert (row.status, row.delivery_status) == ("delivered", "Success")


def test_unknown_ids_are_acknowledged_and_logged(client, app, caplog, monkeypatch):
    # Alembic's fileConfig (run by the fixtures' migrations) disables loggers that already
    # exist; a deployed web process never runs it.
    monkeypatch.setattr(logging.getLogger("ussd_app.sms.webhooks"), "disabled", False)
    with caplog.at_level(logging.WARNING, logger="ussd_app.sms.webhooks"):
        answer = report(client, id="ATXid_nobody", status="Success", phoneNumber="+254700000999")
    assert answer.status_code == 200
    assert "unknown message id 'ATXid_nobody'" in caplog.text


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "missing field: id"),
        ({"status": "Success"}, "missing field: id"),
        ({"id": "ATXid_1"}, "missing field: status"),
        ({"id": "ATXid_1", "status": "Delivered!"}, "unknown status"),
        ({"id": "ATXid_1", "status": "Success", "retryCount": "two"}, "retryCount must be a whole number"),
        ({"id": "ATXid_1", "status": "Success", "retryCount": "-1"}, "retryCount must be a whole number"),
        ({"id": "x" * 65, "status": "Success"}, "field too long: id"),
        ({"id": "  ", "status": "Success"}, "missing field: id"),
        ({"id": "ATXid_1", "status": "Success"}, "missing field: phoneNumber"),
    ],
)
def test_malformed_delivery_reports_get_a_clear_400(client, app, fields, says):
    answer = report(client, **fields)
    assert answer.status_code == 400
    assert says in answer.get_data(as_text=True)


def test_a_json_or_oversized_body_is_a_4xx_not_a_500(client, app):
    assert client.post("/sms/delivery", json={"id": "a", "status": "Success"}).status_code == 400
    assert (
        client.post("/sms/inbound", data=b"\xff\xfe\x00garbage", content_type="text/plain").status_code == 400
    )
    huge = client.post("/sms/delivery", data={"id": "a", "status": "Success", "pad": "x" * 20_000})
    assert huge.status_code == 413
    assert client.get("/sms/delivery").status_code == 405


def test_a_webhook_token_keeps_strangers_out(client, sent, app):
    _, message_id = sent
    app.config["SMS_WEBHOOK_TOKEN"] = "s3cret"
    try:
        assert client.post("/sms/delivery", data={"id": message_id, "status": "Success"}).status_code == 403
        assert (
            client.post("/sms/delivery?token=nope", data={"id": message_id, "status": "Success"}).status_code
            == 403
        )
        ok = client.post(
            "/sms/delivery?token=s3cret",
            data={"id": message_id, "status": "Success", "phoneNumber": "+254712000111"},
        )
        assert ok.status_code == 200
    finally:
        app.config["SMS_WEBHOOK_TOKEN"] = None


# -- inbound SMS --------------------------------------------------------------------------


@pytest.fixture
def transfer(gateway, customer, second_customer):
    """Juma (English) sent KES 250 to Wanjiru (told Kiswahili); receipts already delivered."""
    second_customer.language = "sw"
    juma = Person(customer.phone, customer.account_id)
    wanjiru = Person(second_customer.phone, second_customer.account_id)
    agent = agent_with_float()
    send(agent, juma, 1_000_00)
    execute()
    rid = send(juma, wanjiru, 250_00)
    execute()
    deliver()
    return code_of(rid), rid


_ids = iter(range(1, 1_000_000))


def text_us(client, phone, body, **extra):
    fields = {
        "from": phone,
        "to": "22384",
        "text": body,
        "date": "2026-11-21 19:40:00",
        "id": f"at-inbound-{next(_ids)}",
        "linkId": "link-1",
    }
    fields.update(extra)
    return client.post("/sms/inbound", data=fields)


def reply_to(gateway, phone):
    deliver()
    return gateway.inbox(phone)[-1].message


def test_a_party_texting_a_code_learns_it_is_genuine(client, gateway, transfer):
    code, _ = transfer
    assert text_us(client, "0712000111", f"  {code.lower()} ").status_code == 200
    reply = reply_to(gateway, "+254712000111")
    assert reply.startswith(
        f"{code} is genuine: KES 250.00 to WANJIRU KAMAU +254712000222 on "  # the other party
    )
    assert reply.endswith("Status: completed.")
    # The payee, in Kiswahili.
    assert text_us(client, "+254712000222", code).status_code == 200
    assert reply_to(gateway, "+254712000222").startswith(
        f"{code} ni halali: KES 250.00 kutoka kwa JUMA OTIENO +254712000111 tarehe "
    )


def test_a_stranger_texting_a_real_code_gets_the_unknown_code_answer(client, gateway, transfer):
    code, _ = transfer
    stranger = "+254712000599"
    text_us(client, stranger, code)
    real = reply_to(gateway, stranger)
    text_us(client, stranger, "ABCDEFGHIJ")
    made_up = reply_to(gateway, stranger)
    assert real == made_up.replace("ABCDEFGHIJ", code)
    assert "JUMA" not in real and "250" not in real
    assert real == (
        f"{code} is not a Tuma transaction of yours. "
        "Do not hand over goods or cash against a message with this code."
    )


def test_reverse_is_recorded_and_asks_for_the_reversal(client, gateway, transfer):
    code, rid = transfer
    balances = [r.body for r in outbox()]
    assert text_us(client, "+254712000111", f"reverse {code}").status_code == 200
    assert reply_to(gateway, "+254712000111") == (
        f"Received: your request to reverse {code}, KES 250.00 sent to WANJIRU KAMAU +254712000222. "
        "They are asked to agree; we will SMS you."
    )
    # The hold of Wanjiru's funds is queued for the workers (tests/test_reversals.py follows it).
    [hold] = db.session.execute(select(TransferRequest).where(TransferRequest.kind == "reversal")).scalars()
    assert (hold.reference, hold.status, hold.amount) == (code, "queued", 250_00)
    [recorded] = db.session.execute(select(InboundMessage)).scalars()
    assert (recorded.intent, recorded.code, recorded.transfer_request_id, recorded.link_id) == (
        "reverse",
        code,
        rid,
        "link-1",
    )
    # Only the payer can ask; the payee is told so (not warned of a fake receipt).
    text_us(client, "+254712000222", f"REVERSE {code}")
    assert reply_to(gateway, "+254712000222").startswith(f"Ni mtumaji pekee anayeweza kuomba {code}")
    assert len(outbox()) == len(balances) + 2  # two replies, no receipts before the worker runs


def test_anything_else_gets_help(client, gateway, app):
    assert text_us(client, "+254712000601", "hello?").status_code == 200
    assert text_us(client, "+254712000602", "").status_code == 200
    for phone in ("+254712000601", "+254712000602"):
        assert reply_to(gateway, phone).startswith(
            "Tuma: to check a receipt, send its 10-character transaction code."
        )


def test_a_retried_callback_is_answered_once(client, gateway, app):
    get_queue(SMS_QUEUE).empty()
    assert text_us(client, "+254712000701", "help", id="at-same").status_code == 200
    assert get_queue(SMS_QUEUE).count == 1  # the reply's send job was announced
    again = text_us(client, "+254712000701", "help", id="at-same")
    assert again.status_code == 200 and again.get_data(as_text=True) == "already received"
    deliver()
    assert len(gateway.inbox("+254712000701")) == 1


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"from": ""}, "missing field: from"),
        ({"from": "not-a-phone"}, "from is not a phone number"),
        ({"from": "+1"}, "from is not a phone number"),
        ({"id": ""}, "missing field: id"),
        ({"to": ""}, "missing field: to"),
        ({"text": "x" * 481}, "field too long: text"),
        ({"from": "+2547" + "1" * 40}, "field too long: from"),
    ],
)
def test_malformed_inbound_sms_gets_a_clear_400(client, app, fields, says):
    answer = text_us(client, "+254712000801", "help", **fields)
    assert answer.status_code == 400
    assert says in answer.get_data(as_text=True)
    assert outbox() == []
