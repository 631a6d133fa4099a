"""Three wrong PINs lock the account for a while; an agent or the operator unlocks it.
PIN guessing is stopped: one account guessed over many sessions (one after another or all
at once) gets PIN_MAX_ATTEMPTS tries and then nothing, not even for the right PIN; a sweep of
one PIN over many numbers is refused without the webhook secret and slowed by the per-phone
rate limit; and no guess ever moves money or shows a balance."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import Phone, person
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import User, find_by_phone
from ussd_app.ussd.pin_guard import unlock_pin

PIN = "8642"
LOCKED = "END Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."


@pytest.fixture
def juma(customer, second_customer):
    """The cast's customer with KES 5,000, and someone to send to."""
    fund(customer.account_id, 500_000)
    return customer


def at_send_pin(client) -> Phone:
    phone = Phone(client, "0712000111")
    phone.walk("1", "0712000222", "1000", "1")
    return phone


def user():
    found = find_by_phone(db.session, "+254712000111")
    db.session.refresh(found)
    return found


def test_three_wrong_pins_lock_the_account_for_a_day_and_send_nothing(app, client, juma):
    phone = at_send_pin(client)
    assert phone.send("1111").startswith("CON Wrong PIN. 2 tries left.")
    assert phone.send("2222").startswith("CON Wrong PIN. 1 try left.")
    assert phone.send("3333") == LOCKED
    locked_until = user().locked_until
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=app.config["PIN_LOCK_SECONDS"])
    assert abs((locked_until - expected).total_seconds()) < 60
    assert app.config["PIN_LOCK_SECONDS"] == 24 * 3600
    assert db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one() == 0
    # Dialling again: the locked account is told so at once, even with the right PIN in hand.
    assert Phone(client, "0712000111").dial() == LOCKED


def test_wrong_pins_count_across_flows_and_sessions(client, juma):
    Phone(client, "0712000111").walk("2", "1", "1111")
    Phone(client, "0712000111").walk("2", "2", "1111")
    assert Phone(client, "0712000111").walk("2", "1", "1111") == LOCKED


def test_a_right_pin_resets_the_count(client, juma):
    Phone(client, "0712000111").walk("2", "1", "1111")
    Phone(client, "0712000111").walk("2", "1", "2222")
    assert Phone(client, "0712000111").walk("2", "1", PIN).startswith("END Your balance")
    assert user().pin_failures == 0
    assert Phone(client, "0712000111").walk("2", "1", "1111").startswith("CON Wrong PIN. 2 tries left.")


def test_even_the_right_pin_is_refused_while_locked(client, juma):
    phone = at_send_pin(client)
    phone.send("1111")
    other = Phone(client, "0712000111")  # a second session already past the menu
    other.walk("2", "1")
    phone.send("2222")
    phone.send("3333")
    assert other.send(PIN) == LOCKED


def test_unlock_pin_lets_the_customer_in_again(client, juma):
    phone = at_send_pin(client)
    for wrong in ("1111", "2222", "3333"):
        phone.send(wrong)
    unlock_pin(db.session, user())
    db.session.commit()
    assert user().locked_until is None
    assert Phone(client, "0712000111").walk("2", "1", PIN).startswith("END Your balance")


def test_the_lock_runs_out_by_itself(client, juma):
    locked = user()
    locked.pin_failures, locked.locked_until = (
        3,
        datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1),
    )
    db.session.commit()
    assert Phone(client, "0712000111").walk("2", "1", "1111").startswith("CON Wrong PIN. 2 tries left.")


def test_unlock_cli(runner, client, juma):
    locked = user()
    locked.pin_failures, locked.locked_until = 3, datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=5)
    db.session.commit()
    result = runner.invoke(args=["accounts", "unlock", "--phone", "0712000111"])
    assert result.exit_code == 0, result.output
    assert "unlocked Juma Otieno +254712000111" in result.output
    assert user().locked_until is None and user().pin_failures == 0
    assert runner.invoke(args=["accounts", "unlock", "--phone", "0712999999"]).exit_code != 0
    assert runner.invoke(args=["accounts", "unlock", "--phone", "nonsense"]).exit_code != 0


GUESSES = ["0000", "1111", "1234", "2580", "9999", "1212", "4321", "0852", "5555", "1122"]


def state(phone="+254712000111") -> tuple[int, bool]:
    user = find_by_phone(db.session, phone)
    db.session.refresh(user)
    result = (user.pin_failures, user.locked_until is not None)
    db.session.commit()
    return result


def nothing_moved() -> bool:
    count = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    db.session.commit()
    return count == 0


def test_guessing_over_many_sessions_gets_three_tries_then_even_the_right_pin_is_refused(app, client, juma):
    answers = []
    for guess in GUESSES[:3] + [PIN] + GUESSES[3:]:
        # A new session for every guess, alternating the send and balance flows.
        path = ("1", "0712000222", "1000", "1") if len(answers) % 2 else ("2", "1")
        answers.append(Phone(client, "0712000111").walk(*path, guess))
    assert answers[0].startswith("CON Wrong PIN. 2 tries left.")
    assert answers[1].startswith("CON Wrong PIN. 1 try left.")
    assert answers[2:] == [LOCKED] * (len(answers) - 2)  # the right PIN too
    assert not any("Your balance" in a for a in answers)
    assert state() == (app.config["PIN_MAX_ATTEMPTS"], True)
    assert nothing_moved()


def test_guesses_sent_all_at_once_get_no_more_than_the_allowed_tries(app, juma):
    n = 8
    phones = []
    for _ in range(n):  # every session waiting at the PIN screen
        phone = Phone(app.test_client(), "0712000111")
        phone.walk("2", "1")
        phones.append(phone)
    db.session.commit()  # SQLite: this session must not hold the write lock meanwhile
    barrier = threading.Barrier(n)
    answers: list[str] = [""] * n

    def guess(i):
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                answers[i] = phones[i].send(GUESSES[i])
            finally:
                db.session.remove()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    wrong = [a for a in answers if a.startswith("CON Wrong PIN")]
    assert len(wrong) == app.config["PIN_MAX_ATTEMPTS"] - 1, answers
    assert answers.count(LOCKED) == n - len(wrong), answers
    assert state() == (app.config["PIN_MAX_ATTEMPTS"], True)
    assert nothing_moved()


def test_a_sweep_of_one_pin_over_many_numbers_is_refused_without_the_secret(client, config, juma):
    config(WEBHOOK_SECRET="a-long-webhook-secret")
    victims = [f"+2547120010{i:02d}" for i in range(8)]
    for i, number in enumerate(victims):
        person(number, f"Victim {i}", pin="4455")
    for number in victims:
        phone = Phone(client, number)
        for text in ("", "2", "2*1", "2*1*1234"):
            response = client.post(
                "/ussd",
                data={
                    "sessionId": f"forged-{number}",
                    "phoneNumber": number,
                    "serviceCode": "*384*7#",
                    "text": text,
                },
            )
            assert response.status_code == 403, (number, text)
        assert phone  # no session was ever started
    failures = db.session.execute(select(func.sum(User.pin_failures))).scalar_one()
    assert not failures


def test_a_phone_hammering_pins_is_slowed_by_the_rate_limit_and_locked_by_the_lockout(client, config, juma):
    config(WEBHOOK_RATE_PER_MINUTE=6)
    answers = []
    for guess in GUESSES:
        answers.append(Phone(client, "0712000111").walk("2", "1", guess))
    assert "END Too many requests. Please wait a minute and dial again." in answers
    failures, locked = state()
    assert failures <= 3  # at most the allowed tries were ever checked
    assert not any("Your balance" in a for a in answers)
    assert nothing_moved()
