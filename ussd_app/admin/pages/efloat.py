"""E-float issue (``/admin/float``): record a trust bank deposit and issue the same amount to an
agent, audited."""

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ... import phones
from ...extensions import db
from ...money import InvalidAmount, parse_major
from ...payments.emoney import FloatError, issue_float_and_commit
from ...payments.models import TrustDeposit
from ...users import Role, find_by_phone
from .. import bp, login_required
from .common import _text, audit, money


@bp.route("/float", methods=["GET", "POST"])
@login_required
def float_issue():
    form = {"phone": "", "amount": "", "reference": ""}
    error = None
    if request.method == "POST":
        form = {k: _text(request.form.get(k), 64) for k in form}
        try:
            minor = parse_major(form["amount"])
            agent = find_by_phone(db.session, phones.normalize(form["phone"]))
            if agent is None:
                raise FloatError(f"no account for {form['phone']}")
            if agent.role != Role.AGENT.value:
                raise FloatError(f"{agent.name} is a {agent.role}, not an agent")
            if not form["reference"]:
                raise FloatError("record the trust bank deposit's reference")
            phone = agent.phone

            def audited(issued):
                audit("float.issue", issued.code, phone=phone, amount=minor, reference=issued.reference)

            # Once per reference, whatever races; committed with its audit row (payments/emoney.py).
            issued = issue_float_and_commit(db.session, agent.id, minor, form["reference"], also=audited)
        except InvalidAmount:
            db.session.rollback()
            error = f"The amount is a whole number of {current_app.config['CURRENCY']}, more than 0."
        except phones.InvalidPhone:
            db.session.rollback()
            error = "Not a phone number."
        except FloatError as exc:
            db.session.rollback()
            error = str(exc)
        else:
            flash(f"{issued.code}: issued {money(minor)} to {agent.name} {agent.phone}.", "ok")
            return redirect(url_for("admin.float_issue"))
    deposits = list(
        db.session.execute(select(TrustDeposit).order_by(TrustDeposit.id.desc()).limit(20)).scalars()
    )
    currency = current_app.config["CURRENCY"]
    return render_template(
        "admin/float.html", form=form, error=error, deposits=deposits, currency=currency
    ), (400 if error else 200)
