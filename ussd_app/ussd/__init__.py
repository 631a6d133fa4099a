"""The USSD surface: Africa's Talking's webhook, sessions, the menu engine and the flows."""

from flask import Blueprint

bp = Blueprint("ussd", __name__)


def init_app(app) -> None:
    from . import views  # noqa: F401  (registers the routes on bp, and the ussd_events table)

    app.register_blueprint(bp)
