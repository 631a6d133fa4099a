"""What every Africa's Talking SMS callback gets, whichever package answers it: the body cap,
the ``SMS_WEBHOOK_TOKEN`` check, and form fields checked before anything is written.

Used by the delivery reports (``sms/webhooks.py``) and by the SMS commands people text us
(``sms_commands/views.py``). A malformed body gets a 400 that says what is wrong, never a 500.
Africa's Talking does not sign callbacks: set ``SMS_WEBHOOK_TOKEN`` and register the URLs
with ``?token=...`` to keep strangers out (``security.py`` adds the checks of every webhook).
"""

import hmac

from flask import Blueprint, current_app, request

MAX_BODY_BYTES = 16 * 1024


class Invalid(ValueError):
    """A field is missing or malformed; the message is the 400's body."""


def field(name: str, *, required: bool = True, max_length: int = 64) -> str | None:
    value = request.form.get(name)
    if value is None or not value.strip():
        if required:
            raise Invalid(f"missing field: {name}")
        return None
    value = value.strip()
    if len(value) > max_length:
        raise Invalid(f"field too long: {name}")
    if "\x00" in value:  # no text column (PostgreSQL's) takes a NUL: not a real callback
        raise Invalid(f"malformed field: {name}")
    return value


def plain(text: str, status: int = 200):
    return text, status, {"Content-Type": "text/plain; charset=utf-8"}


def _guard():
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return plain("body too large", 413)
    token = current_app.config.get("SMS_WEBHOOK_TOKEN")
    if token and not hmac.compare_digest(request.args.get("token", ""), token):
        return plain("forbidden", 403)
    return None


def _invalid(exc: Invalid):
    return plain(str(exc), 400)


def protect(bp: Blueprint) -> None:
    """Give ``bp``'s callbacks the body cap, the token check and the 400 for a bad field."""
    bp.before_request(_guard)
    bp.register_error_handler(Invalid, _invalid)
