"""The ledger page (``/admin/ledger``): every invariant of ``flask ledger check``, with the trust
account, e-money in circulation and the deposits on record."""

from flask import render_template

from ... import reports
from ...extensions import db
from ...payments.emoney import check_ledger
from .. import bp, login_required


@bp.get("/ledger")
@login_required
def ledger():
    figures = reports.trust_figures(db.session)
    findings = check_ledger(db.session)
    return render_template(
        "admin/ledger.html", findings=findings, ok=all(f.ok for f in findings), figures=figures
    )
