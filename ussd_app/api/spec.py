"""The OpenAPI 3.1 document, generated from the operations by spectree (pydantic v2 models,
a plain Flask app): each operation declares its models with ``endpoint.operation``, which
registers them here. Served at ``/api/v1/openapi.json`` and read as a page at ``/api/v1/docs``
(``docs.py``)."""

from spectree import Response, SecurityScheme, SpecTree
from spectree.models import SecuritySchemeData

from .schemas import ErrorBody

spec = SpecTree(
    "flask",
    mode="strict",  # only the operations, not the rest of the app
    annotations=False,
    title="Tuma API",
    version="1",
    description=(
        "Get paid, pay out and be told, from a shop's own system. Amounts are integers of minor "
        'units; every POST takes an Idempotency-Key; errors are {"error": {"code", "message"}}.'
    ),
    path="api/v1/_spectree",  # spectree's own pages are not registered (no CDN here)
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(type="http", scheme="bearer", description="An API key (tuma_...)."),
        )
    ],
    validation_error_model=ErrorBody,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
)

# Every operation may answer these (auth, rate, body); each adds its own.
COMMON_ERRORS = {f"HTTP_{s}": ErrorBody for s in (400, 401, 403, 413, 415, 422, 429)}


def responses(**ok) -> Response:
    """``responses(HTTP_200=Model, HTTP_404=ErrorBody)`` plus the common errors."""
    return Response(**COMMON_ERRORS, **ok)
