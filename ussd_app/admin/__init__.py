"""The operator back office at /admin.

- Operators sign in with email and password (argon2id hash; ``flask operators create``).
  Failed sign-ins are throttled per account and per client address (``throttle.py``).
- The session lives on the server (``operator_sessions.py``, Redis); the signed cookie holds
  only its random token. It ends at once on sign-out, on deactivation, after
  ``ADMIN_IDLE_MINUTES`` without a page and ``ADMIN_ABSOLUTE_HOURS`` after sign-in. In
  production the cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Lax``.
- Every POST to /admin carries a CSRF token (Flask-WTF), the sign-in form included.
- Every action writes an ``audit_log`` row in the same transaction as the change.
- One module per page in ``pages/``; the disputes page's decision sources are wired in
  ``decisions.py`` and the tier form's provider in ``tiers.py``, both from ``init_app``.
"""

import functools
import logging

from flask import (
    Blueprint,
    current_app,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import NullSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError

from ..extensions import db
from . import operator_sessions

ADMIN_PREFIX = "/admin"
ADMIN_PATHS = ADMIN_PREFIX + "/"  # and the pages under it (not "/administrator")
bp = Blueprint("admin", __name__, url_prefix=ADMIN_PREFIX, template_folder="templates")

SESSION_KEY = "admin_session"  # the cookie's only back-office entry: a random token

log = logging.getLogger(__name__)


def current_operator():
    return g.get("operator")


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_operator() is None:
            return redirect(
                url_for("admin.login", next=request.full_path if request.method == "GET" else None)
            )
        return view(*args, **kwargs)

    return wrapped


@bp.before_request
def _load_operator_and_check_csrf():
    from .models import Operator

    # Flask-WTF caches the token on ``g``, which lives as long as the app context: one request
    # in production, but a whole test (or shell) that holds a context. Start each request clean.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    if request.method == "POST" and current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(request.form.get("csrf_token"))
        except (ValidationError, CSRFError):
            return render_template(
                "admin/error.html",
                message="This form has expired or did not come from "
                "this site. Go back, reload the page and try again.",
            ), 400
    g.operator = None
    token = session.get(SESSION_KEY)
    if token is None:
        return None
    try:
        operator_id = operator_sessions.operator_id(token)
    except Exception as exc:  # Redis down: nobody is signed in (sign-in says why)
        log.error("back office: operator sessions unavailable: %s", type(exc).__name__)
        operator_id = None
    operator = db.session.get(Operator, operator_id) if operator_id is not None else None
    if operator is None or not operator.active:
        session.pop(SESSION_KEY, None)
        if operator is not None:
            operator_sessions.end(token, operator.id)
        return None
    g.operator = operator
    return None


@bp.app_template_global()
def csrf_token() -> str:
    return generate_csrf()


@bp.after_request
def _no_store(response):
    # Back-office pages show balances and phone numbers: never cache them.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


class _NoSession(NullSession):
    """The session outside the back office: empty, read-only, never saved. Only /admin signs
    anyone in or keeps a CSRF token; writing to it elsewhere is a mistake, said so."""

    def _fail(self, *args, **kwargs):
        raise RuntimeError("the signed-cookie session is the back office's: only /admin opens one")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail
    del _fail


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, for the back office only (its sign-in and CSRF token).

    A request outside /admin (every USSD hop, SMS callback, API call) gets ``_NoSession``: its
    cookie is not read and nothing is saved (Flask skips saving a null session), where Flask
    would read the cookie header, open a session and, after the view, ask seven cookie
    settings to decide to write nothing. The cookie's path is the back office's
    (``get_cookie_path``), and a copy sent elsewhere anyway is not read: only /admin reads or
    changes it. There the session is exactly Flask's, cookie rules,
    signing, refresh and "Vary: Cookie" included (opened without building a signer when the
    request carries no session cookie)."""

    def open_session(self, app, request):
        path = request.path
        if not (path == ADMIN_PREFIX or path.startswith(ADMIN_PATHS)):
            return _NoSession()  # a NullSession: Flask never saves it
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()  # what Flask answers for no cookie, signer aside
        return super().open_session(app, request)

    def get_cookie_path(self, app) -> str:
        """The back office's path as the browser asks for it: ``/admin``, or under a proxy's
        prefix (``SCRIPT_NAME``) ``/tuma/admin``, so the browser sends the cookie back there
        and nowhere else (a fixed ``/admin`` is never returned under a prefix: nobody could
        sign in)."""
        return (request.script_root if has_request_context() else "") + ADMIN_PREFIX


def init_app(app) -> None:
    from . import decisions, pages, tiers  # noqa: F401  (pages: routes on bp)

    app.session_interface = _CookieSessions()
    from .cli import operators_cli

    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.config.get("TUMA_ENV") == "production":
        # Production is served over HTTPS only: the cookie never travels in clear.
        app.config["SESSION_COOKIE_SECURE"] = True
    tiers.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(operators_cli)
    decisions.init_app(app)
