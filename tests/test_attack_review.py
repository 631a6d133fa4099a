"""An outsider's and a careless operator's attacks on the review decisions (``payments/review.py``,
the back office's "Held for review" page, ``flask review clear|refuse``): what must not move money,
what must not reach a browser unescaped, and what a malformed request must not break."""

from datetime import timedelta

import pytest
from sqlalchemy import select

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


def test_a_pin_lock_alone_does_not_stop_a_clear(signed_in, held):  # noqa: F811
    """Wrong PINs lock the menus for a while (not an operator's lock): the payer asked for this
    transfer with the right PIN, so an operator may still clear it."""
    from ussd_app.clock import utcnow

    amina = find_by_phone(db.session, PAYER)
    amina.locked_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    post(signed_in, f"/admin/review/{the(held).code}", {"decision": "clear", "reason": "payer called"})
    assert the(held).status == "queued"


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
