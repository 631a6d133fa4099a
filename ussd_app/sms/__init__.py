"""SMS, the transport: the outbox the worker writes with every posting, receipts, sending
through Africa's Talking (``ussd_app/africas_talking.py``) and delivery reports. What people
text us is a channel of its own: ``ussd_app/sms_commands/``."""

from flask import Blueprint

bp = Blueprint("sms", __name__)


def init_app(app) -> None:
    from . import webhooks  # noqa: F401  (registers the views on bp)

    app.register_blueprint(bp)
