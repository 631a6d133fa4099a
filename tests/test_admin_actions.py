"""Back-office actions: each changes what it says, writes its audit row, and bad input is a
page with a reason, never a 500."""

import json

import pytest
from sqlalchemy import select

from tests.admin_helpers import login, operator, post
from tests.helpers import fund
from tests.ussd_helpers import Phone, available
from ussd_app.admin import seams
from ussd_app.admin.models import AuditEntry
from ussd_app.cli import run_check
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest, TrustDeposit
from ussd_app.queues import SMS_QUEUE, get_queue
from ussd_app.sms.outbox import OutboxMessage, OutboxStatus
from worker.jobs import execute_transfers, send_sms

PIN = "8642"


@pytest.fixture
def signed_in(client):
    operator()
    login(client)
    return client


def audit_rows(action=None):
    query = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(db.session.execute(query).scalars())


def send_money(client, sender="0712000111", recipient="0712000222", amount="1000") -> TransferRequest:
    phone = Phone(client, sender)
    phone.walk("1", recipient, amount, "1", PIN)
    request = db.session.execute(select(TransferRequest)).scalars().all()[-1]
    execute_transfers(request.id)
    send_sms()
    return request


@pytest.fixture
def two_people(customer, second_customer):
    """The cast's customer with KES 5,000, and the second customer."""
    fund(customer.account_id, 500_000)
    return customer, second_customer


def test_lock_and_unlock_an_account(signed_in, two_people):
    juma, _ = two_people
    page = signed_in.get("/admin/accounts?q=Juma").get_data(as_text=True)
    assert "+254712000111" in page and "KES 5,000.00" in page and "active" in page

    response = post(signed_in, f"/admin/accounts/{juma.id}/lock", {"reason": "reported stolen phone"})
    assert response.status_code == 302
    db.session.refresh(juma)
    assert "locked by an operator" in signed_in.get("/admin/accounts?q=0712000111").get_data(as_text=True)
    assert Phone(signed_in, "0712000111").dial().startswith("END")  # the phone sees the lock

    post(signed_in, f"/admin/accounts/{juma.id}/unlock")
    db.session.refresh(juma)
    assert juma.locked_until is None
    assert Phone(signed_in, "0712000111").dial().startswith("CON")

    lock, unlock = audit_rows("account.lock"), audit_rows("account.unlock")
    assert lock[0].target == "+254712000111" and json.loads(lock[0].detail) == {
        "reason": "reported stolen phone"
    }
    assert unlock[0].details["was"] == "locked by an operator"
    assert lock[0].operator_id is not None and lock[0].trace_id


def test_lock_needs_a_reason_and_an_account(signed_in, two_people):
    juma, _ = two_people
    post(signed_in, f"/admin/accounts/{juma.id}/lock", {"reason": "  "})
    db.session.refresh(juma)
    assert juma.locked_until is None and not audit_rows("account.lock")
    assert post(signed_in, "/admin/accounts/999999/lock", {"reason": "x"}).status_code == 404


def test_float_issue_posts_to_the_ledger_and_the_ledger_check_holds(signed_in, agent, customer):
    response = post(
        signed_in,
        "/admin/float",
        {"phone": "0700000101", "amount": "25000", "reference": "BANK-77"},
        "/admin/float",
    )
    assert response.status_code == 302
    assert "issued KES 25,000.00 to Ali Agent" in signed_in.get("/admin/float").get_data(as_text=True)
    assert available(agent.account_id) == 2_500_000
    [deposit] = db.session.execute(select(TrustDeposit)).scalars()
    assert (deposit.amount, deposit.bank_reference) == (2_500_000, "BANK-77")
    [row] = audit_rows("float.issue")
    assert row.details == {"amount": 2_500_000, "phone": "+254700000101", "reference": "BANK-77"}
    assert run_check()
    ledger = signed_in.get("/admin/ledger").get_data(as_text=True)
    assert "Every invariant holds." in ledger and "KES 25,000.00" in ledger

    # The same deposit twice, a bad amount, someone who is not an agent: refused, nothing moves.
    for form in (
        {"phone": "0700000101", "amount": "100", "reference": "BANK-77"},
        {"phone": "0700000101", "amount": "12.50", "reference": "BANK-78"},
        {"phone": "0700000101", "amount": "-5", "reference": "BANK-78"},
        {"phone": "not a phone", "amount": "100", "reference": "BANK-78"},
        {"phone": "0712000111", "amount": "100", "reference": "BANK-78"},  # a customer
        {"phone": "0700000101", "amount": "100", "reference": ""},
    ):
        response = post(signed_in, "/admin/float", form, "/admin/float")
        assert response.status_code == 400, form
    assert available(agent.account_id) == 2_500_000
    assert len(audit_rows("float.issue")) == 1
    assert run_check()


def test_transfer_search_and_trail(signed_in, two_people):
    request = send_money(signed_in)
    page = signed_in.get("/admin/transfers?q=0712000222").get_data(as_text=True)
    assert request.code in page and "KES 1,000.00" in page
    assert (
        signed_in.get(f"/admin/transfers?q={request.code.lower()}").headers["Location"].endswith(request.code)
    )
    day = request.created_at.date().isoformat()
    assert request.code in signed_in.get(f"/admin/transfers?date={day}").get_data(as_text=True)
    assert request.code not in signed_in.get("/admin/transfers?date=2001-01-01").get_data(as_text=True)
    assert signed_in.get("/admin/transfers?date=31/12/2026").status_code == 200

    trail = signed_in.get(f"/admin/transfers/{request.code}").get_data(as_text=True)
    assert "accepted (ok)" in trail
    assert "Juma Otieno +254712000111" in trail and "Wanjiru Kamau +254712000222" in trail
    assert trail.count("<td>posted</td>") == 2  # the payment and the fee leg
    assert "Confirmed." in trail and trail.count("+2547120001") >= 2  # both receipts
    assert signed_in.get("/admin/transfers/NOSUCHCODE").status_code == 404


def test_dashboard_shows_transfers_fees_and_sms(signed_in, two_people):
    send_money(signed_in)
    page = signed_in.get("/admin/").get_data(as_text=True)
    assert page.count("<svg") == 3
    assert "send: 1" in page  # the hour's bar, by kind
    assert "KES 13.00" in page  # fee earned
    assert "100.0 %" not in page  # nothing delivered yet: sent is not delivered
    assert "Money held in escrow" in page and "No money is held right now." in page


def test_sms_retry_requeues_a_failed_message(signed_in, app, redis):
    message = OutboxMessage(
        phone="+254712400999",
        body="hello",
        status=OutboxStatus.FAILED.value,
        attempts=8,
        failure_reason="timeout",
    )
    sent = OutboxMessage(phone="+254712400999", body="fine", status=OutboxStatus.SENT.value, attempts=1)
    db.session.add_all([message, sent])
    db.session.commit()
    assert "Retry" in signed_in.get("/admin/sms?status=failed").get_data(as_text=True)

    post(signed_in, f"/admin/sms/{message.id}/retry")
    db.session.refresh(message)
    assert (message.status, message.attempts, message.next_attempt_at) == ("pending", 0, None)
    assert get_queue(SMS_QUEUE).count == 1  # the sender was woken
    [row] = audit_rows("sms.retry")
    assert row.target == str(message.id) and row.details["was"] == "timeout"

    post(signed_in, f"/admin/sms/{sent.id}/retry")  # only failed messages are retried
    db.session.refresh(sent)
    assert sent.status == "sent" and len(audit_rows("sms.retry")) == 1
    assert post(signed_in, "/admin/sms/999999/retry").status_code == 404
    send_sms()
    db.session.refresh(message)
    assert message.status == "sent"


class FakeDisputes:
    name = "fake"

    def __init__(self):
        self.decided = []

    def pending(self, session):
        return [seams.PendingDecision("fake", "d1", "reversal", "wrong number", 50_000)]

    def decide(self, session, decision_id, approve, operator_id, note):
        if decision_id != "d1":
            raise ValueError("no such request")
        self.decided.append((decision_id, approve, note))
        return "reversal approved"


def test_disputes_page_is_honest_when_empty_and_decides_through_the_seam(signed_in, monkeypatch):
    monkeypatch.setattr(seams, "_decision_sources", {})  # as before any source registers
    assert "No disputes yet" in signed_in.get("/admin/disputes").get_data(as_text=True)
    fake = FakeDisputes()
    monkeypatch.setitem(seams._decision_sources, "fake", fake)
    page = signed_in.get("/admin/disputes").get_data(as_text=True)
    assert "wrong number" in page and "KES 500.00" in page
    post(signed_in, "/admin/disputes/fake/d1", {"decision": "approve", "note": "checked"})
    assert fake.decided == [("d1", True, "checked")]
    [row] = audit_rows("decision.approve")
    assert row.target == "fake:d1"
    post(signed_in, "/admin/disputes/fake/nope", {"decision": "refuse"})
    assert not audit_rows("decision.refuse")
    assert post(signed_in, "/admin/disputes/other/d1", {"decision": "approve"}).status_code == 404


def test_queues_page_and_audit_log(signed_in, app):
    page = signed_in.get("/admin/queues").get_data(as_text=True)
    for name in ("transfers", "sms", "maintenance"):
        assert f"<td>{name}</td>" in page
    assert "No worker is running" in page  # none in this test (tests/test_browser.py runs one)
    assert post(signed_in, "/admin/queues/nosuch/requeue/x").status_code == 404
    post(signed_in, "/admin/queues/sms/requeue/no-such-job")
    assert not audit_rows("job.requeue")
    audit = signed_in.get("/admin/audit").get_data(as_text=True)
    assert "login" in audit and "ops@tuma.example" in audit


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/accounts?q=%00%27%22<script>", 200),
        ("/admin/accounts?q=" + "9" * 500, 200),
        ("/admin/transfers?q=%27;drop table users;--", 200),
        ("/admin/transfers?date=9999-99-99", 200),
        ("/admin/sms?status=bogus&phone=xyz", 200),
        ("/admin/transfers/" + "x" * 300, 404),  # no such transfer: Tuma's own "not found"
    ],
)
def test_odd_input_is_never_a_500(signed_in, path, status):
    assert signed_in.get(path).status_code == status


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/transfers/AB%00CD", 404),
        ("/admin/transfers/%00", 404),
    ],
)
def test_a_nul_in_a_transfer_code_is_not_found_not_a_server_error(signed_in, path, status):
    """PostgreSQL refuses NUL in a string: a code carrying one (a crafted link) is no transfer's."""
    assert signed_in.get(path).status_code == status


@pytest.mark.parametrize(
    "path",
    [
        "/admin/disputes/protected/AB%00CD",
        "/admin/disputes/reversals/r%00x",
        "/admin/disputes/allowances/al%00x",
        "/admin/api-keys/k%00x/revoke",
        "/admin/queues/sms/requeue/j%00x",
    ],
)
def test_a_nul_in_a_decision_key_or_job_id_is_told_not_a_server_error(signed_in, path):
    """Each decision, revocation and requeue named by its URL: a NUL in the name (a crafted
    link) is refused with the page's message, nothing decided or audited, never a 500."""
    response = post(signed_in, path, {"decision": "approve", "note": "why"})
    assert response.status_code == 302
    assert not [a for a in audit_rows() if a.action != "login"]
    if "/disputes/" in path:
        assert "Refused: no such decision" in signed_in.get("/admin/disputes").get_data(as_text=True)


def test_a_login_with_control_characters_is_refused_cleanly(client):
    operator()
    response = login(client, email="ops\x00@tuma.test", password="x\x00y")
    assert response.status_code == 401  # refused, with the login page again: not a 500
    assert "csrf_token" in response.get_data(as_text=True)
