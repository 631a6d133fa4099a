"""Disputes and reversals waiting for an operator (``/admin/disputes``), from the decision sources
registered in ``admin/decisions.py``; each decision is audited and its receipts rung."""

import logging

from flask import abort, flash, redirect, render_template, request, url_for

from ...extensions import db
from .. import bp, current_operator, login_required, seams
from .common import _text, audit

log = logging.getLogger(__name__)


@bp.get("/disputes")
@login_required
def disputes():
    pending, notes = [], []
    for source in seams.decision_sources().values():
        if hasattr(source, "listed"):  # a source that lists a page at a time says how many wait
            found, note = source.listed(db.session)
            notes += [note] if note else []
        else:
            found = source.pending(db.session)
        pending += found
    return render_template(
        "admin/disputes.html", pending=pending, notes=notes, sources=seams.decision_sources()
    )


@bp.post("/disputes/<source>/<decision_id>")
@login_required
def decide(source, decision_id):
    provider = seams.decision_sources().get(source)
    verdict = request.form.get("decision")
    note = _text(request.form.get("note"), 200)
    if provider is None or verdict not in ("approve", "refuse"):
        abort(404)
    if not decision_id.isprintable():  # PostgreSQL refuses a NUL (a crafted link): no decision's
        flash(f"Refused: no such decision {_text(decision_id, 100)!r}.", "error")
        return redirect(url_for("admin.disputes"))
    try:
        outcome = provider.decide(db.session, decision_id, verdict == "approve", current_operator().id, note)
        audit(f"decision.{verdict}", f"{source}:{decision_id}"[:100], note=note, outcome=outcome)
        db.session.commit()
        flash(outcome, "ok")
    except ValueError as exc:
        db.session.rollback()
        flash(f"Refused: {exc}", "error")
    return redirect(url_for("admin.disputes"))  # a decision's receipts rang the sender at commit
