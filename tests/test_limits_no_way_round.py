"""Issue 15, items 6, 7, 9 and 16: limits a receiver or a locked sender could get round, and
numbers that can never be customers. Through the real webhooks, with the real worker job."""

import re

import pytest

from tests.admin_helpers import login, operator, post
from tests.escrow_helpers import cash_in, ledger_ok, posted_send, sms_to
from tests.ussd_helpers import SECOND_CUSTOMER, Phone, person
from ussd_app import limits
from ussd_app.extensions import db
from ussd_app.messages import refusals
from ussd_app.payments import kinds
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from worker import jobs

JUMA, AMINA = "+254712000111", "+254712000222"
PIN = "8642"
WANJIRU = SECOND_CUSTOMER["phone"]  # the cast's second customer

_ids = iter(range(1, 1_000_000))


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def text_us(client, phone, body) -> str:
    fields = {"from": phone, "to": "22384", "text": body, "id": f"at-limits-{next(_ids)}"}
    response = client.post("/sms/inbound", data=fields)
    assert response.status_code == 200
    return sms_to(phone)[-1]


def count(kind: RequestKind) -> int:
    db.session.expire_all()
    n = db.session.query(TransferRequest).filter(TransferRequest.kind == kind.value).count()
    db.session.commit()
    return n


# -- item 7: a locked account starts nothing by SMS ------------------------------------------


def lock_by_wrong_pins(client):
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "100", "1")
    phone.send("0000")
    phone.send("0000")
    assert phone.send("0000").startswith("END Your PIN is locked")


def lock_by_operator(client):
    operator()
    login(client)
    juma = find_by_phone(db.session, JUMA)
    response = post(client, f"/admin/accounts/{juma.id}/lock", {"reason": "reported stolen"})
    assert response.status_code == 302


LOCKED_REPLIES = {
    lock_by_wrong_pins: (
        "Your Tuma account is locked, so we cannot start a reversal. Ask an agent or customer care "
        "to unlock it, then try again."
    ),
    lock_by_operator: (
        "Your Tuma account is locked by Tuma, so we cannot start a reversal. Please call customer care."
    ),
}


@pytest.mark.parametrize("lock", [lock_by_wrong_pins, lock_by_operator], ids=["pin", "operator"])
def test_a_locked_sender_cannot_reverse_by_sms_and_is_told_why(client, juma, second_customer, lock):
    sent = posted_send(juma, second_customer.account_id)
    lock(client)
    reply = text_us(client, JUMA, f"REVERSE {sent.code}")
    # Only customer care lifts an operator's lock: an agent is not offered for it.
    assert reply == LOCKED_REPLIES[lock]
    assert count(RequestKind.REVERSAL) == 0
    assert jobs.execute_transfers() == 0
    assert not [b for b in sms_to(WANJIRU) if "asks you to return" in b]
    ledger_ok()


# -- item 9: only mobiles of our own country receive, are invited or get airtime -------------

NOT_OURS = ["+14155552671", "+255712345678", "+254202222222", "0800720000"]
REFUSED = "Only mobile numbers starting +254 can be used."


def outbox_phones() -> set[str]:
    from ussd_app.sms.outbox import OutboxMessage

    db.session.expire_all()
    phones_ = set(db.session.execute(db.select(OutboxMessage.phone)).scalars())
    db.session.commit()
    return phones_


def requests_recorded() -> int:
    db.session.expire_all()
    n = db.session.query(TransferRequest).count()
    db.session.commit()
    return n


@pytest.mark.parametrize("number", NOT_OURS)
def test_send_money_refuses_numbers_that_can_never_register(client, juma, number):
    before, sms_before = requests_recorded(), outbox_phones()
    phone = Phone(client, "0712000111")
    phone.walk("1")
    body = phone.send(number)
    assert body == f"CON {REFUSED}\nSend money\nEnter the recipient's phone number"
    # Nothing was offered ("Send anyway"), recorded or sent; a good number still goes on.
    assert requests_recorded() == before and outbox_phones() == sms_before
    assert phone.send("0712000999").startswith("CON +254712000999 is not on Tuma. Send anyway?")


@pytest.mark.parametrize("number", NOT_OURS)
def test_airtime_refuses_foreign_and_landline_numbers(client, juma, number):
    phone = Phone(client, "0712000111")
    phone.walk("7")
    assert phone.send("2") == "CON Enter the phone number to top up"
    assert phone.send(number) == f"CON {REFUSED}\nEnter the phone number to top up"
    assert phone.send("0712000999") == "CON Airtime for +254712000999\nEnter amount"


def test_kiswahili_says_it_in_kiswahili(client, customer, juma):
    customer.language = "sw"
    db.session.commit()
    phone = Phone(client, "0712000111")
    phone.walk("1")
    assert phone.send("+14155552671").startswith(
        "CON Nambari za simu za mkononi zinazoanza na +254 pekee ndizo zinatumika."
    )


AGENT, MERCHANT = "+254700000101", "+254700000002"
NUMBER_SCREENS = [
    (JUMA, ["4"], "Withdraw cash\nEnter the agent's phone number"),
    (JUMA, ["8"], "Request money\nEnter number 1, or # to finish"),
    (MERCHANT, ["5"], "Request payment\nEnter the customer's phone number"),
    (AGENT, ["1"], "Deposit\nEnter the customer's phone number"),
    (AGENT, ["5"], "Register customer\nEnter their phone number"),
    (AGENT, ["6"], "Unlock PIN\nEnter the customer's phone number"),
    (AGENT, ["9"], "Withdraw for a customer\nEnter the customer's phone number"),
]


@pytest.mark.parametrize(
    "who,path,prompt", NUMBER_SCREENS, ids=[p.split("\n")[0] for _, _, p in NUMBER_SCREENS]
)
def test_every_number_screen_refuses_numbers_that_are_not_our_mobiles(
    client, juma, merchant, who, path, prompt
):
    before, sms_before = requests_recorded(), outbox_phones()
    phone = Phone(client, who)
    assert phone.walk(*path) == f"CON {prompt}"
    for number in NOT_OURS:
        assert phone.send(number) == f"CON {REFUSED}\n{prompt}", number
    assert requests_recorded() == before and outbox_phones() == sms_before


def test_the_cli_opens_no_account_for_a_number_that_is_not_our_mobile(runner):
    for number in NOT_OURS:
        result = runner.invoke(
            args=[
                "accounts",
                "create",
                "--phone",
                number,
                "--name",
                "Far Away",
                "--role",
                "customer",
                "--pin",
                "1234",
            ]
        )
        assert result.exit_code != 0 and "not a mobile number of KE (+254)" in result.output, result.output
        assert find_by_phone(db.session, number if number.startswith("+") else "+254800720000") is None


# -- item 6: every kind that credits a wallet respects the receiver's balance limit ----------

NEWCOMER = "+254712000999"
SENDERS = [
    ("+254712000111", "Juma Otieno"),
    ("+254712000222", "Amina Hassan"),
    ("+254712000333", "Baraka Mwangi"),
]
BANK = 1_000_000_00


def agent_and_senders(senders=SENDERS, each=65_000_00):
    """An agent with KES 1,000,000 of e-float, and customers each holding ``each``."""
    from ussd_app.payments.emoney import issue_float

    agent = person(AGENT, "Ali Agent", pin="1111", role="agent")
    issue_float(db.session, agent, BANK, "BANK-LIMITS-1")
    people = [person(phone, name) for phone, name in senders]
    for customer in people:
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.DEPOSIT.value,
            debit_account_id=agent.account_id,
            credit_account_id=customer.account_id,
            amount=each,
        )
    db.session.commit()
    assert jobs.execute_transfers() == len(people)
    return agent, people


def send_by_ussd(client, sender: str, to: str, amount: str, *, unregistered=False) -> str:
    phone = Phone(client, sender)
    phone.walk("1", to)
    if unregistered:
        phone.send("1")  # Send anyway
    phone.send(amount)
    phone.send("1")
    return phone.send("8642")


def balance(phone: str) -> int:
    from tests.ussd_helpers import available

    return available(find_by_phone(db.session, phone).account_id)


def ledger_holds(total=BANK):
    from ussd_app.ledger.check import check

    failed = [f for f in check(db.session, trust_deposits_total=total) if not f.ok]
    assert not failed, failed


def test_money_held_for_a_newcomer_never_takes_them_over_their_balance_limit(backend_app):
    """The attack: three people send KES 60,000 each to an unregistered number; a basic account
    may hold KES 100,000. On registering, the first send arrives, the second in part (KES 40,000)
    and none of the third: the rest goes back to each sender, with an SMS saying why, and the
    newcomer is told what arrived."""
    client = backend_app.test_client()
    agent_and_senders()
    fee = quote("send", 60_000_00)
    for sender, _ in SENDERS:
        body = send_by_ussd(client, sender, "0712000999", "60000", unregistered=True)
        assert body.startswith("END Sending KES 60,000.00 to +254712000999"), body
        assert jobs.execute_transfers() == 1
    assert Phone(client, NEWCOMER).walk("1", "Akinyi", "Odhiambo", "2468", "2468").startswith("END Welcome")
    assert jobs.execute_transfers() == 3

    assert balance(NEWCOMER) == 100_000_00  # the basic tier's balance limit, not 180,000
    juma, amina, baraka = (balance(p) for p, _ in SENDERS)
    assert juma == 65_000_00 - 60_000_00 - fee
    assert amina == 65_000_00 - 60_000_00 - fee + 20_000_00
    assert baraka == 65_000_00 - fee
    ledger_holds()
    from tests.escrow_helpers import house
    from ussd_app.ledger import AccountKind

    suspense = house(AccountKind.SUSPENSE)
    assert suspense.credits_pending == 0 and suspense.credits_posted == suspense.debits_posted == 100_000_00

    assert (
        "AKINYI ODHIAMBO +254712000999 registered and received the KES 60,000.00" in sms_to(SENDERS[0][0])[-1]
    )
    assert sms_to(SENDERS[1][0])[-1].endswith(
        "AKINYI ODHIAMBO +254712000999 got KES 40,000.00; KES 20,000.00 was over their balance limit and "
        f"is back with you. Balance {money(amina)}."
    )
    assert sms_to(SENDERS[2][0])[-1].endswith(
        "AKINYI ODHIAMBO +254712000999 cannot receive KES 60,000.00: over their balance limit. It is back "
        f"with you. Balance {money(baraka)}."
    )
    newcomer = sms_to(NEWCOMER)
    assert any("You have received KES 60,000.00 from JUMA OTIENO" in b for b in newcomer)
    assert any(
        "You received KES 40,000.00 from AMINA HASSAN. KES 20,000.00 more was over your limit and went back. "
        "Balance KES 100,000.00." in b
        for b in newcomer
    )
    assert any(
        "BARAKA MWANGI +254712000333 sent you KES 60,000.00, but it is over your balance limit of "
        "KES 100,000.00, so it went back to them" in b
        for b in newcomer
    )
    # What each request says is what happened: statements and code checks read it.
    db.session.expire_all()
    posts = db.session.query(TransferRequest).filter_by(kind="suspense_post").all()
    assert sorted(r.amount for r in posts) == [0, 40_000_00, 60_000_00]
    holds = {h.id: h for h in db.session.query(TransferRequest).filter_by(kind="send_unregistered")}
    states = sorted((r.amount, holds[r.pending_request_id].hold_state) for r in posts)
    assert states == [(0, "voided"), (40_000_00, "posted"), (60_000_00, "posted")]
    db.session.commit()
    # Nothing is left to expire or post twice.
    assert jobs.execute_transfers() == 0
    ledger_holds()


def money(minor: int) -> str:
    from ussd_app.money import format_amount

    return format_amount(minor, "KES")


def _request_of_kind(kind, payer_account, payee_account, amount, pending=None):
    return TransferRequest(
        id=mint_request_id(),
        code="X",
        kind=kind.value,
        debit_account_id=payer_account,
        credit_account_id=payee_account,
        amount=amount,
        fee=0,
        commission=0,
        payee_fee=0,
        pending_request_id=pending,
        status="queued",
        attempts=0,
    )


@pytest.mark.parametrize("kind", sorted(k for k in RequestKind if k.value in kinds.CREDITED_KINDS))
def test_the_balance_limit_applies_to_every_kind_that_credits_a_wallet(customer, second_customer, kind):
    """Kind by kind: a customer KES 1 under their balance limit cannot be credited KES 2 by any
    credited kind (a hold's posting gets KES 1 of it in, the rest goes back)."""

    payer, payee = customer, second_customer
    cap = limits.tier_limits(payee.tier).max_balance
    payee.account.credits_posted = cap - 1_00  # as if earlier postings brought it there
    db.session.flush()
    request = _request_of_kind(kind, payer.account_id, payee.account_id, 2_00, pending="h")
    refusal = limits.check_batch(db.session, [request]).get(request.id)
    assert refusal is not None and refusal.result == limits.Result.BALANCE, kind
    assert refusal.excess == 1_00
    if kind.value in kinds.POSTS_WHAT_FITS:
        assert refusal.fits == 1_00
    db.session.rollback()


def test_a_reversal_paid_back_over_the_senders_balance_limit_returns_only_what_fits(backend_app):
    """A reversal credits the wrong send's sender: KES 200 of room under their limit takes
    KES 200 of the KES 500; the rest stays with the recipient, and both are told."""
    client = backend_app.test_client()
    agent, (juma, amina) = agent_and_senders(SENDERS[:2], each=1_000_00)
    assert send_by_ussd(client, JUMA, "0712000222", "500").startswith("END Sending KES 500.00")
    assert jobs.execute_transfers() == 1
    sent = db.session.query(TransferRequest).filter_by(kind="send").one()
    db.session.commit()
    top_up = 100_000_00 - 200_00 - balance(JUMA)
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=juma.account_id,
        amount=top_up,
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1 and balance(JUMA) == 100_000_00 - 200_00
    assert text_us(client, JUMA, f"REVERSE {sent.code}").startswith("Received: your request to reverse")
    assert jobs.execute_transfers() == 1
    phone = Phone(client, AMINA)
    assert phone.walk("3").startswith("CON Waiting for your approval:\n1. ")
    phone.send("1")
    phone.send("1")
    phone.send("8642")
    assert jobs.execute_transfers() == 1
    assert balance(JUMA) == 100_000_00  # the limit, not KES 300 over it
    assert balance(AMINA) == 1_000_00 + 300_00
    assert sms_to(AMINA)[-1].endswith(
        "JUMA OTIENO +254712000111 got KES 200.00; KES 300.00 was over their balance limit and is back with "
        "you. Balance KES 1,300.00."
    )
    assert "You received KES 200.00 from AMINA HASSAN." in sms_to(JUMA)[-1]
    ledger_holds()


def test_the_new_sms_have_kiswahili_with_the_same_placeholders(app):
    import string

    from ussd_app.i18n import catalog

    sw = catalog("sw", "sms")
    fields = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
    for english in (
        refusals.RETURNED_PAYER_PART,
        refusals.RETURNED_PAYER_ALL,
        refusals.RETURNED_PAYEE_PART,
        refusals.RETURNED_PAYEE_ALL,
        refusals.DEPOSIT_REFUSED,
        *LOCKED_REPLIES.values(),
        "{name} cannot take payments now.",
    ):
        assert sw.get(english), english
        assert fields(sw[english]) == fields(english), english


# -- item 16: limits said at the confirm screen, before the PIN ------------------------------

SMALL = {"LIMITS_BASIC_MAJOR": "1000,2000,5000", "LIMITS_FULL_MAJOR": "3000,6000,20000"}


@pytest.fixture
def small_limits(config, juma, second_customer, merchant):
    """Juma funded (KES 10,000), Wanjiru, the agent Ali, the till and a pay bill; then small
    limits: basic KES 1,000 a transfer, 2,000 a day, 5,000 held."""
    from ussd_app.users import create_user

    create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
    )
    db.session.commit()
    config(**SMALL)


PER_TRANSFER = "Over your limit of KES 1,000.00 per transaction."
CUSTOMER_FLOWS = [
    (["1", "0712000222"], "Send to Wanjiru Kamau\nEnter amount"),
    (["5", "123456"], "Pay Mama Mboga\nEnter amount"),
    (["6", "888880", "ACC1"], "Account ACC1\nEnter amount"),
    (["4", "0700000101"], None),
    (["7", "1"], None),
]


@pytest.mark.parametrize(
    "path,prompt", CUSTOMER_FLOWS, ids=["send", "buy goods", "pay bill", "withdraw", "airtime"]
)
def test_the_per_transfer_limit_is_said_on_the_amount_screen_before_the_pin(
    client, small_limits, path, prompt
):
    phone = Phone(client, JUMA)
    amount_screen = phone.walk(*path)
    prompt = prompt or amount_screen[4:]
    assert amount_screen == f"CON {prompt}"
    assert phone.send("1500") == f"CON {PER_TRANSFER}\n{prompt}"
    confirm = phone.send("100")
    assert confirm.startswith("CON ") and "Over your" not in confirm and "KES 100.00" in confirm
    assert requests_recorded() == 2  # only the funding: nothing was recorded on the way


def test_the_daily_limit_says_what_is_left_today(client, small_limits):
    fee = quote("send", 1_000_00)
    assert send_by_ussd(client, JUMA, "0712000222", "1000").startswith("END Sending KES 1,000.00")
    assert jobs.execute_transfers() == 1
    left = 2_000_00 - 1_000_00 - fee
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222")
    assert phone.send("1000") == (
        f"CON Over your daily limit of KES 2,000.00: {money(left)} left today, fees included.\n"
        "Send to Wanjiru Kamau\nEnter amount"
    )
    # Kiswahili says it in Kiswahili.
    juma = find_by_phone(db.session, JUMA)
    juma.language = "sw"
    db.session.commit()
    phone = Phone(client, JUMA)
    phone.walk("1", "0712000222")
    assert phone.send("1000").startswith(
        f"CON Imezidi kikomo chako cha siku cha KES 2,000.00: zimebaki {money(left)}"
    )


def test_an_agents_deposit_screens_show_nothing_of_the_customers_balance(client, small_limits):
    """Any agent can type any number: the customer's balance room is theirs alone, not even a
    yes/no (a search on amounts would find the figure). The worker refuses a deposit over the
    limit and tells both by SMS."""
    from ussd_app.payments.emoney import issue_float

    issue_float(db.session, find_by_phone(db.session, AGENT), 10_000_00, "BANK-FIXB-1")
    db.session.commit()
    phone = Phone(client, AGENT)
    assert phone.walk("1", "0712000222") == "CON Deposit to Wanjiru Kamau\nEnter amount"
    confirm = phone.send("6000")
    assert confirm.startswith("CON Deposit KES 6,000.00 to Wanjiru Kamau +254712000222?")
    assert not re.search(r"limit|room|balance|KES 5,000", confirm, flags=re.I), confirm
    phone.send("1")
    assert phone.send("1111").startswith("END Depositing KES 6,000.00 to Wanjiru Kamau.")
    assert jobs.execute_transfers() == 1
    assert balance(WANJIRU) == 0
    assert sms_to(WANJIRU)[-1].endswith(
        "Failed: ALI AGENT +254700000101 could not deposit KES 6,000.00: over your balance limit of "
        "KES 5,000.00. Ask for your cash back."
    )
    assert "Failed: deposit of KES 6,000.00 not made." in sms_to(AGENT)[-1]


def test_an_agents_withdrawal_screens_show_nothing_of_the_customers_limits(client, small_limits):
    """The agent learns nothing of the customer's limits or spending; the customer is told her
    own limit before her PIN, in My approvals."""
    phone = Phone(client, AGENT)
    assert phone.walk("9", "0712000111") == "CON Withdraw for Juma Otieno\nEnter amount"
    confirm = phone.send("1500")
    assert confirm.startswith("CON Withdraw KES 1,500.00 for Juma Otieno +254712000111?")
    assert not re.search(r"limit|left|KES 1,000|KES 2,000", confirm, flags=re.I), confirm
    phone.send("1")
    assert phone.send("1111").startswith("END Sent to Juma Otieno to approve in My approvals.")
    juma = Phone(client, JUMA)
    juma.walk("3", "1")
    assert juma.send("1").startswith("CON Over your limit of KES 1,000.00 per transaction.\n")
    assert jobs.execute_transfers() == 0
    assert balance(JUMA) == 10_000_00


def test_a_deposit_the_worker_refuses_is_told_to_the_customer_at_the_counter(backend_app):
    """The confirm screen let KES 4,000 through; another deposit landed before the agent's PIN;
    the worker's check is the final word, and the customer hears it, not only the agent."""
    client = backend_app.test_client()
    agent, (amina,) = agent_and_senders([(AMINA, "Amina Hassan")], each=1_00)
    saved = {key: backend_app.config[key] for key in SMALL}
    backend_app.config.update(SMALL)
    try:
        deposit_refused_after_the_confirm_screen(client, agent, amina)
    finally:
        backend_app.config.update(saved)


def deposit_refused_after_the_confirm_screen(client, agent, amina):
    phone = Phone(client, AGENT)
    phone.walk("1", "0712000222")
    assert phone.send("4000").startswith("CON Deposit KES 4,000.00 to Amina Hassan")
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=amina.account_id,
        amount=2_000_00,
    )
    db.session.commit()
    assert jobs.execute_transfers() == 1
    phone.send("1")
    assert phone.send("1111").startswith("END ")
    assert jobs.execute_transfers() == 1
    assert balance(AMINA) == 2_001_00
    [refused] = [b for b in sms_to(AMINA) if "Failed:" in b]
    assert refused.endswith(
        "Failed: ALI AGENT +254700000101 could not deposit KES 4,000.00: over your balance limit of "
        "KES 5,000.00. Ask for your cash back."
    )
    assert "Failed:" in sms_to(AGENT)[-1]
    ledger_holds()


def test_paying_a_request_over_the_limit_is_refused_before_the_pin(client, small_limits):
    from ussd_app.payments import payment_requests as pr

    wanjiru = find_by_phone(db.session, WANJIRU)
    pr.create(db.session, wanjiru, mint_request_id(), pr.Kind.PERSONAL, [(JUMA, 1_500_00)], "Rent")
    db.session.commit()
    phone = Phone(client, JUMA)
    listing = phone.walk("3")
    assert listing.startswith("CON Waiting for your approval:\n1. ")
    item = phone.send("1")
    assert item.endswith("\n1. Approve\n2. Decline")
    refused = phone.send("1")
    assert refused.startswith(f"CON {PER_TRANSFER}\n") and refused.endswith("\n1. Approve\n2. Decline")
    assert requests_recorded() == 2  # the funding only
    assert phone.send("2") == "CON Enter your PIN to decline"  # declining still works


def test_approving_an_agents_withdrawal_over_the_daily_limit_is_refused_before_the_pin(client, small_limits):
    from ussd_app.payments import agent_withdrawals

    juma, agent = find_by_phone(db.session, JUMA), find_by_phone(db.session, AGENT)
    fee = quote("withdrawal", 1_000_00)
    agent_withdrawals.ask(
        db.session,
        approval_id=mint_request_id(),
        agent=agent,
        customer=juma,
        amount=1_000_00,
        fee=fee,
        commission=0,
    )
    db.session.commit()
    assert send_by_ussd(client, JUMA, "0712000222", "1000").startswith("END Sending")
    assert jobs.execute_transfers() == 1
    left = 2_000_00 - 1_000_00 - quote("send", 1_000_00)
    phone = Phone(client, JUMA)
    phone.walk("3", "1")
    assert phone.send("1").startswith(
        f"CON Over your daily limit of KES 2,000.00: {money(left)} left today, fees included.\n"
    )


def test_a_deposit_racing_the_suspense_post_never_takes_the_newcomer_over_the_limit(backend_app):
    """Two workers at once: one posts a held KES 60,000 to a newcomer, the other deposits
    KES 50,000 to them. Whichever locks the wallet first, the other reads its posting: the
    newcomer ends at KES 60,000 (deposit refused) or KES 100,000 (the post in part)."""
    from tests.escrow_helpers import at_once
    from ussd_app.payments.execute import execute_batch

    client = backend_app.test_client()
    agent, _ = agent_and_senders(SENDERS[:1])
    assert send_by_ussd(client, JUMA, "0712000999", "60000", unregistered=True).startswith("END Sending")
    assert jobs.execute_transfers() == 1
    assert Phone(client, NEWCOMER).walk("1", "Akinyi", "Odhiambo", "2468", "2468").startswith("END Welcome")
    newcomer = find_by_phone(db.session, NEWCOMER)
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=newcomer.account_id,
        amount=50_000_00,
    )
    db.session.commit()
    one = lambda: execute_batch(db.session, 1)  # noqa: E731  # each worker takes one request
    assert sorted(at_once(backend_app, one, one)) == [1, 1]
    juma_after_send = 65_000_00 - 60_000_00 - quote("send", 60_000_00)
    outcomes = {
        60_000_00: juma_after_send,  # the post went first; the deposit was refused
        100_000_00: juma_after_send + 10_000_00,  # the deposit went first; KES 10,000 came back
    }
    assert outcomes[balance(NEWCOMER)] == balance(JUMA)
    ledger_holds()
