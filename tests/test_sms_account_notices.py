"""SMS people get about their own account (issue 15 item 18): when their PIN locks, is unlocked
or changed (someone else may be at it), and when they register (saying if money sent to them
before they registered is waiting in suspense)."""

from tests.escrow_helpers import cash_in, sms_to
from tests.ussd_helpers import Phone
from ussd_app.extensions import db
from ussd_app.payments.holds import suspense_account_id
from ussd_app.payments.models import RequestKind
from ussd_app.payments.submit import mint_request_id, record_request
from worker import jobs

JUMA, PIN = "+254712000111", "8642"
NEW = "+254712000777"


def test_a_pin_lock_and_its_unlock_are_told_to_the_holder(client, runner, customer):
    Phone(client, "0712000111").walk("2", "1", "0000", "0000")
    assert sms_to(JUMA) == []  # two wrong tries: nothing yet
    assert Phone(client, "0712000111").walk("2", "1", "0000").startswith("END Your PIN is locked")
    [locked] = sms_to(JUMA)
    assert locked.startswith("Tuma: your PIN was locked on ")
    assert locked.endswith(" after 3 wrong tries. Ask an agent to unlock it. Not you? Call customer care.")
    Phone(client, "0712000111").walk("2", "1", PIN)  # while locked: no second lock SMS
    assert len(sms_to(JUMA)) == 1

    result = runner.invoke(args=["accounts", "unlock", "--phone", "0712000111"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    assert sms_to(JUMA)[-1].startswith("Tuma: your PIN was unlocked on ")
    assert sms_to(JUMA)[-1].endswith("Not you? Call customer care now.")


def test_a_pin_change_is_told_to_the_holder_in_their_language(client, customer):
    customer.language = "sw"
    db.session.commit()
    phone = Phone(client, "0712000111")
    phone.walk("2", "3", PIN, "1357", "1357")
    [changed] = sms_to(JUMA)
    assert changed.startswith("Tuma: PIN yako imebadilishwa tarehe ")
    assert changed.endswith("Si wewe? Piga huduma kwa wateja sasa.")


def test_registering_gets_a_welcome_sms(app, client):
    phone = Phone(client, "0712000777")
    phone.walk("1", "Amina", "Hassan", "2468")
    assert phone.send("2468").startswith("END Welcome to Tuma")
    assert sms_to(NEW) == [
        "Welcome to Tuma, Amina. Your account is ready. "
        "Dial *384*7# to send money, pay and check your balance."
    ]


def test_registering_says_money_is_waiting_in_suspense(client, customer, agent):
    juma = cash_in(customer, agent)
    for amount in (200_00, 50_00):
        record_request(
            db.session,
            request_id=mint_request_id(),
            kind=RequestKind.SEND_UNREGISTERED.value,
            debit_account_id=juma,
            credit_account_id=suspense_account_id(db.session),
            amount=amount,
            reference=NEW,
            hold_seconds=7 * 86_400,
        )
    db.session.commit()
    assert jobs.execute_transfers() == 2
    invites = sms_to(NEW)
    phone = Phone(client, "0712000777")
    phone.walk("1", "Amina", "Hassan", "2468")
    assert phone.send("2468").startswith("END Welcome to Tuma")
    welcome, waiting = sms_to(NEW)[len(invites) :]
    assert welcome.startswith("Welcome to Tuma, Amina.")
    assert waiting == (
        "Tuma: KES 250.00 sent to you before you registered is being paid into your account now. "
        "You will get an SMS for each payment."
    )
