"""Tuma: mobile money over USSD. ``create_app`` builds the web app; it reads like a table of
contents of the subsystems."""

import os

from flask import Flask

from . import country
from .config import Config


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("TUMA_INSTANCE_PATH") or None)
    app.config.from_object(Config)
    if test_config:
        app.config.update(test_config)
    country.configure(app.config)  # an unknown TUMA_COUNTRY refuses to start

    from . import admin, api, cli, database, models, ops, queues, security, sms, sms_commands, ussd  # noqa: F401

    database.init_app(app)
    queues.init_app(app)
    security.init_app(app)
    ussd.init_app(app)
    sms.init_app(app)
    sms_commands.init_app(app)
    ops.init_app(app)
    admin.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    return app
