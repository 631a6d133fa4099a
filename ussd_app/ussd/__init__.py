"""The USSD surface: Africa's Talking's webhook, sessions, the menu engine and the flows."""

from flask import Blueprint

bp = Blueprint("ussd", __name__)


def init_app(app) -> None:
    from . import caller, flows, views  # noqa: F401  (views: the routes on bp, and the ussd_events table)

    caller.listen()
    flows.init_app(app)
    app.register_blueprint(bp)
