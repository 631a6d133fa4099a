"""The audit log (``/admin/audit``): the last 200 operator actions, newest first."""

from flask import render_template
from sqlalchemy import select

from ...extensions import db
from .. import bp, login_required
from ..models import AuditEntry


@bp.get("/audit")
@login_required
def audit_log():
    rows = db.session.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(200)).scalars().all()
    from ..models import Operator

    names = {o.id: o.email for o in db.session.execute(select(Operator)).scalars()}
    return render_template("admin/audit.html", rows=rows, names=names)
