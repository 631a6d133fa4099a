"""The merchant API, ``/api/v1``: get paid, pay out and read the wallet from a shop's own system.

One place per idea:

| idea | module |
|---|---|
| keys (hashed, scoped) and their CLI | ``keys.py``, ``cli.py`` |
| who is calling (``Authorization: Bearer``) | ``auth.py`` |
| per-key rate limits | ``rates.py`` |
| errors and their stable codes | ``errors.py`` |
| Idempotency-Key on every POST | ``idempotency.py`` |
| how one operation runs, in order | ``endpoint.py`` |
| the shapes in and out | ``schemas.py`` |
| the OpenAPI document and its page | ``spec.py``, ``docs.py`` |
| one module per resource | ``balance``, ``transactions``, ``payouts``, ``refunds``, ``payment_requests``, |
| | ``allowances`` |

The API records requests; the worker executes them (``payments/execute.py``), as for USSD.
Nothing here commits except ``endpoint.operation``, once per request.
"""

import importlib

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1", template_folder="templates")

# Resource modules, each adding its routes to ``bp`` when imported (``webhooks`` if present).
RESOURCES = (
    "balance",
    "transactions",
    "payouts",
    "refunds",
    "payment_requests",
    "allowances",
    "webhooks",
    "docs",
)


def _load() -> None:
    from . import errors

    errors.register(bp)
    for name in RESOURCES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


_load()


def check_config(config) -> None:
    """In production, refuse to start with the API's protections off or weakened."""
    from ..security import InsecureConfig

    if config.get("TUMA_ENV") != "production":
        return
    refused = []
    if not config.get("API_RATE_PER_MINUTE"):
        refused.append("TUMA_API_RATE_PER_MINUTE is 0 (no per-key rate limit)")
    if not 0 < int(config.get("API_MAX_BODY_BYTES") or 0) <= 16 * 1024 * 1024:
        refused.append("TUMA_API_MAX_BODY_BYTES is not between 1 byte and 16 MiB")
    if int(config.get("API_IDEMPOTENCY_HOURS") or 0) < 24:
        refused.append("TUMA_API_IDEMPOTENCY_HOURS is under 24 (a retry the next day would pay twice)")
    if refused:
        raise InsecureConfig("TUMA_ENV=production but " + "; and ".join(refused))


def init_app(app) -> None:
    from . import cli, errors

    check_config(app.config)
    errors.init_app(app)
    app.register_blueprint(bp)
    app.register_blueprint(cli.api_keys_cli)
