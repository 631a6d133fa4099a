"""What the escrow tests share: a funded customer, a merchant, the outbox, the clock moved on."""

import threading

from sqlalchemy import func, select

from tests.ussd_helpers import AGENT, CUSTOMER, MERCHANT, Phone, person
from ussd_app.database import db_clock_us
from ussd_app.extensions import db
from ussd_app.ledger import Account, AccountKind, Transfer, house_account
from ussd_app.ledger.check import check
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import create_user
from worker import jobs

PIN = "8642"
FUNDS = 10_000_00
DAY_US = 24 * 3600 * 1_000_000


def posted_send(payer_account: int, payee_account: int, amount: int = 500_00) -> TransferRequest:
    """A send from ``payer_account`` to ``payee_account``, with its fee, executed and posted."""
    from ussd_app.tariffs import quote

    request = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.SEND.value,
        debit_account_id=payer_account,
        credit_account_id=payee_account,
        amount=amount,
        fee=quote("send", amount),
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1
    db.session.expire_all()
    return db.session.get(TransferRequest, request.id)


def funded_customer(phone=CUSTOMER["phone"], name=CUSTOMER["name"]) -> int:
    """A customer (the cast's, unless told) with KES 10,000 cashed in at the cast's agent, for a
    test without the cast's fixtures (a test with them: ``cash_in(customer, agent)``)."""
    agent = person(**AGENT)
    return cash_in(person(phone, name, pin=PIN), agent)


def cash_in(customer, agent) -> int:
    """``customer`` (a user) with KES 10,000 cashed in at ``agent``, whose float is issued from
    the trust account for it; the customer's account id."""
    issue_float(db.session, agent, FUNDS, "BANK-1")
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.DEPOSIT.value,
        debit_account_id=agent.account_id,
        credit_account_id=customer.account_id,
        amount=FUNDS,
    )
    db.session.commit()
    jobs.execute_transfers()
    return customer.account_id


def merchant(phone=MERCHANT["phone"], name=MERCHANT["name"], till=MERCHANT["till"]) -> int:
    user = create_user(db.session, phone=phone, name=name, role="merchant", pin=MERCHANT["pin"], till=till)
    db.session.commit()
    return user.account_id


def sms_to(phone: str) -> list[str]:
    db.session.expire_all()
    bodies = list(
        db.session.execute(
            select(OutboxMessage.body).where(OutboxMessage.phone == phone).order_by(OutboxMessage.id)
        ).scalars()
    )
    db.session.commit()
    return bodies


def the_request(kind: RequestKind) -> TransferRequest:
    """The one request of ``kind`` (a hold, typically), read afresh."""
    db.session.expire_all()
    request = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == kind.value)
    ).scalar_one()
    db.session.commit()
    return request


def buy_protected(client, amount="300") -> TransferRequest:
    """The cast's customer (0712000111) buys ``amount`` from Mama Mboga's till 123456 with
    protection, by USSD; the worker holds it. The hold's request, read afresh."""
    phone = Phone(client, CUSTOMER["phone"])
    confirm = phone.walk("5", MERCHANT["till"], amount)
    assert confirm.endswith("1. Confirm\n2. Cancel\n3. Pay with protection")
    assert phone.send("3") == f"CON Enter your PIN to pay KES {int(amount)}.00 to Mama Mboga with protection"
    assert phone.send(PIN) == (
        f"END Paying KES {int(amount)}.00 to Mama Mboga, held until you confirm delivery in My approvals."
    )
    assert jobs.execute_transfers() == 1
    return the_request(RequestKind.PROTECTED_PURCHASE)


def resolutions(hold_id: str) -> int:
    """How many transfers resolved the hold ``hold_id`` (exactly one, once it is decided)."""
    db.session.expire_all()
    count = db.session.execute(select(func.count()).where(Transfer.pending_id == hold_id)).scalar_one()
    db.session.commit()
    return count


def ledger_ok():
    failed = [f for f in check(db.session, trust_deposits_total=FUNDS) if not f.ok]
    assert not failed, failed


def house(kind: AccountKind) -> Account:
    account = house_account(db.session, kind)
    db.session.refresh(account)
    return account


def later(days: float) -> int:
    """The database clock moved on by ``days`` (µs), for the expiry functions' ``now``."""
    now = db_clock_us(db.session)
    db.session.commit()
    return now + int(days * DAY_US)


def at_once(app, *calls):
    """Run each call in its own thread, app context and database session, all released
    together; return their results (exceptions are re-raised)."""
    db.session.commit()  # SQLite: this session must not hold the write lock meanwhile
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i, call):
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                results[i] = call()
            except Exception as exc:  # re-raised below, in the test's thread
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results
