"""The operator's decision on an allowance whose settlement is refused (the merchant locked by
Tuma): its hold keeps the customer's WHOLE period limit, so an operator may void it
(``flask review void``): all of it back to the customer, the owed charges forgiven, the
merchant told by ``allowance.voided``, the customer by ONE SMS in their language, audited; once
only, and never together with a retry posting the same hold. And the customer hears ONCE, at
the first refusal, that the money stays held while the business is under review."""

import json
import threading

import pytest
from flask import current_app
from sqlalchemy import select, update

from tests.api_helpers import execute_all
from tests.escrow_helpers import FUNDS, ledger_ok, sms_to
from tests.test_allowances import (
    LIMIT,
    approved,
    cast,  # noqa: F401 (a fixture)
    charge,
    count,
    events,
    the,
)
from tests.test_allowances_refused import (
    postings_of,
    refuse_payments_to,
    request,
    retry_due,
    take_payments_again,
)
from tests.ussd_helpers import available
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.payments import allowances as al
from ussd_app.payments.models import HoldState
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import User

UNDER_REVIEW = (
    "Allowance payment of KES 15.00 to MAMA MBOGA waits while the business is under review. "
    "Your money stays held; we will SMS you when it is paid."
)


def cli(*args) -> tuple[int, str]:
    result = current_app.test_cli_runner().invoke(args=list(args))
    db.session.expire_all()
    return result.exit_code, result.output


def void(allowance_id, operator="Achieng Otieno", reason="merchant closed for fraud") -> tuple[int, str]:
    return cli("review", "void", "--allowance", allowance_id, "--operator", operator, "--reason", reason)


def refused(customer, merchant, *, times: int = 3) -> str:
    """An allowance with 3 charges (KES 15.00) whose settlement the locked merchant's refusal
    left held, ``times`` attempts refused."""
    allowance_id = approved(customer, merchant)
    for n in range(3):
        assert charge(allowance_id, merchant, 5_00, n).ok
    refuse_payments_to(merchant)
    assert al.settle(db.session, allowance_id, why="merchant") is not None
    db.session.commit()
    execute_all()
    for _ in range(times - 1):
        assert retry_due() == 1
    assert the(allowance_id).tab_amount == 15_00
    return allowance_id


def test_void_after_refusals_gives_the_whole_hold_back_and_forgives_the_charges(cast):  # noqa: F811
    customer, merchant = cast
    db.session.execute(update(User).where(User.id == customer.id).values(language="sw"))
    db.session.commit()
    merchant_before = available(merchant.account_id)
    allowance_id = refused(customer, merchant)
    hold_id = f"{allowance_id}.h1"
    assert available(customer.account_id) == FUNDS - LIMIT  # the whole week's limit held
    sms_before = count(OutboxMessage, OutboxMessage.phone == customer.phone)

    code, output = void(allowance_id)
    assert code == 0, output
    voiding = request(f"{hold_id}.r4")
    assert (voiding.kind, voiding.status, voiding.amount) == ("allowance_void", "accepted", LIMIT)
    assert output.strip() == (
        f"allowance {allowance_id} voided ({voiding.code}): KES 200.00 back to the customer, "
        "KES 15.00 for 3 charges forgiven; it is cancelled. The customer is told by SMS, "
        "the merchant by allowance.voided"
    )
    # The customer's money whole; the merchant got nothing.
    assert available(customer.account_id) == FUNDS
    assert available(merchant.account_id) == merchant_before
    assert postings_of(hold_id) == 1 and request(hold_id).hold_state == HoldState.VOIDED.value
    allowance = the(allowance_id)
    assert (allowance.state, allowance.tab_amount, allowance.tab_count) == ("cancelled", 0, 0)
    forgiven = db.session.get(al.AllowanceSettlement, voiding.id)
    assert (forgiven.why, forgiven.amount, forgiven.charges) == ("forgiven", 0, 3)
    # ONE SMS, in Kiswahili; ONE event to the merchant.
    texts = sms_to(customer.phone)
    assert len(texts) == sms_before + 1
    assert texts[-1] == (
        "Kibali cha MAMA MBOGA kimesitishwa na Tuma: KES 200.00 iliyoshikiliwa ni yako tena. "
        "KES 15.00 kilichotozwa hakitakatwa."
    )
    [event] = events("allowance.voided")
    assert (event["allowance"], event["status"], event["forgiven"], event["charges"]) == (
        allowance_id,
        "cancelled",
        15_00,
        3,
    )
    assert event["failure"] == "payee_locked"
    # Audited with the operator's name and reason.
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "allowance.void")).scalars()
    detail = json.loads(entry.detail)
    assert (entry.target, detail["by"], detail["reason"]) == (
        allowance_id,
        "Achieng Otieno",
        "merchant closed for fraud",
    )
    assert (detail["released"], detail["forgiven"], detail["void"]) == (LIMIT, 15_00, voiding.code)
    db.session.commit()
    # Nothing more: not listed, not tried again even once the merchant is unlocked.
    assert allowance_id not in cli("review", "list")[1]
    take_payments_again(merchant)
    assert retry_due() == 0 and request(f"{hold_id}.r5") is None
    assert available(merchant.account_id) == merchant_before
    assert cli("ledger", "check")[0] == 0
    ledger_ok()


def test_void_twice_is_one_void(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = refused(customer, merchant, times=1)
    assert void(allowance_id)[0] == 0
    sms_before = count(OutboxMessage)
    code, output = void(allowance_id, operator="Someone Else", reason="again")
    assert code == 0, output
    voiding = request(f"{allowance_id}.h1.r2")
    assert output.strip() == f"allowance {allowance_id} was voided already ({voiding.code}): nothing done"
    assert count(OutboxMessage) == sms_before
    assert len(events("allowance.voided")) == 1
    assert count(AuditEntry, AuditEntry.action == "allowance.void") == 1
    assert available(customer.account_id) == FUNDS
    ledger_ok()


def test_void_of_an_allowance_not_refused_is_refused_clearly(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = approved(customer, merchant)
    charge(allowance_id, merchant, 5_00, 1)
    code, output = void(allowance_id)
    assert code != 0
    assert f"refused: allowance {allowance_id} (active) has no refused settlement to void" in output
    # A settlement that posted: nothing to void either.
    al.settle(db.session, allowance_id, why="merchant")
    db.session.commit()
    execute_all()
    assert "has no refused settlement to void" in void(allowance_id)[1]
    assert cli("review", "void", "--allowance", "al_nope", "--operator", "A", "--reason", "b")[1].endswith(
        "Error: refused: no allowance al_nope\n"
    )
    assert "say why" in void(allowance_id, reason="  ")[1]
    assert count(AuditEntry, AuditEntry.action == "allowance.void") == 0
    assert available(customer.account_id) == FUNDS - 5_00 - (LIMIT - 5_00)  # paid, next hold made
    ledger_ok()


def test_the_customer_is_told_once_at_the_first_refusal_that_the_money_stays_held(cast):  # noqa: F811
    customer, merchant = cast
    allowance_id = refused(customer, merchant, times=3)
    assert [m for m in sms_to(customer.phone) if "under review" in m] == [UNDER_REVIEW]
    take_payments_again(merchant)
    assert retry_due() == 1
    texts = sms_to(customer.phone)
    assert [m for m in texts if "under review" in m] == [UNDER_REVIEW]
    assert "KES 15.00 paid to MAMA MBOGA for 3 charges" in texts[-1]
    assert the(allowance_id).tab_amount == 0


def test_a_void_racing_a_retry_one_wins_the_other_does_nothing(cast):  # noqa: F811
    """PostgreSQL, real threads: the maintenance job's retry (the merchant unlocked meanwhile)
    and the operator's void of the same refused settlements, at the same moment. For each
    allowance exactly one of them takes the hold: either the charges are posted (and the rest
    released) or the whole hold comes back; never both, never neither."""
    from datetime import timedelta

    from tests.escrow_helpers import at_once
    from ussd_app.clock import utcnow
    from ussd_app.database import is_postgres
    from ussd_app.payments.allowances.decisions import DecisionError, void_refused
    from worker import jobs

    if not is_postgres(db.session):
        pytest.skip("row locks between two sessions: PostgreSQL")
    customer, merchant = cast
    ids = [approved(customer, merchant, n=n, limit=20_00) for n in range(1, 5)]
    for allowance_id in ids:
        assert charge(allowance_id, merchant, 5_00, allowance_id).ok
    refuse_payments_to(merchant)
    for allowance_id in ids:
        al.settle(db.session, allowance_id, why="merchant")
    db.session.commit()
    execute_all()
    take_payments_again(merchant)
    later = utcnow() + timedelta(hours=2)
    outcomes: list = []
    lock = threading.Lock()

    def void_all():
        for allowance_id in reversed(ids):  # the other end first: they meet in the middle
            try:
                void_refused(db.session, allowance_id, operator="Achieng", reason="race")
                db.session.commit()
                with lock:
                    outcomes.append(("voided", allowance_id))
            except DecisionError:
                db.session.rollback()
                with lock:
                    outcomes.append(("refused", allowance_id))

    app = current_app._get_current_object()
    at_once(app, lambda: jobs.settle_allowances(now=later), void_all)
    execute_all()
    voided = {a for what, a in outcomes if what == "voided"}
    assert len(outcomes) == len(ids)
    for allowance_id in ids:
        hold = f"{allowance_id}.h1"
        assert postings_of(hold) == 1, allowance_id
        second = request(f"{hold}.r2")
        assert request(f"{hold}.r3") is None
        if allowance_id in voided:
            assert (second.kind, second.status) == ("allowance_void", "accepted")
        else:
            assert (second.kind, second.status, second.amount) == ("allowance_post", "accepted", 5_00)
        assert the(allowance_id).tab_amount == 0
    posted = len(ids) - len(voided)
    assert available(customer.account_id) == FUNDS - 20_00 * posted  # a posted one's next hold
    assert len(events("allowance.voided")) == len(voided)
    ledger_ok()


def test_the_back_office_lists_it_and_voids_it_with_the_note_as_the_reason(cast):  # noqa: F811
    from tests.admin_helpers import login, operator, post

    customer, merchant = cast
    client = current_app.test_client()
    allowance_id = refused(customer, merchant)
    operator()
    login(client)
    page = client.get("/admin/disputes").get_data(as_text=True)
    assert f'action="/admin/disputes/allowances/{allowance_id}"' in page
    assert "cannot be paid KES 15.00" in page and "(payee_locked, 3 times); KES 200.00 is held" in page
    # Refuse: left to be tried again, still listed.
    left = post(client, f"/admin/disputes/allowances/{allowance_id}", {"decision": "refuse", "note": "wait"})
    assert left.status_code == 302
    assert the(allowance_id).tab_amount == 15_00 and available(customer.account_id) == FUNDS - LIMIT
    # Approve without a reason: refused, nothing done.
    post(client, f"/admin/disputes/allowances/{allowance_id}", {"decision": "approve", "note": ""})
    assert the(allowance_id).tab_amount == 15_00
    post(
        client, f"/admin/disputes/allowances/{allowance_id}", {"decision": "approve", "note": "fraud case 12"}
    )
    assert available(customer.account_id) == FUNDS
    assert the(allowance_id).state == "cancelled"
    [entry] = db.session.execute(select(AuditEntry).where(AuditEntry.action == "allowance.void")).scalars()
    detail = json.loads(entry.detail)
    assert (detail["by"], detail["reason"], detail["via"]) == ("Olive Operator", "fraud case 12", "admin")
    assert entry.operator_id is not None
    db.session.commit()
    assert f"/admin/disputes/allowances/{allowance_id}" not in client.get("/admin/disputes").get_data(
        as_text=True
    )
    ledger_ok()
