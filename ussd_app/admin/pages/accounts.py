"""Accounts (``/admin/accounts``): find a person, lock and unlock them, change a customer's KYC
tier (``admin/tiers.py``), each audited."""

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from ... import phones
from ...extensions import db
from ...users import OPERATOR_LOCK_UNTIL, User, is_operator_locked
from .. import bp, current_operator, login_required, seams
from ..models import utcnow
from .common import PAGE, _text, audit, money


def _people_matching(q: str) -> list[User]:
    q = _text(q, 60)
    if not q:
        return list(db.session.execute(select(User).order_by(User.id.desc()).limit(PAGE)).scalars())
    conditions = []
    try:
        conditions.append(User.phone == phones.normalize(q))
    except phones.InvalidPhone:
        pass
    digits = "".join(c for c in q if c.isdigit())
    if len(digits) >= 4:
        conditions.append(User.phone.like(f"%{digits}%"))
    pattern = f"%{q.lower()}%"
    conditions.append(func.lower(User.first_name + " " + User.last_name).like(pattern))
    if q.isdigit():
        conditions.append(User.till == q)
    return list(
        db.session.execute(select(User).where(or_(*conditions)).order_by(User.id).limit(PAGE)).scalars()
    )


def lock_state(user: User) -> str | None:
    if user.locked_until is None or user.locked_until <= utcnow():
        return None
    if is_operator_locked(user):
        return "locked by an operator"
    return f"PIN lock until {user.locked_until:%Y-%m-%d %H:%M} UTC"


@bp.get("/accounts")
@login_required
def accounts():
    q = request.args.get("q", "")
    people = _people_matching(q)
    provider = seams.tier_provider()
    return render_template(
        "admin/accounts.html",
        q=q,
        people=people,
        lock_state=lock_state,
        tier_of=seams.tier_of,
        tiers=provider.tiers if provider else [],
    )


def _person(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/accounts/<int:user_id>/lock")
@login_required
def lock(user_id):
    user = _person(user_id)
    reason = _text(request.form.get("reason"), 200)
    if not reason:
        flash("Say why the account is locked.", "error")
        return redirect(url_for("admin.accounts", q=user.phone))
    user.locked_until = OPERATOR_LOCK_UNTIL
    audit("account.lock", user.phone, reason=reason)
    db.session.commit()
    flash(f"Locked {user.name} {user.phone}.", "ok")
    return redirect(url_for("admin.accounts", q=user.phone))


@bp.post("/accounts/<int:user_id>/unlock")
@login_required
def unlock(user_id):
    from ...ussd.pin_guard import unlock_pin

    user = _person(user_id)
    was = lock_state(user)
    unlock_pin(db.session, user, operator=True)
    audit("account.unlock", user.phone, was=was)
    db.session.commit()
    flash(f"Unlocked {user.name} {user.phone}.", "ok")
    return redirect(url_for("admin.accounts", q=user.phone))


@bp.post("/accounts/<int:user_id>/tier")
@login_required
def upgrade_tier(user_id):
    user = _person(user_id)
    provider = seams.tier_provider()
    tier = (request.form.get("tier") or "").strip()
    document = _text(request.form.get("id_document"), 60)
    if provider is None:
        flash("Tiers cannot be changed here yet.", "error")
    elif tier not in provider.tiers or not document:
        flash("Choose a tier and record the ID document checked (or why the tier is lowered).", "error")
    else:
        old = provider.tier_of(user)
        try:
            provider.upgrade(db.session, user, tier, current_operator().id, document)
            audit("account.tier", user.phone, old_tier=old, new_tier=tier, id_document=document)
            db.session.commit()
            flash(f"{user.name} {user.phone}: tier {old} → {tier}.", "ok")
            _warn_over_balance_limit(user, tier)
        except ValueError as exc:
            db.session.rollback()
            flash(f"Refused: {exc}", "error")
    return redirect(url_for("admin.accounts", q=user.phone))


def _warn_over_balance_limit(user: User, tier: str) -> None:
    from ...limits import tier_limits

    balance = user.account.credits_posted - user.account.debits_posted
    limit = tier_limits(tier).max_balance
    if balance > limit:
        flash(
            f"{user.name} holds {money(balance)}, over the {tier} tier's balance limit of {money(limit)}: "
            "they cannot receive money until their balance is below it.",
            "error",
        )
