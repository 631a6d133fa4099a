"""The phone simulator: a feature phone in a web page that drives the real /ussd webhook."""

from flask import Blueprint

bp = Blueprint("simulator", __name__, url_prefix="/simulator")


def init_app(app) -> None:
    app.register_blueprint(bp)
