"""API keys (``/admin/api-keys``): make a key for a merchant or agent (shown once, on the answer
to the form, never again) and revoke one; each audited (the key's id, never its secret)."""

from flask import flash, redirect, render_template, request, url_for

from ... import phones
from ...api.keys import ALL_SCOPES, KeyRefused, create_key, keys_of, revoke
from ...extensions import db
from ...users import find_by_phone
from .. import bp, login_required
from .common import _text, audit


def _page(form=None, error=None, new_key=None, status=200):
    keys = list(reversed(keys_of(db.session)))
    form = form or {"phone": "", "name": "", "scopes": list(ALL_SCOPES)}
    page = render_template(
        "admin/api_keys.html", keys=keys, form=form, error=error, new_key=new_key, scopes=ALL_SCOPES
    )
    return page, status


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
