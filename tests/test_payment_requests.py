"""Payment requests: a customer asks several people for money (split a bill), a merchant asks
a customer to pay; payers pay with PIN or decline in My approvals; requests expire; the
requester hears of every payment and decline, and of everyone having paid. Paying is an
ordinary transfer (fee, limits, receipts) and moves money once, even from two sessions at once."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.escrow_helpers import FUNDS, PIN, at_once, ledger_ok, merchant, sms_to
from tests.ussd_helpers import Phone, available, fresh, local, person
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.money import format_amount
from ussd_app.payments import payment_requests as pr
from ussd_app.payments.emoney import issue_float
from ussd_app.payments.execute import execute_batch
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import payee_fee
from ussd_app.users import find_by_phone
from ussd_app.ussd import approvals
from worker import jobs

# The customer menu's items for this feature (ussd_app/ussd/flows/home.py).
REQUEST_MONEY, MY_REQUESTS = "8", "9"

AMINA, BOB, CHRIS, DAVE = "+254712000111", "+254712000222", "+254712000333", "+254712000444"
SHOP = "+254700000002"
EACH = FUNDS // 4  # what each funded customer gets


def fund(*people) -> dict[str, int]:
    """Register ``people`` ((phone, name)) and give each EACH from an agent; {phone: account}."""
    agent = person("+254700000101", "Ali Agent", pin="1111", role="agent")
    issue_float(db.session, agent, FUNDS, "BANK-1")
    accounts = {}
    for phone, name in people:
        user = person(phone, name, pin=PIN)
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.DEPOSIT.value,
            debit_account_id=agent.account_id,
            credit_account_id=user.account_id,
            amount=EACH,
        )
        accounts[phone] = user.account_id
    db.session.commit()
    jobs.execute_transfers()
    return accounts


@pytest.fixture
def table(app):
    return fund((AMINA, "Amina Hassan"), (BOB, "Bob Kamau"), (CHRIS, "Chris Wanjiru"), (DAVE, "Dave Otieno"))


def ask(client, payers, *, total=None, each=None, reason="lunch", who=AMINA) -> str:
    phone = Phone(client, local(who))
    phone.walk(REQUEST_MONEY, *[local(p) for p in payers])
    how = phone.send("#") if len(payers) < 10 else None
    assert (
        how is None or how == f"CON Numbers entered: {len(payers)}\n1. Amount each\n2. Total to split evenly"
    )
    if total is not None:
        assert phone.send("2") == f"CON Enter the total to split among {len(payers)}"
        phone.send(str(total))
    else:
        phone.send("1")
        phone.send(str(each))
    confirm = phone.send(reason)
    assert confirm.startswith("CON Request "), confirm
    assert phone.send("1") == "CON Enter your PIN to send the requests"
    assert phone.send(PIN) == (
        f"END Requests sent: {len(payers)}. You will get an SMS as each one pays or declines."
    )
    return confirm


def approvals_of(client, who) -> tuple[Phone, str]:
    """My approvals of ``who`` (an earlier session left at the list is not resumed)."""
    return fresh(client, local(who), "3")


def pay_first(client, who, *, decline=False) -> str:
    phone, listing = approvals_of(client, who)
    assert listing.startswith("CON Waiting for your approval:\n1. Pay "), listing
    phone.send("1")
    phone.send("2" if decline else "1")
    return phone.send(PIN)


def transfers_for(request_id: str) -> int:
    db.session.expire_all()
    count = db.session.execute(
        select(func.count()).where(TransferRequest.id.like(f"{request_id}.p%"))
    ).scalar_one()
    db.session.commit()
    return count


def requests_of(phone: str) -> list[pr.PaymentRequest]:
    db.session.expire_all()
    rows = list(
        db.session.execute(
            select(pr.PaymentRequest)
            .where(pr.PaymentRequest.payer_phone == phone)
            .order_by(pr.PaymentRequest.id)
        ).scalars()
    )
    db.session.commit()
    return rows


def test_split_a_bill_two_pay_one_declines(client, table):
    """The issue's check: KES 1,000 split among three; two pay, one declines."""
    confirm = ask(client, [BOB, CHRIS, DAVE], total=1000)
    assert confirm == (
        "CON Request KES 1,000.00 for lunch: KES 333.34 + 2 x KES 333.33. Expires in 7 days.\n"
        "1. Confirm\n2. Cancel"
    )
    assert sms_to(BOB)[-1] == "Amina Hassan asks you for KES 333.34 for lunch. Dial *384*7# > My approvals"
    assert sms_to(CHRIS)[-1] == "Amina Hassan asks you for KES 333.33 for lunch. Dial *384*7# > My approvals"
    assert sms_to(DAVE)[-1] == "Amina Hassan asks you for KES 333.33 for lunch. Dial *384*7# > My approvals"
    before = len(sms_to(AMINA))

    _phone, listing = approvals_of(client, BOB)
    assert (
        listing == "CON Waiting for your approval:\n1. Pay KES 333.34 (fee KES 7.00) to Amina Hassan: lunch"
    )
    assert pay_first(client, BOB) == "END Approved. You will receive an SMS confirmation."
    assert jobs.execute_transfers() == 1
    assert pay_first(client, CHRIS) == "END Approved. You will receive an SMS confirmation."
    assert jobs.execute_transfers() == 1
    assert pay_first(client, DAVE, decline=True) == "END Declined."

    # Balances: the requester got both payments; each payer paid amount + the send fee.
    fee = 7_00  # KES 101-500
    assert available(table[AMINA]) == EACH + 333_34 + 333_33
    assert available(table[BOB]) == EACH - 333_34 - fee
    assert available(table[CHRIS]) == EACH - 333_33 - fee
    assert available(table[DAVE]) == EACH
    ledger_ok()

    trail = sms_to(AMINA)[before:]
    assert len(trail) == 5, trail
    assert "You have received KES 333.34 from BOB KAMAU" in trail[0]
    assert trail[1] == "BOB KAMAU +254712000222 paid your request of KES 333.34 for lunch. 1 of 3 have paid."
    assert "You have received KES 333.33 from CHRIS WANJIRU" in trail[2]
    assert trail[3] == (
        "CHRIS WANJIRU +254712000333 paid your request of KES 333.33 for lunch. 2 of 3 have paid."
    )
    assert trail[4] == "DAVE OTIENO +254712000444 declined your request of KES 333.33 for lunch."
    # Bob's receipt is the ordinary send receipt, with its cost.
    assert "KES 333.34 sent to AMINA HASSAN" in sms_to(BOB)[-1]
    assert "Transaction cost, KES 7.00" in sms_to(BOB)[-1]
    # Nothing waits any more; the requester sees who paid.
    assert approvals_of(client, DAVE)[1] == "END Nothing is waiting for your approval."
    assert [r.state for r in requests_of(BOB) + requests_of(CHRIS) + requests_of(DAVE)] == [
        "paid",
        "paid",
        "declined",
    ]


def test_a_summary_when_everyone_has_paid_and_my_requests_shows_who(client, table):
    ask(client, [BOB, CHRIS], each=250, reason="taxi")
    mine, body = fresh(client, local(AMINA), MY_REQUESTS)
    assert body == "CON My requests\n1. KES 500.00 taxi: 0/2 paid"
    assert mine.send("1") == (
        "CON taxi: 0/2 paid\n1. Remind unpaid\n2. Cancel unpaid\n"
        "3. Bob Kamau: not paid\n4. Chris Wanjiru: not paid"
    )
    pay_first(client, BOB)
    jobs.execute_transfers()
    assert fresh(client, local(AMINA), MY_REQUESTS, "1")[1] == (
        "CON taxi: 1/2 paid\n1. Remind unpaid\n2. Cancel unpaid\n"
        "3. Bob Kamau: paid\n4. Chris Wanjiru: not paid"
    )
    pay_first(client, CHRIS)
    jobs.execute_transfers()
    trail = sms_to(AMINA)
    assert trail[-1] == "Everyone has paid your request for taxi: KES 500.00 from 2 people."
    assert sum("Everyone has paid" in body for body in trail) == 1
    assert jobs.maintain()["payment_requests"] == 0  # nothing left to settle: no second summary
    assert sum("Everyone has paid" in body for body in sms_to(AMINA)) == 1
    assert fresh(client, local(AMINA), MY_REQUESTS)[1] == "END You have no open requests."


def test_paying_the_same_request_from_two_sessions_at_once_moves_money_once(app, client, table):
    ask(client, [BOB], each=400)
    [request] = requests_of(BOB)
    request_id = request.id

    def pay():
        user = find_by_phone(db.session, BOB)
        ok = approvals.decide(db.session, user, f"request:{request_id}", approve=True)
        db.session.commit()
        return ok

    results = at_once(app, pay, pay)
    assert sorted(results) == [False, True], results
    jobs.execute_transfers()
    assert transfers_for(request_id) == 1
    assert available(table[BOB]) == EACH - 400_00 - 7_00
    assert available(table[AMINA]) == EACH + 400_00
    assert sum("paid your request" in body for body in sms_to(AMINA)) == 1
    # And a session that tries again later finds nothing to pay.
    assert approvals_of(client, BOB)[1] == "END Nothing is waiting for your approval."
    ledger_ok()


def test_the_last_payments_settling_side_by_side_send_one_summary(app, client, table):
    ask(client, [BOB, CHRIS, DAVE], each=100, reason="cake")
    for payer in (BOB, CHRIS, DAVE):
        assert pay_first(client, payer) == "END Approved. You will receive an SMS confirmation."
    # Post the three transfers without settling them, then settle from two jobs at once.
    assert execute_batch(db.session, 10) == 3
    results = at_once(app, jobs.settle_payment_requests, jobs.settle_payment_requests)
    assert sum(results) == 3, results
    trail = sms_to(AMINA)
    assert sum("paid your request of KES 100.00 for cake" in body for body in trail) == 3
    assert [body for body in trail if "Everyone has paid" in body] == [
        "Everyone has paid your request for cake: KES 300.00 from 3 people."
    ]
    assert available(table[AMINA]) == EACH + 300_00


def test_a_repeated_final_request_asks_nobody_twice(client, table):
    phone = Phone(client, local(AMINA))
    phone.walk(REQUEST_MONEY, local(BOB), "#", "1", "100", "tea", "1")
    assert phone.send(PIN).startswith("END Requests sent: 1.")
    assert phone.repeat().startswith("END Requests sent: 1.")
    assert len(requests_of(BOB)) == 1
    assert len(sms_to(BOB)) == 2  # the deposit receipt and one request


def test_an_expired_request_cannot_be_paid_and_expires_once(app, client, table):
    ask(client, [BOB], each=300)
    [request] = requests_of(BOB)
    bob = find_by_phone(db.session, BOB)
    week = request.expires_at + timedelta(seconds=1)
    # Past its time it cannot be paid, even before the expiry job has looked.
    assert pr.pay(db.session, bob, request.id, now=week) is None
    db.session.commit()
    results = at_once(
        app,
        lambda: jobs.settle_payment_requests(expire=True, now=week),
        lambda: jobs.settle_payment_requests(expire=True, now=week),
    )
    assert sorted(results) == [0, 1], results
    assert requests_of(BOB)[0].state == "expired"
    assert sms_to(AMINA)[-1] == "Your request of KES 300.00 from +254712000222 for lunch expired unpaid."
    assert sum("expired unpaid" in body for body in sms_to(AMINA)) == 1
    assert approvals_of(client, BOB)[1] == "END Nothing is waiting for your approval."
    assert pr.pay(db.session, bob, request.id) is None
    db.session.commit()
    assert transfers_for(request.id) == 0
    assert available(table[BOB]) == EACH


def test_a_payment_bob_cannot_cover_is_told_at_the_pin_and_the_request_still_waits(client, table):
    """All Bob has, asked for: the fee is missing. Approving says "Not enough money" at the PIN
    (as a send does), records nothing, and the request waits for him as before."""
    ask(client, [BOB], each=EACH // 100)
    answer = pay_first(client, BOB)
    fee = pr.quote(db.session, requests_of(BOB)[0])["fee"]
    assert answer == (
        f"END Not enough money to pay {format_amount(EACH + fee)}. Your balance is {format_amount(EACH)}."
    ), answer
    [request] = requests_of(BOB)
    assert (request.state, request.pay_attempts, request.transfer_request_id) == ("open", 0, None)
    assert transfers_for(request.id) == 0
    _phone, listing = approvals_of(client, BOB)
    assert listing.startswith("CON Waiting for your approval:\n1. Pay ")


def test_a_refused_payment_reopens_the_request(client, table):
    """Paying is an ordinary transfer: the ledger may refuse it (here: Bob's money left another
    way between his PIN and the worker); the payer gets the usual failure SMS and the request
    waits for them again."""
    from tests.helpers import spec
    from ussd_app.ledger import AccountKind, create_transfers, house_account

    ask(client, [BOB], each=EACH // 200)
    assert pay_first(client, BOB) == "END Approved. You will receive an SMS confirmation."
    trust = house_account(db.session, AccountKind.TRUST).id
    [out] = create_transfers(db.session, [spec("bob-out", table[BOB], trust, EACH, code="float_redeem")])
    assert out.succeeded, out
    db.session.commit()
    jobs.execute_transfers()
    assert "Failed:" in sms_to(BOB)[-1]
    [request] = requests_of(BOB)
    assert (request.state, request.pay_attempts, request.transfer_request_id) == ("open", 1, None)
    assert available(table[AMINA]) == EACH
    assert not any("paid your request" in body for body in sms_to(AMINA))
    _phone, listing = approvals_of(client, BOB)
    assert listing.startswith("CON Waiting for your approval:\n1. Pay ")


def test_unregistered_numbers_get_an_invitation_and_see_it_after_registering(client, table):
    stranger = "+254712000999"
    ask(client, [stranger], each=150, reason="rent share")
    assert sms_to(stranger) == [
        "Amina Hassan +254712000111 asks you for KES 150.00 for rent share. Dial *384*7# to join Tuma, "
        "then pay in My approvals within 7 days."
    ]
    person(stranger, "Eve Njeri", pin=PIN)
    _phone, listing = approvals_of(client, stranger)
    assert (
        listing
        == "CON Waiting for your approval:\n1. Pay KES 150.00 (fee KES 7.00) to Amina Hassan: rent share"
    )


def test_numbers_are_checked_one_per_screen(client, table):
    phone = Phone(client, local(AMINA))
    assert phone.walk(REQUEST_MONEY) == "CON Request money\nEnter number 1, or # to finish"
    assert phone.send("#") == "CON Enter at least one number.\nRequest money\nEnter number 1, or # to finish"
    assert (
        phone.send(local(AMINA))
        == "CON You cannot ask yourself.\nRequest money\nEnter number 1, or # to finish"
    )
    assert phone.send("12") == "CON Not a valid phone number.\nRequest money\nEnter number 1, or # to finish"
    assert phone.send(local(BOB)) == "CON Request money\nEnter number 2, or # to finish"
    assert phone.send(local(BOB)) == (
        "CON +254712000222 is already on this request.\nRequest money\nEnter number 2, or # to finish"
    )
    phone.send("#")
    phone.send("1")
    phone.send("50")
    assert (
        phone.send("x" * 21)
        == "CON Use 1 to 20 letters, digits or spaces.\nWhat is it for? (up to 20 characters)"
    )


def test_ten_numbers_at_most(client, table):
    phone = Phone(client, local(AMINA))
    phone.walk(REQUEST_MONEY)
    for n in range(10):
        body = phone.send(f"07220000{n:02d}")
    assert body == "CON Numbers entered: 10\n1. Amount each\n2. Total to split evenly"


def test_a_payer_is_asked_at_most_so_often_a_day(client, table, app):
    app.config["REQUESTS_PER_PAYER_PER_DAY"] = 2
    ask(client, [BOB], each=100)
    ask(client, [BOB], each=100)
    phone = Phone(client, local(AMINA))
    assert phone.walk(REQUEST_MONEY, local(BOB)) == (
        "CON You have asked +254712000222 2 times today. Try tomorrow.\n"
        "Request money\nEnter number 1, or # to finish"
    )
    # Another requester may still ask.
    ask(client, [BOB], each=100, who=CHRIS)


def test_one_reminder_per_payer_per_day_and_cancel(client, table):
    ask(client, [BOB, CHRIS], each=200, reason="fuel")
    pay_first(client, CHRIS)
    jobs.execute_transfers()
    phone, _ = fresh(client, local(AMINA), MY_REQUESTS, "1")
    assert phone.send("1") == "END Reminders sent: 1. Each person gets at most one a day."
    assert (
        sms_to(BOB)[-1]
        == "Reminder: Amina Hassan asks you for KES 200.00 for fuel. Dial *384*7# > My approvals"
    )
    again, _ = fresh(client, local(AMINA), MY_REQUESTS, "1", "3")  # Bob's line
    assert again.send("1") == "END Reminders sent: 0. Each person gets at most one a day."
    assert sum(body.startswith("Reminder:") for body in sms_to(BOB)) == 1
    # Tomorrow he may be reminded again.
    [request] = requests_of(BOB)
    assert pr.remind(
        db.session, find_by_phone(db.session, AMINA), request.id, now=utcnow() + timedelta(days=1)
    )
    db.session.commit()
    assert sum(body.startswith("Reminder:") for body in sms_to(BOB)) == 2

    cancel, _ = fresh(client, local(AMINA), MY_REQUESTS, "1")
    assert cancel.send("2") == "CON Cancel the unpaid requests? Paid ones stay paid.\n1. Yes, cancel\n2. No"
    assert cancel.send("1") == "END Requests cancelled: 1."
    assert [r.state for r in requests_of(BOB) + requests_of(CHRIS)] == ["cancelled", "paid"]
    assert approvals_of(client, BOB)[1] == "END Nothing is waiting for your approval."
    assert fresh(client, local(AMINA), MY_REQUESTS)[1] == "END You have no open requests."


# -- merchants (issue 5) ----------------------------------------------------------------------


@pytest.fixture
def shop(app, table):
    return merchant(SHOP, "Mama Mboga", "123456")


def merchant_asks(client, customer=BOB, amount="250", reason="School fees") -> None:
    phone = Phone(client, local(SHOP))
    assert phone.walk("5") == "CON Request payment\nEnter the customer's phone number"
    assert phone.send(local(customer)) == f"CON Request from {customer}\nEnter amount"
    phone.send(amount)
    assert phone.send(reason) == (
        f"CON Ask {customer} to pay KES {amount}.00 for {reason}? It expires in 24 hours.\n"
        "1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to send the request"
    assert phone.send("2222") == (
        f"END Request sent to {customer}. You will get an SMS when they pay or decline."
    )


def test_a_merchant_requests_payment_and_the_customer_pays(client, shop, table):
    merchant_asks(client)
    assert (
        sms_to(BOB)[-1] == "Mama Mboga asks you for KES 250.00 for School fees. Dial *384*7# > My approvals"
    )
    assert (
        approvals_of(client, BOB)[1]
        == "CON Waiting for your approval:\n1. Pay KES 250.00 to Mama Mboga: School fees"
    )
    assert pay_first(client, BOB) == "END Approved. You will receive an SMS confirmation."
    jobs.execute_transfers()
    merchant_fee = payee_fee("buy_goods", 250_00)
    assert merchant_fee > 0
    assert available(shop) == 250_00 - merchant_fee  # the merchant's capped fee, as at a till
    assert available(table[BOB]) == EACH - 250_00  # paying a merchant is free
    [paid] = [r for r in requests_of(BOB)]
    transfer = db.session.get(TransferRequest, paid.transfer_request_id)
    assert transfer.kind == "buy_goods"
    assert "KES 250.00 paid to MAMA MBOGA till 123456" in sms_to(BOB)[-1]
    received, told = sms_to(SHOP)
    assert f"{transfer.code} Confirmed. KES 250.00 from BOB KAMAU +254712000222" in received
    assert told == "BOB KAMAU +254712000222 paid your request of KES 250.00 for School fees."
    ledger_ok()


def test_a_merchant_hears_of_a_decline_and_of_expiry_after_24_hours(client, shop, table):
    merchant_asks(client, BOB)
    merchant_asks(client, CHRIS, amount="90", reason="Milk")
    assert pay_first(client, BOB, decline=True) == "END Declined."
    assert sms_to(SHOP)[-1] == "BOB KAMAU +254712000222 declined your request of KES 250.00 for School fees."
    [milk] = requests_of(CHRIS)
    assert milk.expires_at - milk.created_at == timedelta(hours=24)
    assert jobs.settle_payment_requests(expire=True, now=milk.expires_at - timedelta(seconds=1)) == 0
    assert jobs.settle_payment_requests(expire=True, now=milk.expires_at) == 1
    assert sms_to(SHOP)[-1] == "Your request of KES 90.00 from +254712000333 for Milk expired unpaid."
    assert approvals_of(client, CHRIS)[1] == "END Nothing is waiting for your approval."
    assert available(shop) == 0


def test_kiswahili_messages(client, table):
    sw = person("+254712000555", "Zawadi Mrema", pin=PIN, language="sw")
    assert sw is not None
    ask(client, ["+254712000555"], each=120, reason="chai")
    assert sms_to("+254712000555")[-1] == (
        "Amina Hassan anakuomba KES 120.00 kwa chai. Piga *384*7# > Idhini zangu"
    )


def test_every_request_sms_has_its_kiswahili(app):
    import re

    from ussd_app.i18n import catalog

    sw = catalog("sw", "sms")
    from ussd_app.messages import payment_requests as texts

    for message in texts.MESSAGES:
        assert message in sw, message
        assert set(re.findall(r"{\w+}", sw[message])) == set(re.findall(r"{\w+}", message))


def test_split_puts_the_remainder_on_the_first():
    assert pr.split(1000_00, 3) == [333_34, 333_33, 333_33]
    assert pr.split(100_00, 1) == [100_00]
    assert sum(pr.split(7, 3)) == 7
