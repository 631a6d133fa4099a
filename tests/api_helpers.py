"""Builders shared by the API tests (tests/test_api_*.py): keys, authorised calls, a funded
merchant."""

import uuid

from ussd_app.api.keys import ALL_SCOPES, create_key
from ussd_app.extensions import db
from ussd_app.payments.emoney import issue_float
from ussd_app.users import User, find_by_phone


def make_key(user, scopes=ALL_SCOPES, name="shop") -> str:
    """A key for ``user`` (committed); the key itself."""
    _, key = create_key(db.session, db.session.get(User, user.id), name, list(scopes))
    db.session.commit()
    return key


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def post(client, path: str, key: str, body, idempotency_key: str | None = None, **headers):
    headers = {**auth(key), "Idempotency-Key": idempotency_key or uuid.uuid4().hex, **headers}
    if isinstance(body, str | bytes):
        return client.post(f"/api/v1{path}", data=body, headers=headers)
    return client.post(f"/api/v1{path}", json=body, headers=headers)


def get(client, path: str, key: str, **params):
    return client.get(f"/api/v1{path}", headers=auth(key), query_string=params)


def fund_merchant(merchant_phone: str, amount: int, agent_phone: str = "+254700000101") -> None:
    """Give the merchant ``amount`` of e-money: float issued to the agent, deposited on."""
    from tests.ussd_helpers import AGENT, person
    from ussd_app.payments.execute import execute_requests
    from ussd_app.payments.models import TransferRequest
    from ussd_app.payments.submit import mint_request_id, record_request

    agent = find_by_phone(db.session, agent_phone) or person(**{**AGENT, "phone": agent_phone})
    merchant = find_by_phone(db.session, merchant_phone)
    issue_float(db.session, agent, amount)
    request = record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=merchant.account_id,
        amount=amount,
    )
    execute_requests(db.session, [db.session.get(TransferRequest, request.id)])
    db.session.commit()


def ledger_check(runner) -> None:
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output


def execute_all() -> int:
    """What the transfers worker does, batch after batch, until nothing is queued."""
    from worker import jobs

    total = 0
    while done := jobs.execute_transfers():
        total += done
    db.session.commit()  # SQLite: release the database for the next request or thread
    return total


def many_customers(n: int) -> list[str]:
    """``n`` registered customers (no PIN, no money) made in two inserts; their numbers."""
    from sqlalchemy import func, select

    from ussd_app.database import insert_rows
    from ussd_app.ledger import Account, AccountKind
    from ussd_app.ledger.accounts import FLAGS_BY_KIND

    before = db.session.execute(select(func.coalesce(func.max(Account.id), 0))).scalar_one()
    zero = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0}
    flags = int(FLAGS_BY_KIND[AccountKind.CUSTOMER])
    insert_rows(
        db.session, Account.__table__, [{"kind": "customer", "flags": flags, **zero} for _ in range(n)]
    )
    ids = list(
        db.session.execute(select(Account.id).where(Account.id > before).order_by(Account.id)).scalars()
    )
    phones = [f"+254711{i:06d}" for i in range(n)]
    rows = [
        {
            "phone": phone,
            "first_name": "Payee",
            "last_name": f"N{i}",
            "role": "customer",
            "language": "en",
            "tier": "basic",
            "till": None,
            "business_kind": None,
            "id_number": None,
            "account_id": account_id,
            "pin_hash": None,
            "pin_failures": 0,
            "locked_until": None,
        }
        for i, (phone, account_id) in enumerate(zip(phones, ids, strict=True))
    ]
    insert_rows(db.session, User.__table__, rows)
    db.session.commit()
    return phones
