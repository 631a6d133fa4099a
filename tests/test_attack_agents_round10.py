"""Round 10's outside attack on agents, registration, PINs and SMS: what it found, held closed.

Easy PINs: a phone thief gets three tries before the lock, and 1234, 1111 or 0000 (or the last
four digits of the phone's own number, printed on the SIM's pack and read by anyone who has the
phone) is what people choose most; every screen where a person chooses a PIN refuses them.

A withdrawal an agent asked for, approved without the money for it: the customer's screen said
"Approved." (the agent at the counter is shown that screen) while nothing was withdrawn.

A withdrawal the worker refused (a limit, or the ledger) told only the customer: the agent, told
to pay out cash only after the SMS, waited at the counter for one that never came.

A send to a number not on Tuma, checked by its sender's SMS, was "to TUMA" (the suspense account
has no holder), even once posted to the newly registered customer: it names that number now.

An agent's or merchant's PIN locked by wrong tries was told "Ask an agent to unlock it" (screen
and SMS), but an agent unlocks only customers: the business went to an agent who could not.

A deposit the ledger refused (the agent's float short: two of his sessions at the PIN at once)
told only the agent; the customer, who had handed over her cash, heard nothing.
"""

import pytest

from tests.escrow_helpers import sms_to
from tests.ussd_helpers import Phone, screen
from ussd_app import pins
from ussd_app.extensions import db
from ussd_app.payments.emoney import issue_float
from ussd_app.users import find_by_phone
from worker import jobs

NUMBER = "0712000444"
E164 = "+254712000444"
EASY = ("1234", "0000", "1111", "9876", "0444")  # the last: NUMBER's last four digits


@pytest.mark.parametrize("easy", EASY)
def test_registration_refuses_an_easy_pin(client, easy):
    phone = Phone(client, NUMBER)
    phone.walk("1", "Amina", "Hassan")
    body = phone.send(easy)
    assert screen(body) == "Choose a PIN that is not easy to guess.\nChoose a 4-digit PIN", body
    assert screen(phone.send("8642")) == "Enter the PIN again to confirm"
    assert phone.send("8642").startswith("END Welcome to Tuma")
    assert pins.verify_pin(find_by_phone(db.session, E164).pin_hash, "8642")


def test_registration_in_kiswahili_refuses_an_easy_pin_in_kiswahili(client):
    phone = Phone(client, NUMBER)
    phone.walk("2", "Baraka", "Mwangi")
    body = phone.send("1234")
    assert screen(body) == "Chagua PIN isiyo rahisi kukisiwa.\nChagua PIN ya tarakimu 4", body


@pytest.mark.parametrize("easy", EASY)
def test_changing_the_pin_refuses_an_easy_one(client, customer, easy):
    # Juma's number is +254712000111: his own last four are 0111.
    easy = "0111" if easy == "0444" else easy
    phone = Phone(client, "0712000111")
    phone.walk("2", "3", "8642")
    body = phone.send(easy)
    assert screen(body) == "Choose a PIN that is not easy to guess.\nEnter your new 4-digit PIN", body
    phone.send("1357")
    assert phone.send("1357") == "END Your PIN has been changed."
    user = find_by_phone(db.session, "+254712000111")
    db.session.refresh(user)
    assert pins.verify_pin(user.pin_hash, "1357")


def test_a_customer_an_agent_registered_cannot_choose_an_easy_pin(client, agent):
    phone = Phone(client, "0700000101")
    phone.walk("5", NUMBER, "Akinyi", "Odhiambo", "12345678", "1", "1111")
    customer = Phone(client, NUMBER)
    assert customer.dial() == "CON Welcome to Tuma, Akinyi. Choose a 4-digit PIN"
    body = customer.send("0444")
    assert screen(body) == (
        "Choose a PIN that is not easy to guess.\nWelcome to Tuma, Akinyi. Choose a 4-digit PIN"
    )
    assert customer.send("2468") == "CON Enter the PIN again to confirm"
    assert customer.send("2468") == "END Your PIN is set. Dial again to use Tuma."


def test_approving_an_agents_withdrawal_without_the_money_says_so_on_screen(client, customer, agent):
    issue_float(db.session, agent, 100_000_00, "BANK-1")
    db.session.commit()
    Phone(client, "0700000101").walk("1", "0712000111", "500", "1", "1111")  # KES 500 cashed in
    assert jobs.execute_transfers() == 1
    asked = Phone(client, "0700000101").walk("9", "0712000111", "1000", "1", "1111")
    assert asked.startswith("END Sent to Juma Otieno to approve")
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "1")
    assert phone.send("8642") == "END Not enough money to pay KES 1,029.00. Your balance is KES 500.00."
    # Recorded as failed and both told, as before: the agent must not pay out.
    assert jobs.execute_transfers() == 0
    assert sms_to("+254700000101")[-1].endswith(
        "does not have enough money to withdraw KES 1,000.00. Do not pay out any cash."
    )
    assert sms_to("+254712000111")[-1].startswith("Not enough money to withdraw KES 1,000.00")
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."


def _withdrawal(customer, agent, amount: int) -> None:
    """A withdrawal recorded as the menus record one after the PIN (two sessions at the PIN at
    once each pass the spendable check; a tier lowered after the PIN is read by the worker)."""
    from ussd_app.payments.models import RequestKind
    from ussd_app.payments.submit import mint_request_id, record_request
    from ussd_app.tariffs import commission, quote

    kind = RequestKind.WITHDRAWAL.value
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=kind,
        debit_account_id=customer.account_id,
        credit_account_id=agent.account_id,
        amount=amount,
        fee=quote(kind, amount),
        commission=commission(kind, amount),
    )
    db.session.commit()


@pytest.mark.parametrize("refused_by", ["ledger", "limit"])
def test_the_agent_at_the_counter_hears_of_a_withdrawal_refused_by_the_worker(
    client, customer, agent, refused_by
):
    issue_float(db.session, agent, 100_000_00, "BANK-1")
    db.session.commit()
    Phone(client, "0700000101").walk("1", "0712000111", "5000", "1", "1111")
    assert jobs.execute_transfers() == 1
    before = len(sms_to("+254700000101"))
    if refused_by == "ledger":
        _withdrawal(customer, agent, 3_000_00)
        _withdrawal(customer, agent, 3_000_00)  # the second is more than what is left
    else:
        from ussd_app import limits

        _withdrawal(customer, agent, limits.tier_limits("basic").per_transfer + 100_00)
    jobs.execute_transfers()
    to_agent = sms_to("+254700000101")[before:]
    customer_failed = [b for b in sms_to("+254712000111") if "Failed: withdrawal of" in b]
    assert len(customer_failed) == 1, sms_to("+254712000111")
    code = customer_failed[0].split()[0]
    assert [b for b in to_agent if b.startswith(code)] == [
        f"{code} Withdrawal of {customer_failed[0].split('withdrawal of ')[1].split(' not')[0]} "
        "by JUMA OTIENO +254712000111 was not made. Do not pay out any cash."
    ], to_agent


def test_checking_a_send_to_a_number_not_on_tuma_names_that_number_not_tuma(client, customer, agent):
    import itertools

    issue_float(db.session, agent, 100_000_00, "BANK-1")
    db.session.commit()
    Phone(client, "0700000101").walk("1", "0712000111", "5000", "1", "1111")
    assert jobs.execute_transfers() == 1
    sent = Phone(client, "0712000111").walk("1", "0712000999", "1", "500", "1", "8642")
    assert sent.startswith("END Sending KES 500.00 to +254712000999")
    assert jobs.execute_transfers() == 1
    receipt = sms_to("+254712000111")[-1]
    code = receipt.split()[0]
    assert "KES 500.00 sent to +254712000999" in receipt
    ids = itertools.count(1)

    def check() -> str:
        fields = {"from": "+254712000111", "to": "22384", "text": code, "id": f"at-r10-{next(ids)}"}
        assert client.post("/sms/inbound", data=fields).status_code == 200
        return sms_to("+254712000111")[-1]

    assert check().startswith(f"{code} is genuine: KES 500.00 to +254712000999 on ")
    Phone(client, "0712000999").walk("1", "Neema", "Wafula", "2468", "2468")
    jobs.execute_transfers()
    reply = check()
    assert reply.startswith(f"{code} is genuine: KES 500.00 to +254712000999 on "), reply
    assert reply.endswith("Status: completed.")


@pytest.mark.parametrize("who", ["agent", "merchant"])
def test_a_business_whose_pin_locks_is_not_sent_to_an_agent(client, agent, merchant, who):
    number, e164 = {"agent": ("0700000101", "+254700000101"), "merchant": ("0700000002", "+254700000002")}[
        who
    ]
    phone = Phone(client, number)
    phone.walk("2", "0001", "0002")  # Float balance / Statement: a PIN screen
    body = phone.send("0003")
    assert body == "END Your PIN is locked after too many wrong tries. Call customer care to unlock it."
    assert sms_to(e164)[-1].endswith(
        "wrong tries. Call customer care to unlock it. Not you? Call customer care."
    )
    assert Phone(client, number).dial() == body
    # Indeed no agent can: the unlock menu takes only customers.
    if who == "merchant":
        assert (
            Phone(client, "0700000101")
            .walk("6", number)
            .startswith("CON +254700000002 is not a customer account.")
        )


def test_a_customer_whose_pin_locks_is_still_sent_to_an_agent(client, customer):
    phone = Phone(client, "0712000111")
    phone.walk("2", "1", "0001", "0002")
    assert phone.send("0003").endswith("Ask an agent or customer care to unlock it.")
    assert "Ask an agent to unlock it." in sms_to("+254712000111")[-1]


def test_the_customer_at_the_counter_hears_of_a_deposit_the_ledger_refused(client, customer, agent):
    from ussd_app.payments.models import RequestKind
    from ussd_app.payments.submit import mint_request_id, record_request

    issue_float(db.session, agent, 8_000_00, "BANK-1")
    for _ in range(2):  # two of the agent's sessions at the PIN at once: the second is short
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.DEPOSIT.value,
            debit_account_id=agent.account_id,
            credit_account_id=customer.account_id,
            amount=5_000_00,
        )
    db.session.commit()
    jobs.execute_transfers()
    failed = [b for b in sms_to("+254700000101") if "Failed: deposit of" in b]
    assert len(failed) == 1
    code = failed[0].split()[0]
    assert sms_to("+254712000111")[-1] == (
        f"{code} Failed: ALI AGENT +254700000101 could not deposit KES 5,000.00. Ask for your cash back."
    )
