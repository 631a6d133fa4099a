"""The ledger's rules, one behaviour per test, on SQLite and (with DATABASE_URL) PostgreSQL."""

import pytest
from sqlalchemy import select

from tests.helpers import fund, spec, wallets
from ussd_app.extensions import db
from ussd_app.ledger import Account, RejectedTransfer, Transfer, create_transfers
from ussd_app.ledger import TransferFlags as F
from ussd_app.ledger import TransferResult as R
from ussd_app.ledger.check import check
from ussd_app.ledger.expiry import expire_holds


def balances(account_id):
    a = db.session.get(Account, account_id, populate_existing=True)
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def run(*specs, now=None):
    results = create_transfers(db.session, list(specs), now=now)
    db.session.commit()
    return results


def assert_invariants():
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


@pytest.fixture
def two(backend_app):
    a, b = wallets(2)
    fund(a, 10_000)
    return a, b


def test_posted_transfer_moves_money(two):
    a, b = two
    assert run(spec("t1", a, b, 2_500)) == [R.OK]
    assert balances(a) == (0, 2_500, 0, 10_000)
    assert balances(b) == (0, 0, 0, 2_500)
    assert_invariants()


def test_insufficient_funds_is_refused_and_counts_pending_debits(two):
    a, b = two
    assert run(spec("h1", a, b, 9_000, flags=F.PENDING)) == [R.OK]
    assert run(spec("t2", a, b, 1_001)) == [R.EXCEEDS_CREDITS]
    assert run(spec("t3", a, b, 1_000)) == [R.OK]
    assert balances(a) == (9_000, 1_000, 0, 10_000)
    assert_invariants()


def test_same_id_same_fields_returns_exists_and_moves_nothing_twice(two):
    a, b = two
    assert run(spec("t1", a, b, 100)) == [R.OK]
    assert run(spec("t1", a, b, 100)) == [R.EXISTS]
    assert balances(b) == (0, 0, 0, 100)


def test_same_id_different_fields_is_rejected(two):
    a, b = two
    run(spec("t1", a, b, 100))
    assert run(spec("t1", a, b, 101)) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert balances(b) == (0, 0, 0, 100)


def test_failed_id_stays_failed_even_when_funds_arrive(two):
    a, b = two
    assert run(spec("big", a, b, 50_000)) == [R.EXCEEDS_CREDITS]
    fund(a, 100_000, "more")
    assert run(spec("big", a, b, 50_000)) == [R.EXCEEDS_CREDITS]
    assert balances(b) == (0, 0, 0, 0)
    assert db.session.get(RejectedTransfer, "big").result == "exceeds_credits"


def test_linked_chain_fails_together(two):
    a, b = two
    c = wallets(1)[0]
    results = run(spec("p", a, b, 6_000, flags=F.LINKED), spec("fee", a, c, 5_000))
    assert results == [R.LINKED_EVENT_FAILED, R.EXCEEDS_CREDITS]
    assert balances(a) == (0, 0, 0, 10_000)
    assert balances(b) == (0, 0, 0, 0)
    assert run(spec("p2", a, b, 6_000, flags=F.LINKED), spec("fee2", a, c, 4_000)) == [R.OK, R.OK]
    assert balances(a) == (0, 10_000, 0, 10_000)
    assert_invariants()


def test_open_chain_at_end_of_batch_fails(two):
    a, b = two
    assert run(spec("o", a, b, 1, flags=F.LINKED)) == [R.LINKED_EVENT_CHAIN_OPEN]
    assert balances(b) == (0, 0, 0, 0)


def test_partial_post_releases_the_rest(two):
    a, b = two
    run(spec("h", a, b, 4_000, flags=F.PENDING, timeout=60))
    assert balances(a) == (4_000, 0, 0, 10_000)
    assert run(spec("p", None, None, 2_500, pending_id="h", flags=F.POST_PENDING_TRANSFER)) == [R.OK]
    assert balances(a) == (0, 2_500, 0, 10_000)
    assert balances(b) == (0, 0, 0, 2_500)
    assert_invariants()


def test_void_releases_everything_and_resolves_once(two):
    a, b = two
    run(spec("h", a, b, 4_000, flags=F.PENDING))
    assert run(spec("v", a, b, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER)) == [R.OK]
    assert run(spec("p", a, b, 4_000, pending_id="h", flags=F.POST_PENDING_TRANSFER)) == [
        R.PENDING_TRANSFER_ALREADY_VOIDED
    ]
    assert run(spec("v2", a, b, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER)) == [
        R.PENDING_TRANSFER_ALREADY_VOIDED
    ]
    assert balances(a) == (0, 0, 0, 10_000)
    assert_invariants()


def test_post_more_than_held_is_refused(two):
    a, b = two
    run(spec("h", a, b, 1_000, flags=F.PENDING))
    assert run(spec("p", a, b, 1_001, pending_id="h", flags=F.POST_PENDING_TRANSFER)) == [
        R.EXCEEDS_PENDING_TRANSFER_AMOUNT
    ]


def test_database_refuses_a_second_resolution(two):
    """Even if application checks were bypassed, the unique index stops a double resolution."""
    from sqlalchemy.exc import IntegrityError

    a, b = two
    run(
        spec("h", a, b, 1_000, flags=F.PENDING),
        spec("v", a, b, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER),
    )
    row = db.session.get(Transfer, "v")
    db.session.add(
        Transfer(
            id="evil",
            debit_account_id=a,
            credit_account_id=b,
            amount=1_000,
            pending_id="h",
            code="x",
            flags=int(F.POST_PENDING_TRANSFER),
            timeout=0,
            created_at=row.created_at,
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_expired_hold_cannot_be_posted_and_is_voided_once(two):
    a, b = two
    [r] = run(spec("h", a, b, 3_000, flags=F.PENDING, timeout=60))
    created = db.session.get(Transfer, "h").created_at
    later = created + 61 * 1_000_000
    assert run(spec("p", a, b, 3_000, pending_id="h", flags=F.POST_PENDING_TRANSFER), now=later) == [
        R.PENDING_TRANSFER_EXPIRED
    ]
    assert [res for _, res in expire_holds(db.session, now=created + 30 * 1_000_000)] == []
    first = expire_holds(db.session, now=later)
    db.session.commit()
    assert [res for _, res in first] == [R.OK]
    assert expire_holds(db.session, now=later) == []
    db.session.commit()
    assert balances(a) == (0, 0, 0, 10_000)
    assert_invariants()


def test_unknown_accounts_and_bad_fields_have_named_results(two):
    a, b = two
    assert run(spec("x1", a, 999_999, 1)) == [R.CREDIT_ACCOUNT_NOT_FOUND]
    assert run(spec("x2", 999_999, a, 1)) == [R.DEBIT_ACCOUNT_NOT_FOUND]
    assert run(spec("x3", a, b, 0)) == [R.AMOUNT_MUST_BE_POSITIVE]
    assert run(spec("x4", a, b, -5)) == [R.AMOUNT_MUST_BE_POSITIVE]
    assert run(spec("x5", a, a, 1)) == [R.ACCOUNTS_MUST_BE_DIFFERENT]
    assert run(spec("", a, b, 1)) == [R.ID_MUST_NOT_BE_EMPTY]
    assert run(spec("x6", a, b, 1, pending_id="nope", flags=F.POST_PENDING_TRANSFER)) == [
        R.PENDING_TRANSFER_NOT_FOUND
    ]
    assert run(spec("x7", a, b, 1, timeout=5)) == [R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER]
    assert run(spec("x8", a, b, 1, flags=F.PENDING | F.VOID_PENDING_TRANSFER)) == [
        R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    ]
    assert db.session.execute(select(Transfer).where(Transfer.id.like("x%"))).first() is None
    assert_invariants()


def test_a_balance_write_that_misses_an_account_writes_nothing(two):
    """The batch writes (one statement per table on PostgreSQL) refuse to half-apply: a row
    naming an account that is not there fails the whole write, and rolling back leaves every
    balance as it was."""
    from ussd_app.database import update_rows

    a, b = two
    before = balances(a), balances(b)
    table = Account.__table__
    with pytest.raises(RuntimeError, match="updated 1 of 2 rows"):
        update_rows(
            db.session,
            table,
            "id",
            [
                {"id": a, "debits_posted": 1, "credits_posted": 2},
                {"id": 999_999, "debits_posted": 3, "credits_posted": 4},
            ],
        )
    db.session.rollback()
    assert (balances(a), balances(b)) == before


def test_batch_writes_keep_every_value_as_given(two):
    """Nulls, 64-bit amounts and text survive the array-per-column insert and update."""
    from ussd_app.database import insert_rows, update_rows

    a, b = two
    big = 2**62
    row = dict(
        id="batch-write-1",
        debit_account_id=a,
        credit_account_id=b,
        amount=big,
        pending_id=None,
        code="float_issue",
        flags=0,
        timeout=0,
        expires_at=None,
        created_at=big + 1,
        user_data="ü-ref",
    )
    insert_rows(db.session, Transfer.__table__, [row])
    update_rows(db.session, Account.__table__, "id", [{"id": b, "credits_pending": big}])
    db.session.commit()
    stored = db.session.get(Transfer, "batch-write-1", populate_existing=True)
    assert {k: getattr(stored, k) for k in row} == row
    assert balances(b)[2] == big


# -- Issue 15, items 21-24: where the ledger follows TigerBeetle, and where not (docs/ledger.md)


def test_an_expired_hold_answers_expired_before_and_after_the_expiry_job(two):
    """Item 21: once its timeout has passed a hold answers pending_transfer_expired to a post
    or a void, whether or not the expiry job has voided it yet (it answered
    pending_transfer_already_voided after the job had run)."""
    a, b = two
    run(spec("h", a, b, 3_000, flags=F.PENDING, timeout=60))
    later = db.session.get(Transfer, "h").created_at + 61 * 1_000_000
    post = spec("p", None, None, 3_000, pending_id="h", flags=F.POST_PENDING_TRANSFER)
    void = spec("v", None, None, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER)
    assert run(post, now=later) == [R.PENDING_TRANSFER_EXPIRED]
    assert run(void, now=later) == [R.PENDING_TRANSFER_EXPIRED]
    assert balances(a) == (3_000, 0, 0, 10_000)  # still held until the job runs

    assert [res for _, res in expire_holds(db.session, now=later)] == [R.OK]
    db.session.commit()
    assert balances(a) == (0, 0, 0, 10_000)
    for again in ("p2", "v2"):
        resolution = post if again == "p2" else void
        retry = spec(again, None, None, resolution.amount, pending_id="h", flags=resolution.flags)
        assert run(retry, now=later + 1) == [R.PENDING_TRANSFER_EXPIRED]

    # A hold its owner voided in time stays "already voided", even after its timeout.
    run(spec("h2", a, b, 1_000, flags=F.PENDING, timeout=60))
    assert run(spec("v3", None, None, 0, pending_id="h2", flags=F.VOID_PENDING_TRANSFER)) == [R.OK]
    too_late = db.session.get(Transfer, "h2").created_at + 61 * 1_000_000
    assert run(
        spec("p3", None, None, 1_000, pending_id="h2", flags=F.POST_PENDING_TRANSFER), now=too_late
    ) == [R.PENDING_TRANSFER_ALREADY_VOIDED]
    assert_invariants()


def test_exists_in_a_linked_chain_fails_the_chain(two):
    """Item 22: any result but ok fails a linked chain, exists included (TigerBeetle): the
    exists keeps its result, the rest of the chain gets linked_event_failed and applies
    nothing. (Before, a chain went on past an exists and posted its new legs.)"""
    a, b = two
    assert run(spec("old", a, b, 100)) == [R.OK]
    assert run(spec("new", a, b, 200, flags=F.LINKED), spec("old", a, b, 100)) == [
        R.LINKED_EVENT_FAILED,
        R.EXISTS,
    ]
    assert balances(b) == (0, 0, 0, 100)
    assert db.session.get(Transfer, "new") is None
    # A whole chain submitted again: exists, then linked_event_failed; nothing moves twice.
    chain = [spec("c1", a, b, 10, flags=F.LINKED), spec("c2", a, b, 20)]
    assert run(*chain) == [R.OK, R.OK]
    assert run(*chain) == [R.EXISTS, R.LINKED_EVENT_FAILED]
    # An exists first stops a new transfer after it too.
    assert run(chain[0], spec("c3", a, b, 300)) == [R.EXISTS, R.LINKED_EVENT_FAILED]
    assert db.session.get(Transfer, "c3") is None
    assert db.session.get(RejectedTransfer, "c2") is None  # it exists: not recorded as failed
    assert balances(b) == (0, 0, 0, 130)
    assert_invariants()


def test_zero_amounts_are_refused_but_a_void_of_zero_releases_the_whole_hold(two):
    """Item 23: TigerBeetle 0.16 accepts amount 0; Tuma refuses it (docs/ledger.md says why),
    except on a void, where 0 means the whole hold, as in TigerBeetle."""
    a, b = two
    assert run(spec("z1", a, b, 0)) == [R.AMOUNT_MUST_BE_POSITIVE]
    assert run(spec("z2", a, b, 0, flags=F.PENDING)) == [R.AMOUNT_MUST_BE_POSITIVE]
    run(spec("h", a, b, 500, flags=F.PENDING))
    assert run(spec("z3", None, None, 0, pending_id="h", flags=F.POST_PENDING_TRANSFER)) == [
        R.AMOUNT_MUST_BE_POSITIVE
    ]
    assert run(spec("z4", None, None, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER)) == [R.OK]
    assert db.session.get(Transfer, "z4").amount == 500
    assert balances(a) == (0, 0, 0, 10_000)
    assert db.session.execute(select(Transfer).where(Transfer.amount <= 0)).first() is None


def test_a_hold_whose_posting_would_overflow_is_refused(backend_app):
    """Item 24: a pending transfer reserves only the pending columns, but posting it adds to the
    posted ones: it is refused when that could pass 2**63 - 1 (TigerBeetle's overflows_*)."""
    from ussd_app.ledger import AccountKind, house_account

    a, b = wallets(2)
    big = 2**63 - 1 - 20_000
    fund(b, big)  # b's credits_posted and the trust account's debits_posted near the limit
    fund(a, 10_000)
    trust = house_account(db.session, AccountKind.TRUST).id
    assert run(spec("h1", a, b, 25_000, flags=F.PENDING)) == [R.OVERFLOWS_CREDITS_POSTED]
    assert run(spec("h2", trust, a, 15_000, flags=F.PENDING)) == [R.OVERFLOWS_DEBITS_POSTED]
    assert run(spec("t1", a, b, 25_000)) == [R.OVERFLOWS_CREDITS_POSTED]  # before exceeds_credits
    assert run(spec("h3", a, b, 10_000, flags=F.PENDING)) == [R.OK]  # what fits is held ...
    assert run(spec("p3", None, None, 10_000, pending_id="h3", flags=F.POST_PENDING_TRANSFER)) == [R.OK]
    assert balances(b) == (0, 0, 0, big + 10_000)  # ... and posted
    assert_invariants()


def test_results_come_in_tigerbeetles_order(two):
    """Item 24: accounts_must_be_different before the pending_id rules; a chain left open at
    the end of the batch ends in linked_event_chain_open even after an earlier failure; the
    amount rules of a post or void before already_posted/voided; a transfer cannot resolve
    itself."""
    a, b = two
    assert run(spec("x1", a, a, 1, pending_id="nope")) == [R.ACCOUNTS_MUST_BE_DIFFERENT]
    assert run(spec("x2", a, b, 50_000, flags=F.LINKED), spec("x3", a, b, 1, flags=F.LINKED)) == [
        R.EXCEEDS_CREDITS,
        R.LINKED_EVENT_CHAIN_OPEN,
    ]
    run(spec("h", a, b, 100, flags=F.PENDING))
    run(spec("v", None, None, 0, pending_id="h", flags=F.VOID_PENDING_TRANSFER))
    assert run(spec("p", None, None, 101, pending_id="h", flags=F.POST_PENDING_TRANSFER)) == [
        R.EXCEEDS_PENDING_TRANSFER_AMOUNT
    ]
    assert run(spec("v2", None, None, 7, pending_id="h", flags=F.VOID_PENDING_TRANSFER)) == [
        R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    ]
    assert run(spec("self", None, None, 1, pending_id="self", flags=F.POST_PENDING_TRANSFER)) == [
        R.PENDING_ID_MUST_BE_DIFFERENT
    ]
    assert balances(b) == (0, 0, 0, 0)


def test_a_repeated_transfer_id_in_a_batch_write_is_an_integrity_error(two):
    """The batch insert (binary COPY on PostgreSQL) reports a unique violation as SQLAlchemy's
    IntegrityError, the error ``execute_batch`` retries on, and the session rolls back cleanly."""
    from sqlalchemy.exc import IntegrityError

    from ussd_app.database import insert_rows

    a, b = two
    row = dict(
        id="batch-write-dup",
        debit_account_id=a,
        credit_account_id=b,
        amount=5,
        pending_id=None,
        code="float_issue",
        flags=0,
        timeout=0,
        expires_at=None,
        created_at=1,
        user_data=None,
    )
    insert_rows(db.session, Transfer.__table__, [row])
    db.session.commit()
    with pytest.raises(IntegrityError):
        insert_rows(db.session, Transfer.__table__, [{**row, "id": "batch-write-new"}, row])
    db.session.rollback()
    assert db.session.get(Transfer, "batch-write-new") is None
    assert db.session.get(Transfer, "batch-write-dup").amount == 5


def test_a_batch_write_stores_an_aware_moment_as_utc(two):
    """Rows written with the outbox's batch insert keep their order (ids follow it) and an
    aware moment is stored as naive UTC, as the statement path stores it."""
    from datetime import datetime, timedelta, timezone

    from ussd_app.database import insert_rows, is_postgres
    from ussd_app.sms.outbox import OutboxMessage

    nairobi = timezone(timedelta(hours=3))
    rows = [
        dict(phone="+254700000001", body=f"body {k}", status="pending", attempts=0, next_attempt_at=moment)
        for k, moment in enumerate(
            [datetime(2026, 1, 2, 6, 0, tzinfo=nairobi), datetime(2026, 1, 2, 3, 0), None]
        )
    ]
    insert_rows(db.session, OutboxMessage.__table__, rows)
    db.session.commit()
    stored = db.session.query(OutboxMessage).filter_by(phone="+254700000001").order_by(OutboxMessage.id).all()
    assert [m.body for m in stored] == ["body 0", "body 1", "body 2"]
    assert [m.next_attempt_at for m in stored][1:] == [datetime(2026, 1, 2, 3, 0), None]
    if is_postgres(db.session):  # (SQLite's driver drops the zone, as it always did)
        assert stored[0].next_attempt_at == datetime(2026, 1, 2, 3, 0)
