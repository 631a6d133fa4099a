"""The PIN hop's balance check and record in one statement on PostgreSQL
(``submit.record_covered_row``: the spendable balance read in the insert's own snapshot, the row
written only when it covers the order): what it writes and answers, on both databases, and
what many PIN hops of one caller at once can spend."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

from tests.test_attack_pin_hop import (
    PIN,
    SENDING,
    SHORT,
    all_at_once,
    at_send_pin,
    juma,
    posted_total,
    statuses,
)
from tests.ussd_helpers import available
from ussd_app.extensions import db
from ussd_app.money import format_amount
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import (
    ConflictingRequest,
    mint_request_id,
    record_covered_row,
    record_request_row,
)
from worker.jobs import execute_transfers

__all__ = ["juma"]  # the fixture, taken from the PIN-hop attack tests

BALANCE = 500_000  # juma's KES 5,000


def count() -> int:
    found = db.session.execute(select(func.count()).select_from(TransferRequest)).scalar_one()
    db.session.commit()
    return found


def order(juma, second_customer, **more) -> dict:
    return (
        dict(
            request_id=mint_request_id(),
            kind="send",
            debit_account_id=juma.account_id,
            credit_account_id=second_customer.account_id,
            amount=4_000_00,
            fee=57_00,
        )
        | more
    )


def test_a_short_balance_writes_nothing_and_says_what_is_spendable(app, juma, second_customer):
    wanted = order(juma, second_customer, amount=5_000_00)
    assert record_covered_row(db.session, juma.account_id, 5_057_00, **wanted) == (None, BALANCE)
    db.session.commit()
    assert count() == 0


def test_a_covered_order_is_the_row_the_plain_record_writes_and_a_replay_writes_nothing(
    app, juma, second_customer
):
    covered, plain = order(juma, second_customer), order(juma, second_customer, amount=100_00)
    assert record_covered_row(db.session, juma.account_id, 4_057_00, **covered) == (True, BALANCE)
    assert record_request_row(db.session, **plain) is True
    db.session.commit()
    # Spendable now: the balance less the plain order (amount and fee), still queued (the covered one is the
    # replay's own, left out).
    left = BALANCE - 100_00 - 57_00
    assert record_covered_row(db.session, juma.account_id, 4_057_00, **covered) == (False, left)
    with pytest.raises(ConflictingRequest):  # another order under the same id
        record_covered_row(db.session, juma.account_id, 4_057_00, **{**covered, "amount": 3_000_00})
    db.session.rollback()
    # Short now (as if the money had gone): nothing written, the caller asks whether it is a replay.
    assert record_covered_row(db.session, juma.account_id, BALANCE + 1, **covered) == (None, left)
    db.session.commit()
    rows = {r.id: r for r in db.session.execute(select(TransferRequest)).scalars()}
    db.session.commit()
    assert set(rows) == {covered["request_id"], plain["request_id"]}
    a, b = rows[covered["request_id"]], rows[plain["request_id"]]
    own = ("id", "code", "amount", "created_at")
    columns = [c.name for c in TransferRequest.__table__.c if c.name not in own]
    assert [getattr(a, c) for c in columns] == [getattr(b, c) for c in columns]
    assert (a.amount, a.status, a.attempts, a.hold_state) == (4_000_00, "queued", 0, None)
    assert a.payee_named
    assert a.code != b.code and a.created_at is not None


def test_a_value_too_long_for_its_column_is_refused_not_cut(app, juma, second_customer):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps any length")
    with pytest.raises(DataError):
        record_covered_row(db.session, juma.account_id, 1, **order(juma, second_customer, reference="9" * 65))
    db.session.rollback()
    assert count() == 0


def test_three_pin_hops_of_one_caller_at_once_never_spend_more_than_the_balance(app, juma):
    """Juma, KES 5,000, at the PIN screen in three sessions (three spellings of his number),
    each sending KES 4,000: all three type the PIN at once. One hop answers "Sending", the two
    others "Not enough money" (the first's request, queued, counts against the balance);
    the worker posts it; the wallet never goes below zero."""
    phones = [at_send_pin(app, number=n) for n in ("0712000111", "+254712000111", "254712000111")]
    answers = all_at_once(app, phones, [PIN] * 3)
    assert [a[: len(SENDING)] for a in answers].count(SENDING) == 1, answers
    assert sum(a.startswith(SHORT) for a in answers) == 2, answers
    assert count() == 1
    execute_transfers()
    assert statuses() == ["accepted"]
    assert available(juma.account_id) == BALANCE - posted_total() >= 0
    # After the post, the next PIN hop of his is told the balance, and records nothing.
    recorded = count()
    assert at_send_pin(app).send(PIN).startswith(SHORT)
    assert count() == recorded


def test_a_second_send_typed_before_the_worker_took_the_first_is_told_what_is_left(app, juma):
    """Juma, KES 5,000, sends KES 4,000 and, before a worker has taken it, KES 2,000 in another
    session: the second is told "Not enough money" with what is left (5,000 - 4,000 - fee),
    recorded nothing, and never becomes an SMS refusal after a "Sending". What the first
    leaves is spendable: KES 900 goes, before and after the worker posts the first."""
    assert at_send_pin(app).send(PIN).startswith(SENDING)
    left = BALANCE - posted_or_queued()
    second = at_send_pin(app, amount="2000").send(PIN)
    assert second.startswith("END Not enough money to send KES 2,000.00"), second
    assert f"Your balance is {format_amount(left)}." in second, second
    assert count() == 1
    assert at_send_pin(app, amount="900").send(PIN).startswith("END Sending KES 900.00")
    execute_transfers()
    assert statuses() == ["accepted", "accepted"]
    assert available(juma.account_id) == BALANCE - posted_total() >= 0
    assert at_send_pin(app, amount="20").send(PIN).startswith("END Sending KES 20.00")  # of KES 30 left


def posted_or_queued() -> int:
    """What the recorded requests will take from the payer: amount plus fee."""
    rows = db.session.execute(select(TransferRequest.amount, TransferRequest.fee)).all()
    db.session.commit()
    return sum(a + f for a, f in rows)
