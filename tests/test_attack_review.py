"""An outsider's and a careless operator's attacks on the review decisions (``payments/review.py``,
the back office's "Held for review" page, ``flask review clear|refuse``): what must not move money,
what must not reach a browser unescaped, and what a malformed request must not break."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from tests.admin_helpers import post
from tests.helpers import review
from tests.sms_helpers import outbox
from tests.test_admin_review import (  # noqa: F401 (fixtures)
    PAYEE,
    PAYER,
    audits,
    held,
    ledger_ok,
    legs_of,
    received,
    signed_in,
    the,
)
from tests.test_allowances import cast  # noqa: F401 (a fixture)
from ussd_app.extensions import db
from ussd_app.queues import TRANSFERS_QUEUE, get_queue
from ussd_app.users import User, find_by_phone


def lock_on_the_page(client, phone, reason="stolen phone reported"):
    user = find_by_phone(db.session, phone)
    post(client, f"/admin/accounts/{user.id}/lock", {"reason": reason})
    db.session.expire_all()
    assert db.session.get(User, user.id).locked_until is not None


# -- Money ---------------------------------------------------------------------------------


def test_a_held_transfer_of_a_payer_locked_since_cannot_be_cleared_on_the_page(signed_in, held):  # noqa: F811
    """The velocity rule held Amina's third send (the sign of a stolen PIN); an operator then
    locked Amina. A second operator clearing the held send must not let the money leave a
    locked account: the clear is refused, nothing queued, no audit row, the money stays."""
    code = the(held).code
    lock_on_the_page(signed_in, PAYER)
    before_payer, before_payee = received(PAYER), received(PAYEE)

    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "payer called"})
    page = signed_in.get("/admin/review").get_data(as_text=True)
    assert f"Refused: {code}: the payer {PAYER} is locked by an operator" in page
    assert the(held).status == "review" and audits() == []
    assert get_queue(TRANSFERS_QUEUE).count == 0
    from tests.sms_helpers import execute

    execute()
    assert (received(PAYER), received(PAYEE), legs_of(held)) == (before_payer, before_payee, 0)

    # Refusing it is still possible (and tells the payer once).
    post(signed_in, f"/admin/review/{code}", {"decision": "refuse", "reason": "stolen phone"})
    assert (the(held).status, the(held).result) == ("rejected", "review_refused")
    assert [e.action for e in audits()] == ["review.refuse"]
    ledger_ok()


def test_the_cli_cannot_clear_a_held_transfer_of_a_locked_payer_either(runner, held):  # noqa: F811
    from ussd_app.users import OPERATOR_LOCK_UNTIL

    code = the(held).code
    amina = find_by_phone(db.session, PAYER)
    amina.locked_until = OPERATOR_LOCK_UNTIL
    db.session.commit()
    result = review(runner, "clear", code)
    assert result.exit_code != 0
    assert "locked by an operator" in result.output
    assert the(held).status == "review" and audits() == []


def test_a_payer_locked_after_the_clear_before_the_worker_is_not_paid_out_of(signed_in, held):  # noqa: F811
    """Cleared, then (before the worker's batch) another operator locks the payer: the worker
    stops it as a refused review would, the payer told once, the payee nothing, no money moved."""
    from tests.sms_helpers import execute

    code = the(held).code
    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "payer called"})
    assert the(held).status == "queued"
    lock_on_the_page(signed_in, PAYER)
    before_payer, before_payee = received(PAYER), received(PAYEE)
    payer_texts, payee_texts = len(outbox(phone=PAYER)), len(outbox(phone=PAYEE))
    execute()
    assert (the(held).status, the(held).result) == ("rejected", "review_refused")
    assert (received(PAYER), received(PAYEE), legs_of(held)) == (before_payer, before_payee, 0)
    told = outbox(phone=PAYER)[payer_texts:]
    assert len(told) == 1 and "Stopped by a security check" in told[0].body
    assert len(outbox(phone=PAYEE)) == payee_texts
    ledger_ok()


def test_a_pin_lock_alone_does_not_stop_a_clear(signed_in, held):  # noqa: F811
    """Wrong PINs lock the menus for a while (not an operator's lock): the payer asked for this
    transfer with the right PIN, so an operator may still clear it."""
    from ussd_app.clock import utcnow

    amina = find_by_phone(db.session, PAYER)
    amina.locked_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    post(signed_in, f"/admin/review/{the(held).code}", {"decision": "clear", "reason": "payer called"})
    assert the(held).status == "queued"


def test_cleared_after_the_days_limit_was_used_the_worker_refuses_it_once(signed_in, held, config):  # noqa: F811
    """Cleared only skips the velocity rules: the payer's day filled up while it was held (here
    the daily limit lowered to what was sent already), so the worker refuses it for the limit,
    the payer hears it once, the payee nothing, and it is not held again."""
    from tests.sms_helpers import execute

    config(LIMITS_BASIC_MAJOR="100000,100,100000")
    code = the(held).code
    payer_texts, payee_texts = len(outbox(phone=PAYER)), len(outbox(phone=PAYEE))
    before = received(PAYEE)
    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "payer called"})
    assert the(held).status == "queued"
    execute()
    assert (the(held).status, the(held).result) == ("rejected", "limit_daily_exceeded")
    assert len(outbox(phone=PAYER)) == payer_texts + 1 and len(outbox(phone=PAYEE)) == payee_texts
    assert received(PAYEE) == before and legs_of(held) == 0
    assert [e.action for e in audits()] == ["review.clear"]
    ledger_ok()


def test_a_refusal_is_told_in_the_payers_language_once(signed_in, held):  # noqa: F811
    amina = find_by_phone(db.session, PAYER)
    amina.language = "sw"
    db.session.commit()
    code = the(held).code
    texts = len(outbox(phone=PAYER))
    post(signed_in, f"/admin/review/{code}", {"decision": "refuse", "reason": "SIM swap"})
    post(signed_in, f"/admin/review/{code}", {"decision": "refuse", "reason": "SIM swap"})  # replayed
    sent = outbox(phone=PAYER)[texts:]
    assert len(sent) == 1
    assert sent[0].body.startswith(f"{code} ") and "Imezuiwa na ukaguzi wa usalama" in sent[0].body


# -- Web -----------------------------------------------------------------------------------


def test_html_in_a_reason_or_a_code_reaches_no_page_unescaped(signed_in, held):  # noqa: F811
    code = the(held).code
    script = "<script>alert('x')</script>"
    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": f"ok {script}"})
    assert audits()[0].details["reason"] == f"ok {script}"
    for page in ("/admin/audit", f"/admin/transfers/{code}"):
        html = signed_in.get(page).get_data(as_text=True)
        assert "<script>alert" not in html, page
    assert "&lt;script&gt;alert(" in signed_in.get("/admin/audit").get_data(as_text=True)

    # A code that is markup: told it is no transfer's, escaped.
    post(signed_in, "/admin/review/%3Cb%3Ex", {"decision": "clear", "reason": "why"})
    html = signed_in.get("/admin/review").get_data(as_text=True)
    assert "<B>X" not in html and "no transfer with code &lt;B&gt;X" in html


@pytest.mark.parametrize("path", ["/admin/review/AB%00CD", "/admin/review/allowances/al%00x"])
def test_a_nul_in_the_code_or_allowance_is_told_not_a_server_error(signed_in, held, path):  # noqa: F811
    """PostgreSQL refuses NUL in a string: a code or id carrying one (a crafted URL) must get the
    operator's clear message, not a 500."""
    response = post(signed_in, path, {"decision": "clear", "reason": "why"})
    assert response.status_code == 302
    html = signed_in.get("/admin/review").get_data(as_text=True)
    assert "Refused: " in html
    assert the(held).status == "review" and audits() == []


def test_newlines_and_controls_in_a_reason_are_kept_out_of_the_audit_row(signed_in, held):  # noqa: F811
    post(
        signed_in,
        f"/admin/review/{the(held).code}",
        {"decision": "refuse", "reason": "line one\r\nline two\x1b[31m\x07 — ok ✓"},
    )
    [entry] = audits()
    assert entry.details["reason"] == "line oneline two[31m — ok ✓"
    assert (the(held).status, the(held).result) == ("rejected", "review_refused")


def test_a_code_in_lower_case_or_with_spaces_is_the_same_transfer(signed_in, held):  # noqa: F811
    code = the(held).code
    post(signed_in, f"/admin/review/%20{code.lower()}%20", {"decision": "clear", "reason": "fine"})
    assert the(held).status == "queued" and [e.target for e in audits()] == [code]


def test_a_code_with_more_after_it_is_no_transfer_not_the_first_ten_characters(signed_in, runner, held):  # noqa: F811
    """A decision is on the code typed, not on its first ten characters: a pasted code with a
    character more (or two codes run together) is no transfer's, and nothing is decided."""
    code = the(held).code
    post(signed_in, f"/admin/review/{code}X", {"decision": "clear", "reason": "fine"})
    assert f"Refused: no transfer with code {code}X." in signed_in.get("/admin/review").get_data(as_text=True)
    result = review(runner, "refuse", f"{code}{code}")
    assert result.exit_code != 0 and "no transfer with code" in result.output
    assert the(held).status == "review" and audits() == []


def test_an_id_of_another_kind_is_no_held_transfer(signed_in, held):  # noqa: F811
    """IDOR: the payer's accepted sends, by code, and a request id, cannot be 'decided'."""
    from ussd_app.payments.models import TransferRequest

    posted = (
        db.session.execute(
            select(TransferRequest).where(
                TransferRequest.status == "accepted", TransferRequest.kind == "send"
            )
        )
        .scalars()
        .first()
    )
    before = received(PAYEE)
    for target in (posted.code, posted.id, "1", "../review"):
        post(signed_in, f"/admin/review/{target}", {"decision": "refuse", "reason": "hmm"})
    assert the(posted.id).status == "accepted" and audits() == []
    assert received(PAYEE) == before
    assert not [m for m in outbox(phone=PAYER) if "Stopped by a security check" in m.body]


# -- The SMS asking for an allowance, with its end ------------------------------------------


def _asking_sms_at_the_cap(app) -> list[tuple[int, str]]:
    """Every SMS asking a customer for an allowance, in each of the country's languages, at the
    longest merchant name and the most a merchant may ask for (the API's cap, for the period's
    limit and for one charge: nothing holds an ask to the customer's tier), with an end."""
    from types import SimpleNamespace

    from ussd_app import country
    from ussd_app.messages import allowances as texts
    from ussd_app.money import to_minor
    from ussd_app.ussd.flows import common
    from ussd_app.ussd.gsm7 import length

    cap = to_minor(country.profile().api_max_amount)
    merchant = SimpleNamespace(name="W" * common.NAME_LIMIT + " " + "W" * common.NAME_LIMIT)
    found = []
    for language in country.languages():
        customer = SimpleNamespace(language=language, phone=country.profile().numbered(99))
        for period in ("day", "week", "month"):
            allowance = SimpleNamespace(
                period=period, limit_amount=cap, max_charge=cap, ends_at=datetime(2026, 12, 31, 20, 0)
            )
            body = texts.asked(customer, merchant, allowance)
            found.append((length(body), body))
    return found


@pytest.fixture(params=["KE", "GH", "TZ"])
def each_country(request, app):
    if request.param == "KE":
        yield app
        return
    from tests.test_country_profiles import _country_app

    for country_app, _gateway in _country_app(request.param):
        with country_app.app_context():
            yield country_app


def test_the_sms_asking_for_an_allowance_with_an_end_fits_one_segment_at_the_cap(each_country):
    too_long = [(size, body) for size, body in _asking_sms_at_the_cap(each_country) if size > 160]
    assert not too_long, too_long


# -- The migration -------------------------------------------------------------------------


def _review_index(connection) -> str | None:
    """The WHERE of ``ix_transfer_requests_review`` ("" when it has none), None when absent."""
    from tests.test_migrations import _read

    if connection.dialect.name == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
    for name, definition in _read(connection, sql):
        if name == "ix_transfer_requests_review":
            where = definition.upper().split(" WHERE ", 1)
            return (
                where[1].replace("(", "").replace(")", "").replace("::TEXT", "").strip()
                if len(where) == 2
                else ""
            )
    return None


def test_0017_makes_a_partial_index_and_its_downgrade_drops_it_with_held_rows_kept(app, held):  # noqa: F811
    """Up, down and up again on this run's database, with a transfer held: the index holds only
    the rows in review; the downgrade drops the index alone (the held transfer stays held)."""
    import flask_migrate

    from tests.test_migrations import MIGRATIONS, test_the_migrated_schema_matches_the_models

    db.session.commit()
    try:
        with db.engine.connect() as connection:
            assert _review_index(connection) == "STATUS = 'REVIEW'"
        flask_migrate.downgrade(directory=MIGRATIONS, revision="0016_ledgerwrites_indexes")
        with db.engine.connect() as connection:
            assert _review_index(connection) is None
            # (read by SQL: the models have columns later migrations add, gone at 0016)
            status = connection.execute(
                text("SELECT status FROM transfer_requests WHERE id = :id"), {"id": held}
            ).scalar_one()
        assert status == "review"
        db.session.rollback()  # SQLite: no read left open across the upgrade's DDL
        flask_migrate.upgrade(directory=MIGRATIONS)
        with db.engine.connect() as connection:
            assert _review_index(connection) == "STATUS = 'REVIEW'"
    finally:
        db.session.rollback()
        flask_migrate.upgrade(directory=MIGRATIONS)
    assert the(held).status == "review"
    db.session.rollback()
    test_the_migrated_schema_matches_the_models(app)


# -- The settlement retry backoff ----------------------------------------------------------


@pytest.mark.parametrize(
    "first, most, waits",
    [
        (3600, 24 * 3600, [1, 2, 4, 8, 16, 24, 24]),
        (3600, 0, [1, 1, 1, 1, 1, 1, 1]),  # a maximum below the first wait: the first, always
        (3600, -5, [1, 1, 1, 1, 1, 1, 1]),
    ],
)
def test_the_retry_wait_doubles_to_its_maximum_and_a_bad_maximum_means_the_first(
    app, config, first, most, waits
):
    from ussd_app.payments.allowances.settlement import retry_wait

    config(ALLOWANCE_SETTLE_RETRY_SECONDS=first, ALLOWANCE_SETTLE_RETRY_MAX_SECONDS=most)
    assert [retry_wait(n) / timedelta(hours=1) for n in range(1, 8)] == waits
    # After very many refusals (2^n would be astronomical) the wait is still the maximum.
    assert retry_wait(10_000) == retry_wait(0) * 2**0 * (max(first, most) // first)


def test_a_settlement_due_again_is_retried_though_more_than_a_batch_of_others_still_wait(cast):  # noqa: F811
    """A merchant locked for weeks has more refused allowances than one maintenance run reads
    (``limit``, 500; here 1). Another merchant's refused settlement, its lock lifted and its wait
    over, must still be tried again, not starve behind allowances whose wait is not over."""
    from sqlalchemy import update as sql_update

    from tests.api_helpers import execute_all
    from tests.test_allowances import approved, charge
    from tests.test_allowances import the as allowance
    from tests.test_allowances_refused import refuse_payments_to, request, take_payments_again
    from tests.ussd_helpers import person
    from ussd_app.clock import utcnow
    from ussd_app.payments import allowances as al
    from ussd_app.payments.allowances.settlement import retry_wait

    customer, locked_for_good = cast
    other = person("+254700000003", "Duka La Pili", pin="3333", role="merchant", till="654321")
    first = approved(customer, locked_for_good, n=1)  # al_test1: first in the window
    second = approved(customer, other, n=2)
    assert charge(first, locked_for_good, 5_00, 1).ok and charge(second, other, 5_00, 2).ok
    refuse_payments_to(locked_for_good)
    refuse_payments_to(other)
    for allowance_id in (first, second):
        assert al.settle(db.session, allowance_id, why="merchant") is not None
        db.session.commit()
    execute_all()
    assert request(f"{second}.h1.r").status == "rejected"
    # The second merchant is unlocked and its wait is over (refused two hours ago); the first's
    # refusal is recent (its wait not over), and it comes first in the window.
    take_payments_again(other)
    two_hours_ago = utcnow() - timedelta(hours=2)
    db.session.execute(
        sql_update(al.AllowanceSettlement)
        .where(al.AllowanceSettlement.id == f"{second}.h1.r")
        .values(told_at=two_hours_ago)
    )
    db.session.execute(  # when it was due again, as its refusal two hours ago stored it
        sql_update(al.Allowance)
        .where(al.Allowance.id == second)
        .values(settle_again_at=two_hours_ago + retry_wait(1))
    )
    db.session.commit()

    al.settle_due(db.session, now=utcnow(), limit=1)
    db.session.commit()
    execute_all()
    posted = request(f"{second}.h1.r2")
    assert posted is not None and posted.status == "accepted"
    assert allowance(second).tab_amount == 0
