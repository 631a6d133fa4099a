"""Transfers held for review by a velocity rule, decided by an operator: on the back office's
"Held for review" page (through the real app, an operator signed in) and by ``flask review
clear|refuse``. Each decision names its operator and reason in one audit row, in the same
transaction as its effect; of two decisions on one held transfer exactly one takes effect, the
other is told it was decided. Clearing queues the transfer again and the worker posts it once;
refusing rejects it and the payer gets one SMS."""

import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.admin_helpers import csrf_token, login, operator, post
from tests.conftest import PG_URL
from tests.helpers import review, wait_for
from tests.sms_helpers import agent_with_float, execute, outbox, person, send
from tests.test_allowances import cast  # noqa: F401 (a fixture)
from ussd_app.admin.models import AuditEntry, Operator
from ussd_app.extensions import db
from ussd_app.ledger import Account, Transfer
from ussd_app.ledger.check import check
from ussd_app.payments import review as decisions
from ussd_app.payments.models import RequestStatus, TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.queues import TRANSFERS_QUEUE, get_queue
from ussd_app.users import find_by_phone

KES = 100
PAYER, PAYEE = "+254711000001", "+254711000002"


@pytest.fixture
def held(config):
    """Amina's third send in an hour (VELOCITY_MAX_COUNT 2) is held for review: its id."""
    config(VELOCITY_MAX_COUNT=2, VELOCITY_MAX_VALUE_MAJOR=0, LIMITS_BASIC_MAJOR="100000,100000,100000")
    agent = agent_with_float()
    amina, baraka = person(PAYER, "Amina Wanjiku"), person(PAYEE, "Baraka Otieno")
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=amina.account_id,
        amount=4_000 * KES,
    )
    db.session.commit()
    execute()
    ids = [send(amina, baraka, 50 * KES) for _ in range(3)]
    execute()
    request = the(ids[2])
    assert (request.status, request.result) == ("review", "velocity_count")
    get_queue(TRANSFERS_QUEUE).empty()
    return request.id


def the(request_id) -> TransferRequest:
    db.session.expire_all()
    return db.session.get(TransferRequest, request_id)


def received(phone) -> int:
    """What ``phone``'s wallet has available now."""
    db.session.expire_all()
    return db.session.get(Account, find_by_phone(db.session, phone).account_id).available


def legs_of(request_id) -> int:
    return db.session.execute(select(func.count()).where(Transfer.user_data == request_id)).scalar_one()


def audits(action=None) -> list[AuditEntry]:
    db.session.expire_all()
    query = select(AuditEntry).where(AuditEntry.action.like("review.%")).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(db.session.execute(query).scalars())


def ledger_ok():
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed


@pytest.fixture
def signed_in(client):
    operator()
    login(client)
    return client


# -- The back office page ------------------------------------------------------------------


def test_the_page_lists_a_held_transfer_and_clearing_it_posts_it_once_when_the_worker_runs(
    signed_in, held, redis
):
    code = the(held).code
    dashboard = signed_in.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/review">Held for review</a><b>1</b>' in dashboard  # the card, and the nav
    page = signed_in.get("/admin/review").get_data(as_text=True)
    row = page[page.index(f'href="/admin/transfers/{code}"') :].split("</tr>")[0]
    for shown in ("send", "KES 50.00", f"Amina Wanjiku {PAYER}", f"Baraka Otieno {PAYEE}", "velocity_count"):
        assert shown in row, (shown, row)
    assert f'action="/admin/review/{code}"' in row and 'maxlength="200" required' in row
    before = received(PAYEE)

    response = post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "payer called, rent"})
    assert response.status_code == 302
    page = signed_in.get("/admin/review").get_data(as_text=True)
    assert f"{code} cleared: queued again for the worker" in page
    assert "No transfer is held for review." in page
    assert (the(held).status, the(held).result) == ("queued", "review_cleared")
    [entry] = audits()
    op = db.session.execute(select(Operator)).scalar_one()
    assert (entry.action, entry.target, entry.operator_id) == ("review.clear", code, op.id)
    assert entry.details == {
        "by": "Olive Operator",
        "reason": "payer called, rent",
        "via": "admin",
        "kind": "send",
        "amount": 50 * KES,
        "rule": "velocity_count",
        "payer_account": the(held).debit_account_id,
        "payee_account": the(held).credit_account_id,
    }

    # The workers were rung once the decision committed; the job posts it, the velocity rule
    # not asked again. Running the worker again moves nothing more.
    [job] = get_queue(TRANSFERS_QUEUE).get_jobs()
    assert job.args == (held,)
    job.perform()
    db.session.remove()
    assert the(held).status == RequestStatus.ACCEPTED.value
    assert received(PAYEE) == before + 50 * KES
    legs = legs_of(held)
    assert legs >= 1
    assert execute() == 0
    assert (received(PAYEE), legs_of(held)) == (before + 50 * KES, legs)
    # The audit page and the transfer's trail show who cleared it and why.
    assert "payer called, rent" in signed_in.get("/admin/audit").get_data(as_text=True)
    assert "review.clear" in signed_in.get(f"/admin/transfers/{code}").get_data(as_text=True)
    ledger_ok()


def test_refusing_on_the_page_rejects_it_and_sends_the_payer_one_sms(signed_in, held, redis):
    code = the(held).code
    texts_before = len(outbox(phone=PAYER))
    payee_texts = len(outbox(phone=PAYEE))
    balance = received(PAYER)

    post(signed_in, f"/admin/review/{code}", {"decision": "refuse", "reason": "SIM swap reported"})
    assert f"{code} refused: the payer is told by SMS." in signed_in.get("/admin/review").get_data(
        as_text=True
    )
    assert (the(held).status, the(held).result) == ("rejected", "review_refused")
    texts = outbox(phone=PAYER)
    assert len(texts) == texts_before + 1
    assert texts[-1].body.startswith(f"{code} ") and "Stopped by a security check" in texts[-1].body
    assert len(outbox(phone=PAYEE)) == payee_texts  # the payee hears nothing
    assert received(PAYER) == balance and legs_of(held) == 0
    [entry] = audits("review.refuse")
    assert (entry.target, entry.details["reason"], entry.details["by"]) == (
        code,
        "SIM swap reported",
        "Olive Operator",
    )

    # Deciding it again changes nothing and says who decided.
    post(signed_in, f"/admin/review/{code}", {"decision": "clear", "reason": "second thoughts"})
    page = signed_in.get("/admin/review").get_data(as_text=True)
    assert f"{code} is not held for review: it was decided already, refused by Olive Operator" in page
    assert len(audits()) == 1 and len(outbox(phone=PAYER)) == texts_before + 1
    assert get_queue(TRANSFERS_QUEUE).count == 0
    ledger_ok()


@pytest.mark.parametrize(
    "form, why",
    [
        ({"decision": "clear", "reason": ""}, "say why (the reason is kept in the audit log)"),
        ({"decision": "refuse", "reason": "   "}, "say why (the reason is kept in the audit log)"),
        ({"decision": "clear", "reason": "x" * 201}, "the reason: at most 200 characters"),
        ({"decision": "post it", "reason": "fine"}, "Choose Clear or Refuse."),
    ],
)
def test_a_decision_without_a_fit_reason_is_refused_and_changes_nothing(signed_in, held, form, why):
    code = the(held).code
    post(signed_in, f"/admin/review/{code}", form)
    assert why in signed_in.get("/admin/review").get_data(as_text=True)
    assert the(held).status == "review" and audits() == []
    assert get_queue(TRANSFERS_QUEUE).count == 0


def test_a_reason_of_exactly_200_characters_is_kept_whole(signed_in, held):
    post(signed_in, f"/admin/review/{the(held).code}", {"decision": "clear", "reason": "r" * 200})
    assert audits()[0].details["reason"] == "r" * 200


def test_a_foreign_csrf_token_or_none_is_refused(app, signed_in, held):
    code = the(held).code
    stranger = app.test_client()  # another browser's session: its token is not this one's
    foreign = csrf_token(stranger)
    for token in (foreign, None):
        data = {"decision": "clear", "reason": "looks fine"}
        if token:
            data["csrf_token"] = token
        response = signed_in.post(f"/admin/review/{code}", data=data)
        assert response.status_code == 400
        assert "This form has expired or did not come from this site" in response.get_data(as_text=True)
    assert the(held).status == "review" and audits() == []


def test_only_a_signed_in_active_operator_may_see_or_decide(app, client, held):
    """The back office has no operator roles: every deciding page (disputes, accounts, review)
    is for a signed-in, active operator, and refuses anyone else."""
    code = the(held).code
    assert client.get("/admin/review").status_code == 302  # to sign in
    response = post(
        client, f"/admin/review/{code}", {"decision": "clear", "reason": "me"}, page="/admin/login"
    )
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]

    op = operator()
    login(client)
    assert client.get("/admin/review").status_code == 200
    token = csrf_token(client, "/admin/review")
    db.session.get(Operator, op.id).active = False  # deactivated while signed in
    db.session.commit()
    response = client.post(
        f"/admin/review/{code}", data={"decision": "refuse", "reason": "x", "csrf_token": token}
    )
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert the(held).status == "review" and audits() == []
    assert not [m for m in outbox(phone=PAYER) if "Stopped by a security check" in m.body]


# -- The command line ----------------------------------------------------------------------


def test_the_cli_needs_an_operator_and_a_reason_and_audits_them(runner, held):
    code = the(held).code
    missing = runner.invoke(args=["review", "clear", "--code", code])
    assert missing.exit_code != 0 and "Missing option '--operator'" in missing.output
    missing = runner.invoke(args=["review", "refuse", "--code", code, "--operator", "Olive"])
    assert missing.exit_code != 0 and "Missing option '--reason'" in missing.output
    blank = review(runner, "release", code, reason=" ")
    assert blank.exit_code != 0 and "say why" in blank.output
    assert the(held).status == "review" and audits() == []

    done = review(runner, "release", code.lower(), operator="Wanjiru Ops", reason="known payer")
    assert done.exit_code == 0, done.output
    assert f"{code} cleared (KES 50.00 send, held by velocity_count): queued for the worker" in done.output
    [entry] = audits()
    assert (entry.action, entry.operator_id, entry.details["by"], entry.details["reason"]) == (
        "review.clear",
        None,
        "Wanjiru Ops",
        "known payer",
    )
    assert (entry.details["via"], entry.details["amount"]) == ("cli", 50 * KES)
    again = review(runner, "refuse", code, operator="Other Ops")
    assert again.exit_code != 0
    assert "it was decided already, cleared by Wanjiru Ops" in again.output
    assert len(audits()) == 1 and the(held).status == "queued"


def test_the_cli_refusal_is_audited_and_tells_the_payer_once(runner, held):
    code = the(held).code
    texts = len(outbox(phone=PAYER))
    done = review(runner, "refuse", code, operator="Olive", reason="account takeover suspected")
    assert done.exit_code == 0, done.output
    assert len(outbox(phone=PAYER)) == texts + 1
    [entry] = audits("review.refuse")
    assert entry.details["reason"] == "account takeover suspected" and entry.details["via"] == "cli"
    assert "review" in review(runner, "clear", code).output  # "... not held for review ..."
    assert the(held).status == "rejected"


# -- Two operators at once -----------------------------------------------------------------


def test_a_second_decision_after_the_first_changes_nothing(held, app):
    """Both backends: the second decision reads the first's outcome and is told who made it."""
    code = the(held).code
    decisions.clear(db.session, code, operator="Olive", reason="fine")
    db.session.commit()
    with pytest.raises(decisions.ReviewError, match="decided already, cleared by Olive"):
        decisions.refuse(db.session, code, operator="Baraka", reason="no")
    db.session.rollback()
    assert the(held).status == "queued" and len(audits()) == 1


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (DATABASE_URL)")
@pytest.mark.parametrize("first, second", [("clear", "refuse"), ("refuse", "clear"), ("refuse", "refuse")])
def test_two_operators_deciding_at_once_one_wins_the_other_is_told(app, held, first, second):
    """Operator A has decided (not committed) when B decides the same transfer: B read it held,
    its conditional UPDATE waits for A's row lock, then finds it decided and changes nothing."""
    code = the(held).code
    texts = len(outbox(phone=PAYER))
    db.session.rollback()
    a, b = Session(db.engine), Session(db.engine)
    outcome = {}
    try:
        getattr(decisions, first)(a, code, operator="A", reason="first")  # holds the row lock

        def operator_b():
            with app.app_context():
                try:
                    getattr(decisions, second)(b, code, operator="B", reason="second")
                    b.commit()
                    outcome["b"] = "decided"
                except decisions.ReviewError as exc:
                    b.rollback()
                    outcome["b"] = str(exc)

        thread = threading.Thread(target=operator_b)
        thread.start()
        wait_for(
            lambda: db.session.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one(),
            message="operator B to wait for A's row lock",
        )
        db.session.rollback()
        assert "b" not in outcome
        a.commit()
        thread.join(timeout=30)
    finally:
        a.close()
        b.close()
    assert outcome["b"] == f"{code} was decided by someone else meanwhile; nothing done"
    [entry] = audits()
    assert entry.details["by"] == "A" and entry.action == f"review.{first}"
    request = the(held)
    if first == "clear":
        assert (request.status, len(outbox(phone=PAYER))) == ("queued", texts)
        assert execute() == 1 and the(held).status == "accepted"
    else:
        assert (request.status, len(outbox(phone=PAYER))) == ("rejected", texts + 1)
    ledger_ok()


# -- Allowance settlements refused again and again -----------------------------------------


def test_the_page_lists_a_refused_allowance_settlement_and_voids_it_with_a_reason(backend_app, cast):  # noqa: F811
    from tests.escrow_helpers import FUNDS
    from tests.test_allowances_void import refused
    from tests.ussd_helpers import available

    customer, merchant = cast
    allowance_id = refused(customer, merchant)
    client = backend_app.test_client()
    operator()
    login(client)
    page = client.get("/admin/review").get_data(as_text=True)
    row = page[page.index(f"<tr><td>{allowance_id}</td>") :].split("</tr>")[0]
    for shown in (
        f"{customer.name} {customer.phone}",
        "Mama Mboga",
        "KES 15.00",
        "KES 200.00",
        "3 times (payee_locked)",
    ):
        assert shown in row, (shown, row)
    assert f'action="/admin/review/allowances/{allowance_id}"' in row

    post(client, f"/admin/review/allowances/{allowance_id}", {"reason": ""})
    assert "say why (the reason is kept in the audit log)" in client.get("/admin/review").get_data(
        as_text=True
    )
    post(client, f"/admin/review/allowances/{allowance_id}", {"reason": "merchant closed for fraud"})
    page = client.get("/admin/review").get_data(as_text=True)
    assert f"Allowance {allowance_id} voided" in page
    assert "No allowance settlement is refused again and again." in page
    assert available(customer.account_id) == FUNDS
    db.session.expire_all()
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "allowance.void")).scalars()
    assert (entry.target, entry.details["reason"], entry.details["via"]) == (
        allowance_id,
        "merchant closed for fraud",
        "admin",
    )
    assert entry.operator_id == db.session.execute(select(Operator.id)).scalar_one()
    ledger_ok()


def _more_refused_than_a_page(app, customer, merchant) -> list[str]:
    """Three allowances whose settlement the locked merchant refused once, listed once refused
    (ALLOWANCE_SETTLE_ALERT_AFTER 1), two to a page (REVIEW_PAGE_SIZE 2; 500 in production):
    their ids, soonest due again first (the third made is due first, the first last)."""
    from datetime import timedelta

    from sqlalchemy import update

    from tests.api_helpers import execute_all
    from tests.test_allowances import approved, charge
    from tests.test_allowances_refused import refuse_payments_to
    from ussd_app.clock import utcnow
    from ussd_app.payments import allowances as al

    app.config.update(ALLOWANCE_SETTLE_ALERT_AFTER=1, REVIEW_PAGE_SIZE=2)
    made = [approved(customer, merchant, n=n) for n in (1, 2, 3)]
    for n, allowance_id in enumerate(made):
        assert charge(allowance_id, merchant, 5_00, n).ok
    refuse_payments_to(merchant)
    for allowance_id in made:
        assert al.settle(db.session, allowance_id, why="merchant") is not None
        db.session.commit()
    execute_all()
    now = utcnow()
    for hours, allowance_id in zip((3, 2, 1), made, strict=True):
        db.session.execute(
            update(al.Allowance).where(al.Allowance.id == allowance_id).values(
                settle_again_at=now + timedelta(hours=hours)
            )
        )  # fmt: skip
    db.session.commit()
    return made[::-1]


def test_more_refused_settlements_than_a_page_are_counted_and_paged_soonest_due_first(backend_app, cast):  # noqa: F811
    """A merchant locked with more readers than a page holds: the review list, the CLI and the
    page say how many wait, show the soonest due first, and the rest are a page away (not
    silently left out); the Void form of one on a later page works."""
    from tests.ussd_helpers import available

    customer, merchant = cast
    first, second, third = _more_refused_than_a_page(backend_app, *cast)
    runner = backend_app.test_cli_runner()

    listed = runner.invoke(args=["review", "list"]).output
    assert "refused again and again: showing 1-2 of 3, soonest due again first" in listed
    assert listed.index(f"allowance {first}") < listed.index(f"allowance {second}")
    assert f"allowance {third}" not in listed
    assert "1 more: flask review list --from 3" in listed
    rest = runner.invoke(args=["review", "list", "--from", "3"]).output
    assert "showing 3-3 of 3" in rest and f"allowance {third}" in rest
    assert f"allowance {first}" not in rest and "more:" not in rest

    client = backend_app.test_client()
    operator()
    login(client)
    page = client.get("/admin/review").get_data(as_text=True)
    assert "Showing 1-2 of 3, soonest due again first." in page
    assert page.index(f"<tr><td>{first}</td>") < page.index(f"<tr><td>{second}</td>")
    assert f"<tr><td>{third}</td>" not in page
    assert 'href="/admin/review?from=3">Next 1 (of 1 more)</a>' in page
    later = client.get("/admin/review?from=3").get_data(as_text=True)
    assert "Showing 3-3 of 3, soonest due again first." in later
    assert f"<tr><td>{third}</td>" in later and f"<tr><td>{first}</td>" not in later
    assert 'href="/admin/review?from=1">Earlier</a>' in later
    for bad in ("0", "-1", "x", "99999999999"):  # a bad ?from= is the first page, no error
        assert "Showing 1-2 of 3" in client.get(f"/admin/review?from={bad}").get_data(as_text=True)

    held = available(customer.account_id)
    post(client, f"/admin/review/allowances/{third}", {"reason": "merchant closed for fraud"})
    page = client.get("/admin/review").get_data(as_text=True)
    assert f"Allowance {third} voided" in page
    assert "Showing 1-2 of 2, soonest due again first." in page and "more)</a>" not in page
    assert available(customer.account_id) > held  # its hold back with the customer
    ledger_ok()


def test_the_disputes_page_says_how_many_refused_settlements_wait_beyond_its_page(backend_app, cast):  # noqa: F811
    first, second, third = _more_refused_than_a_page(backend_app, *cast)
    client = backend_app.test_client()
    operator()
    login(client)
    page = client.get("/admin/disputes").get_data(as_text=True)
    assert (
        "Allowance settlements refused again and again: showing 1-2 of 3, soonest due again first; "
        "1 more on the review page."
    ) in page
    assert f'action="/admin/disputes/allowances/{first}"' in page
    assert f'action="/admin/disputes/allowances/{second}"' in page
    assert f'action="/admin/disputes/allowances/{third}"' not in page


def test_only_settlements_refused_the_alert_number_of_times_are_counted(backend_app, cast):  # noqa: F811
    """The refusals are counted in SQL (the attempt numbered ALLOWANCE_SETTLE_ALERT_AFTER
    exists), so the count agrees with what is listed."""
    from ussd_app.payments.allowances.settlement import refused_settlements

    _more_refused_than_a_page(backend_app, *cast)
    assert refused_settlements(db.session, 2).total == 0
    assert not refused_settlements(db.session, 2).rows
    assert refused_settlements(db.session, 1).total == 3
    backend_app.config["ALLOWANCE_SETTLE_ALERT_AFTER"] = 2
    listed = backend_app.test_cli_runner().invoke(args=["review", "list"]).output
    assert "refused again and again" not in listed
