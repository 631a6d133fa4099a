"""Tuma: mobile money over USSD. ``create_app`` builds the web app; it reads like a table of
contents of the subsystems."""

import os
import types

from flask import Flask

from . import country
from .config import Config
from .forms import TumaRequest


class Tuma(Flask):
    """Flask, with ``ensure_sync``'s answer remembered for each plain function: Flask asks it of
    every hook and view on every request (five times for a USSD hop, each an
    ``inspect.iscoroutinefunction``), and a function's answer never changes. Flask's docs name
    ``ensure_sync`` as the method to override; anything but a plain function defined once is
    asked as before (a bound method or a closure is a new object each time).

    Its requests read a URL-encoded form the short way (``forms.py``: the same fields, limits
    and refusals as Werkzeug's)."""

    request_class = TumaRequest

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        found = self._sync.get(func) if type(func) is types.FunctionType else None
        if found is None:
            found = super().ensure_sync(func)
            # Only functions defined once (a module's or a class's, not a closure made per
            # request, as ``after_this_request`` takes): the table stays as small as the app.
            if type(func) is types.FunctionType and "<locals>" not in func.__qualname__:
                if len(self._sync) < 4096:
                    self._sync[func] = found
        return found


def create_app(test_config: dict | None = None) -> Flask:
    app = Tuma(__name__, instance_path=os.environ.get("TUMA_INSTANCE_PATH") or None)
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
