"""Transfers held for review (``/admin/review``): those a velocity rule held (``limits.py``,
status ``review``), oldest first, each cleared (queued again, the velocity rules skipped) or
refused (rejected, the payer told by SMS) by ``payments.review``, the decisions ``flask review
clear|refuse`` make; and the allowance settlements refused again and again (``flask review
list``'s second part), each voided by ``allowances.decisions.void_refused`` as ``flask review
void`` does. Every decision needs a reason (at most 200 characters) and is one transaction with
its audit row, naming the signed-in operator; of two operators deciding at once, one wins and
the other is told it was decided."""

from flask import flash, redirect, render_template, request, url_for

from ... import reports
from ...extensions import db
from ...payments import review
from .. import bp, current_operator, login_required
from .common import _text

# Longer than any reason allowed, so one over the limit is refused rather than cut short.
_READ_AT_MOST = review.REASON_LIMIT + 50


@bp.get("/review")
@login_required
def review_page():
    from ...payments import holds
    from ...payments.allowances.settlement import refused_settlements
    from ...payments.models import TransferRequest

    rows = review.held(db.session)
    page = refused_settlements(db.session, start=_start(request.args.get("from")) - 1)
    refused = [
        (allowance, last, db.session.get(TransferRequest, allowance.hold_request_id))
        for allowance, last in page
    ]
    accounts = {r.debit_account_id for r in rows} | {r.credit_account_id for r in rows}
    accounts |= {last.debit_account_id for _, last, _ in refused} | {
        last.credit_account_id for _, last, _ in refused
    }
    holders = reports.account_labels(db.session, accounts)
    allowances = [
        {
            "id": allowance.id,
            "customer": holders.get(last.debit_account_id, last.debit_account_id),
            "merchant": holders.get(last.credit_account_id, last.credit_account_id),
            "owed": allowance.tab_amount,
            "held": hold.amount,
            "hold_code": hold.code,
            "result": last.result,
            "attempts": holds.attempt_of(last.pending_request_id, last.id),
            "last": last.executed_at or last.created_at,
        }
        for allowance, last, hold in refused
    ]
    earlier = max(page.start - page.size, 0) + 1
    return render_template(
        "admin/review.html",
        rows=rows,
        holders=holders,
        allowances=allowances,
        page=page,
        earlier=url_for("admin.review_page", **{"from": earlier}) if page.start else None,
        later=url_for("admin.review_page", **{"from": page.start + len(page) + 1}) if page.more else None,
        limit=review.REASON_LIMIT,
    )


def _start(given: str | None) -> int:
    """``?from=N``: the refused settlements from the N-th on (1 without one, or a bad one)."""
    given = (given or "").strip()
    # ASCII digits only: "²".isdigit() is true but int("²") a ValueError (a 500).
    return int(given) if given.isascii() and given.isdigit() and 0 < len(given) < 10 else 1


@bp.post("/review/<code>")
@login_required
def review_decide(code):
    verdict = request.form.get("decision")
    reason = _text(request.form.get("reason"), _READ_AT_MOST)
    decision = {"clear": review.clear, "refuse": review.refuse}.get(verdict)
    if decision is None:
        flash("Choose Clear or Refuse.", "error")
        return redirect(url_for("admin.review_page"))
    operator = current_operator()
    try:
        done = decision(
            db.session, code, operator=operator.name, reason=reason, operator_id=operator.id, via="admin"
        )
        db.session.commit()  # the workers (clear) or the SMS sender (refuse) are rung now
    except review.ReviewError as exc:
        db.session.rollback()
        flash(f"Refused: {exc}.", "error")
        return redirect(url_for("admin.review_page"))
    if done.outcome == "cleared":
        flash(f"{done.code} cleared: queued again for the worker (the velocity rules skipped).", "ok")
    else:
        flash(f"{done.code} refused: the payer is told by SMS.", "ok")
    return redirect(url_for("admin.review_page"))


@bp.post("/review/allowances/<allowance_id>")
@login_required
def review_void(allowance_id):
    from ...payments.allowances.decisions import DecisionError, void_refused

    reason = _text(request.form.get("reason"), _READ_AT_MOST)
    operator = current_operator()
    try:
        done = void_refused(
            db.session,
            _text(allowance_id, 64),  # printable only: PostgreSQL refuses a NUL (a crafted URL)
            operator=operator.name,
            reason=reason,
            operator_id=operator.id,
            via="admin",
        )
        db.session.commit()
    except DecisionError as exc:
        db.session.rollback()
        flash(f"Refused: {exc}.", "error")
        return redirect(url_for("admin.review_page"))
    if done.already:
        flash(f"Allowance {done.allowance_id} was voided already ({done.code}): nothing done.", "ok")
    else:
        flash(
            f"Allowance {done.allowance_id} voided ({done.code}): the hold is back with the customer, "
            "the charges owed forgiven.",
            "ok",
        )
    return redirect(url_for("admin.review_page"))
