"""The ledger page (``/admin/ledger``): every invariant of ``flask ledger check``, with the trust
account, e-money in circulation and the deposits on record."""

from flask import render_template

from ... import reports
from ...extensions import db
from ...ledger import check as ledger_check
from .. import bp, login_required


@bp.get("/ledger")
@login_required
def ledger():
    figures = reports.trust_figures(db.session)
    findings = ledger_check.check(db.session, trust_deposits_total=figures["deposits"])
    return render_template(
        "admin/ledger.html", findings=findings, ok=all(f.ok for f in findings), figures=figures
    )
