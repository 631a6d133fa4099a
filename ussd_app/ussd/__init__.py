"""The USSD surface: Africa's Talking's webhook and other gateways', sessions, the menu engine
and the flows."""

from flask import Blueprint

bp = Blueprint("ussd", __name__)


def init_app(app) -> None:
    # views and gateways: the routes on bp (and the ussd_events table), added once, on import
    from .. import tariffs
    from . import caller, flows, gateways, views  # noqa: F401

    caller.listen()
    tariffs.listen()  # a new tariff version is quoted at the next hop (tariffs.py)
    flows.init_app(app)
    app.register_blueprint(bp)
