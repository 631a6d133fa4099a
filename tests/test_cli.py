"""The operator's commands, through Flask's CLI runner."""

from sqlalchemy import update

from tests.helpers import spec
from ussd_app.extensions import db
from ussd_app.ledger import Account, TransferFlags, create_transfers
from ussd_app.users import find_by_phone


def test_accounts_create_normalises_the_phone_and_refuses_duplicates(runner):
    result = runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0712 345 678",
            "--name",
            "Amina Hassan",
            "--role",
            "customer",
            "--pin",
            "9081",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "+254712345678" in result.output
    assert "9081" not in result.output  # never echo a PIN
    user = find_by_phone(db.session, "+254712345678")
    assert user.name == "Amina Hassan" and user.pin_hash and "9081" not in user.pin_hash

    again = runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "+254712345678",
            "--name",
            "X Y",
            "--role",
            "customer",
            "--pin",
            "1111",
        ]
    )
    assert again.exit_code != 0 and "already registered" in again.output


def test_accounts_create_rejects_bad_input_clearly(runner):
    bad_phone = runner.invoke(
        args=["accounts", "create", "--phone", "12", "--name", "A B", "--role", "customer", "--pin", "1234"]
    )
    assert bad_phone.exit_code != 0 and "not a valid phone number" in bad_phone.output
    bad_pin = runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0712345678",
            "--name",
            "A B",
            "--role",
            "customer",
            "--pin",
            "12a4",
        ]
    )
    assert bad_pin.exit_code != 0 and "4 digits" in bad_pin.output
    till_for_customer = runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0712345678",
            "--name",
            "A B",
            "--role",
            "customer",
            "--pin",
            "1234",
            "--till",
            "12345",
        ]
    )
    assert till_for_customer.exit_code != 0 and "only merchants" in till_for_customer.output


def test_float_issue_records_the_deposit_and_the_check_balances(runner):
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0700000001",
            "--name",
            "Ali Agent",
            "--role",
            "agent",
            "--pin",
            "1111",
        ]
    )
    result = runner.invoke(
        args=["float", "issue", "--phone", "+254700000001", "--amount", "50000", "--reference", "BANK-1"]
    )
    assert result.exit_code == 0, result.output
    assert "KES 50,000.00" in result.output
    check = runner.invoke(args=["ledger", "check"])
    assert check.exit_code == 0, check.output
    assert "e-money 5000000, trust 5000000, deposits 5000000" in check.output


def test_float_issue_refuses_non_agents_and_bad_amounts(runner):
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0712345678",
            "--name",
            "Amina Hassan",
            "--role",
            "customer",
            "--pin",
            "1234",
        ]
    )
    assert (
        "not an agent"
        in runner.invoke(args=["float", "issue", "--phone", "0712345678", "--amount", "100"]).output
    )
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0700000001",
            "--name",
            "Ali Agent",
            "--role",
            "agent",
            "--pin",
            "1111",
        ]
    )
    for amount in ("-5", "0", "12.5", "lots"):
        result = runner.invoke(args=["float", "issue", "--phone", "0700000001", "--amount", amount])
        assert result.exit_code != 0, amount


def test_ledger_check_fails_when_a_balance_was_edited_behind_the_ledgers_back(runner):
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0700000001",
            "--name",
            "Ali Agent",
            "--role",
            "agent",
            "--pin",
            "1111",
        ]
    )
    runner.invoke(args=["float", "issue", "--phone", "0700000001", "--amount", "1000"])
    agent = find_by_phone(db.session, "+254700000001")
    db.session.execute(
        update(Account)
        .where(Account.id == agent.account_id)
        .values(credits_posted=Account.credits_posted + 1)
    )
    db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1
    assert "FAIL posted debits = posted credits" in result.output
    assert "FAIL replaying transfers reproduces every balance" in result.output


def test_ledger_check_counts_open_holds(runner):
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0700000001",
            "--name",
            "Ali Agent",
            "--role",
            "agent",
            "--pin",
            "1111",
        ]
    )
    runner.invoke(
        args=[
            "accounts",
            "create",
            "--phone",
            "0712345678",
            "--name",
            "Amina Hassan",
            "--role",
            "customer",
            "--pin",
            "1234",
        ]
    )
    runner.invoke(args=["float", "issue", "--phone", "0700000001", "--amount", "1000"])
    agent, amina = find_by_phone(db.session, "+254700000001"), find_by_phone(db.session, "+254712345678")
    create_transfers(
        db.session, [spec("hold", agent.account_id, amina.account_id, 500, flags=TransferFlags.PENDING)]
    )
    db.session.commit()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert "pending debits = pending credits: 500 = 500" in result.output
