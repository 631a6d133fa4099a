"""End to end: register by USSD, get cash-in from an agent, send money by USSD, the worker
executes it, and every balance and the ledger's invariants are right."""

from sqlalchemy import select

from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.models import RequestStatus, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.users import create_user, find_by_phone
from worker.jobs import execute_transfers


def register(client, number: str, first: str, last: str, pin: str, language: str = "1") -> None:
    body = Phone(client, number).walk(language, first, last, pin, pin)
    assert body.startswith("END ")


def test_register_fund_send_execute_and_check(backend_app):
    client = backend_app.test_client()
    agent = create_user(db.session, phone="0700000001", name="Amina Agent", role="agent", pin="1111")
    issue_float(db.session, agent, 10_000_000, "BANK-REF-1")  # KES 100,000 of e-float
    db.session.commit()
    agent_account = agent.account_id

    register(client, "0712000111", "Juma", "Otieno", "8642")
    register(client, "0712000222", "Wanjiru", "Kamau", "9753", language="2")
    juma = find_by_phone(db.session, "+254712000111").account_id
    wanjiru = find_by_phone(db.session, "+254712000222").account_id

    # Cash-in menus belong to another issue: the agent's deposit is a recorded request.
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="send",
        debit_account_id=agent_account,
        credit_account_id=juma,
        amount=500_000,
        fee=0,
    )
    db.session.commit()
    execute_transfers()
    assert available(juma) == 500_000

    phone = Phone(client, "0712000111")
    confirm = phone.walk("1", "0712000222", "2000")
    assert "Send KES 2,000.00 to Wanjiru Kamau +254712000222?\nFee: KES 33.00" in confirm
    phone.send("1")
    assert phone.send("8642").startswith("END Sending KES 2,000.00 to Wanjiru Kamau.")
    assert phone.repeat().startswith("END Sending")  # the gateway retries: nothing twice

    execute_transfers()
    [sent] = db.session.execute(
        select(TransferRequest).where(TransferRequest.debit_account_id == juma)
    ).scalars()
    assert sent.status == RequestStatus.ACCEPTED.value
    assert available(juma) == 500_000 - 200_000 - 3_300
    assert available(wanjiru) == 200_000
    assert available(agent_account) == 10_000_000 - 500_000
    failed = [f for f in check(db.session, trust_deposits_total=10_000_000) if not f.ok]
    assert not failed, failed

    # Each sees it: Wanjiru (in Kiswahili) has the money, Juma has it in his statement.
    assert Phone(client, "0712000222").walk("2", "1", "9753") == "END Salio lako ni KES 2,000.00."
    statement = Phone(client, "0712000111").walk("2", "2", "8642")
    assert f"{sent.code} -KES 2,033.00 Wanjiru Kamau" in statement
