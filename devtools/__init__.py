"""Development tools, kept out of the service: ``make run`` and the tests load them, the
production app (``ussd_app.create_app``, ``wsgi.py``, ``python -m worker``) never does.

| module | what |
| --- | --- |
| ``devserver.py`` | ``make run``: the whole service on one machine (``python -m devtools.devserver``) |
| ``gateway/`` | the local Africa's Talking gateway with its fault API (``python -m devtools.gateway``) |
| ``receiver/`` | a local merchant's system: webhooks, validation (``python -m devtools.receiver``) |
| ``news/`` | the demo news site: articles charged to an allowance (``python -m devtools.news``) |
| ``simulator/`` | the phone simulator (``/simulator/``), on only with ``TUMA_SIMULATOR_ENABLED`` |
| ``demo.py`` | ``flask --app devtools demo seed`` and ``demo operator`` |
| ``faults.py`` | fault checkpoints for the crash tests, installed as SQLAlchemy events |

``create_app`` is the service's own app with the simulator and the demo commands added
(``flask --app devtools ...``, gunicorn ``devtools:create_app()``).
"""

from ussd_app import create_app as create_service_app


def init_app(app) -> None:
    """Add the phone simulator and the demo commands to a development app. The simulator still
    answers only when ``SIMULATOR_ENABLED`` (and never in production: ``create_app`` refuses
    to start with it on, and the simulator answers 404 there)."""
    from . import simulator
    from .demo import demo_cli

    simulator.init_app(app)
    app.register_blueprint(demo_cli)


def create_app(test_config: dict | None = None):
    app = create_service_app(test_config)
    init_app(app)
    return app
