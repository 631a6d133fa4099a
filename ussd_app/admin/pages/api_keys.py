"""API keys (``/admin/api-keys``): make a key for a merchant or agent (shown once, on the answer
to the form, never again) and revoke one; each audited (the key's id, never its secret)."""

import logging
import secrets

from flask import flash, redirect, render_template, request, url_for
from redis.exceptions import RedisError

from ... import phones
from ...api.keys import ALL_SCOPES, KeyRefused, create_key, keys_of, revoke
from ...extensions import db
from ...queues import get_redis
from ...users import find_by_phone
from .. import bp, login_required
from .common import _text, audit

log = logging.getLogger(__name__)

# The form's one-time mark (``once``), kept a day once a key is made with it: the page that
# shows a new key answers the form's POST (the secret never goes through the session cookie),
# so reloading it posted the form again and made a second active key, never shown.
ONCE_KEY = "tuma:admin:api_key_form:"
ONCE_SECONDS = 86_400


def _page(form=None, error=None, new_key=None, status=200):
    keys = list(reversed(keys_of(db.session)))
    form = form or {"phone": "", "name": "", "scopes": list(ALL_SCOPES)}
    page = render_template(
        "admin/api_keys.html",
        keys=keys,
        form=form,
        error=error,
        new_key=new_key,
        scopes=ALL_SCOPES,
        once=secrets.token_urlsafe(16),
    )
    return page, status


def _first_use(once: str) -> bool:
    """Whether the form marked ``once`` has not made a key yet (a form without the mark, from
    a script, is not one the browser can send again by reloading)."""
    if not once:
        return True
    try:
        return bool(get_redis().set(ONCE_KEY + once, 1, nx=True, ex=ONCE_SECONDS))
    except RedisError as exc:  # the key is still made: a reload's second key is the lesser harm
        log.warning("api key form's mark not kept: Redis unavailable (%s)", type(exc).__name__)
        return True


@bp.get("/api-keys")
@login_required
def api_keys():
    return _page()


@bp.post("/api-keys")
@login_required
def api_key_create():
    form = {
        "phone": _text(request.form.get("phone"), 32),
        "name": _text(request.form.get("name"), 60),
        # Every value ticked, known or not: an unknown one (or none) is refused by create_key,
        # never dropped (dropping them all made a key of every scope, payouts included).
        "scopes": [_text(s, 20) for s in request.form.getlist("scopes")],
    }
    if not _first_use(_text(request.form.get("once"), 40)):
        # Reloaded after the key was shown: the key is made (the list below), not made twice.
        return _page(
            form,
            "This form was sent already and its key made (in the list below; its secret was "
            "shown once). Fill the form again for another key.",
            status=409,
        )
    try:
        owner = find_by_phone(db.session, phones.normalize(form["phone"]))
        if owner is None:
            raise KeyRefused(f"no account for {form['phone']}")
        row, key = create_key(db.session, owner, form["name"], form["scopes"])
        audit("api_key.create", row.key_id, phone=owner.phone, name=row.name, scopes=row.scopes)
        db.session.commit()
    except phones.InvalidPhone:
        db.session.rollback()
        return _page(form, "Not a phone number.", status=400)
    except KeyRefused as exc:
        db.session.rollback()
        return _page(form, str(exc), status=400)
    # Shown on this answer only (not flashed: the session cookie is no place for a secret).
    return _page(new_key={"key": key, "key_id": row.key_id, "owner": owner.name})


@bp.post("/api-keys/<key_id>/revoke")
@login_required
def api_key_revoke(key_id):
    row = revoke(db.session, _text(key_id, 20))
    if row is None:
        db.session.rollback()
        flash("No such key.", "error")
        return redirect(url_for("admin.api_keys"))
    audit("api_key.revoke", row.key_id, phone=row.owner.phone, name=row.name)
    db.session.commit()
    flash(f"Revoked key {row.key_id} ({row.name}); it stops working at once.", "ok")
    return redirect(url_for("admin.api_keys"))
