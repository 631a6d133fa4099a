"""The ledger page (``/admin/ledger``): every invariant of ``flask ledger check``, with the trust
account, e-money in circulation and the deposits on record."""

from flask import render_template
from sqlalchemy import func, select

from ...extensions import db
from ...ledger import Account, AccountKind, house_account
from ...ledger import check as ledger_check
from ...payments.models import TrustDeposit
from .. import bp, login_required


def trust_figures(session) -> dict:
    trust = house_account(session, AccountKind.TRUST)
    trust_balance = trust.debits_posted - trust.credits_posted
    circulation = int(
        session.execute(
            select(func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0)).where(
                Account.id != trust.id
            )
        ).scalar_one()
    )
    deposits = int(session.execute(select(func.coalesce(func.sum(TrustDeposit.amount), 0))).scalar_one())
    by_kind = session.execute(
        select(
            Account.kind,
            func.count(),
            func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0),
            func.coalesce(func.sum(Account.debits_pending), 0),
        )
        .where(Account.id != trust.id)
        .group_by(Account.kind)
        .order_by(Account.kind)
    ).all()
    return {
        "trust": trust_balance,
        "circulation": circulation,
        "deposits": deposits,
        "by_kind": [(k, n, int(b), int(h)) for k, n, b, h in by_kind],
    }


@bp.get("/ledger")
@login_required
def ledger():
    figures = trust_figures(db.session)
    findings = ledger_check.check(db.session, trust_deposits_total=figures["deposits"])
    return render_template(
        "admin/ledger.html", findings=findings, ok=all(f.ok for f in findings), figures=figures
    )
