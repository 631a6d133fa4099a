"""SMS commands: a channel beside USSD. People text our short code a transaction code (is this
receipt genuine?) or ``REVERSE <code>``; ``inbound.py`` answers through the SMS outbox.
Not part of the SMS transport (``ussd_app/sms/``), which only sends and hears delivery reports."""

from flask import Blueprint

from ..sms.callbacks import protect

bp = Blueprint("sms_commands", __name__)
protect(bp)


def init_app(app) -> None:
    from . import views  # noqa: F401  (registers the view on bp)

    app.register_blueprint(bp)
