"""SMS: the outbox the worker writes with every posting, receipts, sending through Africa's
Talking, delivery reports and inbound messages."""

from flask import Blueprint

bp = Blueprint("sms", __name__)


def init_app(app) -> None:
    from . import webhooks  # noqa: F401  (registers the views on bp)

    app.register_blueprint(bp)
