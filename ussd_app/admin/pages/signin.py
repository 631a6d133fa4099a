"""Signing in and out (``/admin/login``, ``/admin/logout``): throttled, audited, and the session
kept on the server (``operator_sessions.py``)."""

import logging

from flask import current_app, redirect, render_template, request, session, url_for

from ...extensions import db
from .. import SESSION_KEY, bp, current_operator, login_required, operator_sessions, throttle
from ..models import find_operator, normalize_email, record, utcnow, verify_sign_in
from .common import _text, audit

log = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("admin.dashboard")


SIGN_IN_UNAVAILABLE = (
    "Sign-in is unavailable for a moment (the session store cannot be reached). Try again shortly."
)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method != "POST":
        return render_template("admin/login.html", error=None)
    email = normalize_email(_text(request.form.get("email"), 200))
    password = (request.form.get("password") or "")[:1000]
    try:
        attempt = throttle.take(email, throttle.client_address())
    except Exception as exc:  # Redis down: no throttle, no session store, so no sign-in
        log.error("admin sign-in: throttle unavailable: %s", type(exc).__name__)
        return render_template("admin/login.html", error=SIGN_IN_UNAVAILABLE), 503
    operator = find_operator(db.session, email)
    # The target is the operator's email, never what was typed when no operator has it: a
    # password typed in the wrong box must not land in the audit log in clear.
    target = operator.email if operator else "(no such operator)"
    if attempt.refused:
        log.warning("admin sign-in throttled (%s)", attempt.refused_by)
        error = (
            f"Too many failed sign-ins for this account or from this network. "
            f"Sign-in is paused: try again in {attempt.minutes} minute{'s' if attempt.minutes != 1 else ''}."
        )
        return (
            render_template("admin/login.html", error=error),
            429,
            {"Retry-After": str(attempt.retry_after)},
        )
    if not verify_sign_in(operator, password):
        why = (
            "unknown email"
            if operator is None
            else ("deactivated" if not operator.active else "wrong password")
        )
        record(db.session, operator.id if operator else None, "login.refused", target, why=why)
        if attempt.locks:  # this failure filled a limit: once per lock, never per refusal
            minutes = current_app.config.get("ADMIN_SIGNIN_LOCK_MINUTES") or 15
            record(
                db.session,
                operator.id if operator else None,
                "login.locked",
                target,
                by=attempt.locks,
                minutes=minutes,
            )
        db.session.commit()
        log.warning("admin sign-in refused")
        return render_template("admin/login.html", error="Wrong email or password."), 401
    try:
        throttle.give_back(attempt)
        token = operator_sessions.start(operator.id)
    except Exception as exc:
        log.error("admin sign-in: session store unavailable: %s", type(exc).__name__)
        return render_template("admin/login.html", error=SIGN_IN_UNAVAILABLE), 503
    session.clear()  # a fresh session: nothing carried over from before sign-in
    session[SESSION_KEY] = token
    operator.last_login_at = utcnow()
    record(db.session, operator.id, "login", operator.email)
    db.session.commit()
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
@login_required
def logout():
    audit("logout", current_operator().email)
    db.session.commit()
    operator_sessions.end(session.get(SESSION_KEY), current_operator().id)
    session.clear()
    return redirect(url_for("admin.login"))
