"""Three wrong PINs lock the account for a while; an agent or the operator unlocks it."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.helpers import fund
from tests.ussd_helpers import Phone, person
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.users import find_by_phone
from ussd_app.ussd.pin_guard import unlock_pin

PIN = "8642"
LOCKED = "END Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."


@pytest.fixture
def juma(app):
    user = person("+254712000111", "Juma Otieno", pin=PIN)
    person("+254712000222", "Wanjiru Kamau", pin="9753")
    fund(user.account_id, 500_000)
    return user


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
