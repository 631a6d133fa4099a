"""Logs are JSON lines with a trace id that follows a transfer from the webhook to the worker
to its SMS, and never carry a PIN or the raw USSD ``text``."""

import io
import json
import logging
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.helpers import fund
from tests.sms_helpers import agent_with_float, person, send
from tests.ussd_helpers import Phone
from ussd_app.extensions import db
from ussd_app.logging_setup import JsonFormatter, bound, lean_records, new_trace_id
from ussd_app.ops.tracing import WRITTEN
from ussd_app.payments.models import TransferRequest
from ussd_app.sms.outbox import OutboxMessage, add_sms
from worker.jobs import execute_transfers, send_sms

PIN = "8642"
ID_FIELDS = {"trace_id", "transfer_id", "ts"}


@pytest.fixture
def log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_a_transfer_is_traced_by_its_trace_id_and_no_pin_is_logged(
    client, app, log_lines, customer, second_customer
):
    fund(customer.account_id, 500_000)
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "1000", "1")
    response = client.post(
        "/ussd",
        data={
            "sessionId": phone.session_id,
            "serviceCode": "*384*7#",
            "phoneNumber": "0712000111",
            "networkCode": "63902",
            "text": f"1*0712000222*1000*1*{PIN}",
        },
        headers={"X-Request-Id": "req-from-the-proxy-0001"},
    )
    assert response.headers["X-Request-Id"] == "req-from-the-proxy-0001"
    [request] = db.session.execute(select(TransferRequest)).scalars()
    execute_transfers(request.id)  # as the rq job announced by the webhook is called
    send_sms()

    lines = log_lines()
    hops = [line for line in lines if line["logger"] == "ussd_app.ussd.views"]
    assert len(hops) == 6 and all(line["trace_id"] for line in hops)
    for line in lines:
        for key, value in line.items():
            if key not in ID_FIELDS:
                assert PIN not in str(value), line
                assert "0712000222*1000" not in str(value), line

    traced = [line for line in lines if line["trace_id"] == "req-from-the-proxy-0001"]
    messages = [line["message"] for line in traced]
    assert any(m.startswith("ussd hop") for m in messages)  # the webhook
    assert "transfer request recorded" in messages
    assert any(m.startswith("executed 1 transfer requests") for m in messages)  # the worker
    # One line for the transfer's receipts (one a party), not one a receipt.
    [written] = [line for line in traced if line["message"] == WRITTEN]
    assert written["receipts"] == 2
    assert messages.count("sms claimed for sending") == 2  # the sender
    for line in traced:
        if line["message"].startswith(("transfer request", "sms")):
            assert line["transfer_id"] == request.id


def _receipts_by_transfer() -> dict[str, int]:
    rows = db.session.execute(select(OutboxMessage.transfer_request_id)).scalars()
    counts: dict[str, int] = {}
    for transfer_id in rows:
        if transfer_id:
            counts[transfer_id] = counts.get(transfer_id, 0) + 1
    return counts


@pytest.mark.usefixtures("app")
def test_a_batch_logs_one_line_a_transfer_for_its_receipts(log_lines):
    """A batch of sends writes two receipts a transfer in one insert; its commit logs one line a
    transfer naming it and counting them, so grepping a transfer id still finds its receipts."""
    agent = agent_with_float()
    amina = person("+254712000701", "Amina Hassan")
    baraka = person("+254712000702", "Baraka Otieno")
    ids = [send(agent, amina, 5_000_00), send(agent, baraka, 3_000_00), send(amina, baraka, 1_000_00)]
    before = len(log_lines())  # the float's issue has a receipt of its own
    assert execute_transfers() == 3  # one batch, one commit

    written = [line for line in log_lines()[before:] if line["message"] == WRITTEN]
    assert sorted(line["transfer_id"] for line in written) == sorted(ids)
    counts = _receipts_by_transfer()
    assert {line["transfer_id"]: line["receipts"] for line in written} == {t: counts[t] for t in ids}
    assert all(line["receipts"] == 2 for line in written)  # one a party


@pytest.mark.usefixtures("app")
def test_receipts_added_one_by_one_are_counted_in_one_line_a_transfer_per_commit(log_lines):
    """Rows added through the ORM (outside a batch's one insert) are counted the same way: one
    line a transfer a commit; a rolled-back transaction logs nothing."""
    agent = agent_with_float()
    amina = person("+254712000703", "Amina Hassan")
    first, second = send(agent, amina, 5_000_00), send(agent, amina, 4_000_00)
    before = len(log_lines())
    for transfer_id in (first, second, first):
        add_sms(db.session, phone=amina.phone, body="receipt", transfer_request_id=transfer_id)
    db.session.commit()
    add_sms(db.session, phone=amina.phone, body="receipt", transfer_request_id=second)
    db.session.flush()
    db.session.rollback()
    add_sms(db.session, phone=amina.phone, body="receipt", transfer_request_id=second)
    db.session.commit()

    lines = log_lines()[before:]
    written = [(line["transfer_id"], line["receipts"]) for line in lines if line["message"] == WRITTEN]
    assert written == [(first, 2), (second, 1), (second, 1)]


def test_every_hop_gets_its_own_trace_id(client, app, log_lines):
    first = client.post("/ussd", data={"sessionId": "s-log-1", "phoneNumber": "0712600333", "text": ""})
    second = client.post("/ussd", data={"sessionId": "s-log-1", "phoneNumber": "0712600333", "text": "1"})
    ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    assert len(ids) == 2
    hops = [line for line in log_lines() if line["message"].startswith("ussd hop")]
    assert {line["trace_id"] for line in hops} == ids


def test_a_trace_id_offered_by_a_client_is_used_only_when_well_formed():
    assert new_trace_id("abc12345-proxy") == "abc12345-proxy"
    for bad in ("short", "has spaces in it", "x" * 65, "<script>alert(1)</script>", None):
        assert new_trace_id(bad) != bad and len(new_trace_id(bad)) == 32


def test_exceptions_are_logged_without_their_message(log_lines):
    pin = "8642"
    try:
        raise ValueError(f"PIN was {pin}")
    except ValueError:
        logging.getLogger("tuma.test").exception("it failed")
    [line] = [x for x in log_lines() if x["logger"] == "tuma.test"]
    assert line["exception"] == "ValueError" and "8642" not in json.dumps(line)


def test_a_json_line_reads_the_same_when_records_leave_out_what_it_never_shows(monkeypatch):
    """In production (``configure``) a record no longer gathers the caller's file and line
    (a walk up the stack per line, one line per USSD hop) or the thread's names: no JSON line
    carried them, so an operator reads every line as before."""
    for switch in ("_srcfile", "logThreads", "logMultiprocessing"):
        monkeypatch.setattr(logging, switch, getattr(logging, switch))  # put back after the test
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tuma.test.lean")
    log.addHandler(handler)
    monkeypatch.setattr(log, "propagate", False)
    monkeypatch.setattr(log, "level", logging.INFO)

    def line() -> dict:
        with bound(trace_id="trace-0001"):
            log.info("ussd hop session=%s text=%s", "s-1", "#*#(4)", extra={"kind": "p2p"})
        doc = json.loads(stream.getvalue().splitlines()[-1])
        doc.pop("ts")
        return doc

    try:
        before = line()
        lean_records()
        after = line()
    finally:
        log.removeHandler(handler)
    assert before == {
        "level": "info",
        "logger": "tuma.test.lean",
        "message": "ussd hop session=s-1 text=#*#(4)",
        "trace_id": "trace-0001",
        "kind": "p2p",
    }
    assert after == before


def test_the_timestamp_kept_for_its_second_reads_as_datetime_writes_it():
    """The formatter keeps the text of the current second and adds the milliseconds: each
    reads as ``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, at the
    edges of a millisecond and of a second too (datetime rounds the microseconds half to even,
    so 59.9999996 is the next second's .000), out of order as much as in order."""
    formatter = JsonFormatter()
    base = 1_796_241_255
    edges = (0, 4e-7, 5e-7, 6e-7, 4.995e-4, 0.9995, 0.9999994, 0.9999995, 0.9999996, 0.99999999)
    moments = [base + s + f for s in range(3) for f in edges]
    rng = random.Random(19)
    moments += [rng.uniform(1.6e9, 1.9e9) for _ in range(2_000)]
    for created in moments + sorted(moments):
        assert formatter._timestamp(created) == datetime.fromtimestamp(created, UTC).isoformat(
            timespec="milliseconds"
        ), created


def test_a_json_line_is_written_as_json_dumps_writes_it():
    """Same keys in the same order, the same separators, non-ASCII text as it is."""
    record = logging.makeLogRecord(
        {"name": "tuma.trace", "levelno": 20, "levelname": "INFO", "msg": "sms to Ñandú 💸", "receipts": 2}
    )
    record.created = 1_796_241_255.25
    with bound(trace_id="trace-0001", transfer_id="transfer-0001"):
        line = JsonFormatter().format(record)
    expected = {
        "ts": "2026-12-02T19:54:15.250+00:00",
        "level": "info",
        "logger": "tuma.trace",
        "message": "sms to Ñandú 💸",
        "trace_id": "trace-0001",
        "transfer_id": "transfer-0001",
        "receipts": 2,
    }
    assert line == json.dumps(expected, ensure_ascii=False)


@pytest.mark.usefixtures("app")
def test_a_batch_run_under_one_transfers_trace_id_logs_each_transfer_under_its_own(log_lines):
    """A worker's job runs bound to the trace id of the transfer that woke it; the batch it
    executes holds others, recorded by other requests. Each one's receipts and claims are logged
    under the trace id of the request that recorded it, so grepping a trace id finds that
    transfer's lines and no other's (a transfer with none remembered takes the job's)."""
    from ussd_app.ops.tracing import remember

    agent = agent_with_float()
    amina = person("+254712000704", "Amina Hassan")
    baraka = person("+254712000705", "Baraka Otieno")
    woke, other, untraced = (
        send(agent, amina, 5_000_00),
        send(agent, baraka, 3_000_00),
        send(amina, baraka, 1_00),
    )
    remember(woke, "trace-of-the-first-request")
    remember(other, "trace-of-the-second-request")
    before = len(log_lines())
    with bound(trace_id="trace-of-the-first-request"):  # as observe_job binds the job
        assert execute_transfers(woke) == 3
    with bound(trace_id="job-the-sender"):
        send_sms()

    lines = [line for line in log_lines()[before:] if line["message"] in (WRITTEN, "sms claimed for sending")]
    by_transfer = {}
    for line in lines:
        if line["transfer_id"] in (woke, other, untraced):  # not the float's issue, sent too
            by_transfer.setdefault(line["transfer_id"], set()).add(line["trace_id"])
    assert by_transfer == {
        woke: {"trace-of-the-first-request"},
        other: {"trace-of-the-second-request"},
        untraced: {"trace-of-the-first-request", "job-the-sender"},
    }
