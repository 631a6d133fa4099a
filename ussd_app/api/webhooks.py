"""``PUT /api/v1/webhooks`` and ``GET /api/v1/webhooks``: where the key owner's events go
(``ussd_app/events``), which types, and an optional pay-bill validation URL.

The PUT answers with the signing ``secret``: made on the first PUT and kept across later ones
(changing the URL does not change it), unless ``rotate_secret`` is true (then a new one, and the
old one stops signing at once). Like every write here it takes an ``Idempotency-Key``, so a
retried rotation returns the same new secret instead of rotating twice. The GET never shows the
secret. A URL we would not call is refused (422 ``invalid_request``, saying why): in production
only ``https`` to a public address (``events/urls.py``).
"""

from typing import Literal

from pydantic import Field
from sqlalchemy.exc import IntegrityError

from ..events import endpoints
from ..events.models import EventType
from ..extensions import db
from . import bp
from .endpoint import operation
from .errors import ApiError
from .keys import Scope
from .schemas import ErrorBody, In, Out, When

EventName = Literal["*", *[t.value for t in EventType]]  # type: ignore[valid-type]
Url = Field(min_length=1, max_length=2048, examples=["https://shop.example/tuma/events"])


class WebhookSettings(In):
    url: str = Url
    events: list[EventName] | None = Field(
        default=None,
        min_length=1,
        max_length=len(EventType) + 1,
        description='Event types to send; ["*"] or leave out for all.',
        examples=[["payment.received", "payout.posted", "payout.failed"]],
    )
    validation_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Asked before a pay-bill payment to you is accepted; leave out for none.",
        examples=["https://shop.example/tuma/validate"],
    )
    rotate_secret: bool = Field(default=False, description="Make a new signing secret.", examples=[False])


class Webhook(Out):
    url: str = Field(examples=["https://shop.example/tuma/events"])
    events: list[str] = Field(examples=[["payment.received", "payout.posted", "payout.failed"]])
    validation_url: str | None = Field(examples=["https://shop.example/tuma/validate"])
    updated: When


class WebhookWithSecret(Webhook):
    secret: str = Field(
        description="Verify each Tuma-Signature with it (docs/api.md). Kept across PUTs unless rotated.",
        examples=["whsec_q8mJd0wXlV2yZ7nT4bC1aE6rP9sK3uH5gF0iL2oN8jM"],
    )


def _view(endpoint, model=Webhook, **extra):
    return model(
        url=endpoint.url,
        events=endpoint.events.split(","),
        validation_url=endpoint.validation_url,
        updated=endpoint.updated_at,
        **extra,
    )


@bp.put("/webhooks")
@operation(
    scope=Scope.COLLECT,
    json_model=WebhookSettings,
    ok={"HTTP_200": WebhookWithSecret},
    tags=("webhooks",),
    operation_id="putWebhooks",
)
def put_webhooks(caller, body: WebhookSettings, idempotency_key: str):
    """Set where your events go

    One endpoint per key owner: this replaces it. Answers with the signing ``secret``, the
    same on every PUT unless ``rotate_secret`` is true."""
    try:
        configured = endpoints.configure(
            db.session,
            caller.account_id,
            url=body.url,
            events=body.events,
            validation_url=body.validation_url,
            rotate=body.rotate_secret,
        )
    except endpoints.EndpointError as exc:
        raise ApiError("invalid_request", str(exc)) from None
    except IntegrityError:  # a first PUT raced another: theirs stands; this one is a retry away
        raise ApiError("idempotency_in_progress", "Another PUT made this endpoint just now; retry.") from None
    return _view(configured.endpoint, WebhookWithSecret, secret=configured.secret), 200


@bp.get("/webhooks")
@operation(
    scope=Scope.READ,
    ok={"HTTP_200": Webhook, "HTTP_404": ErrorBody},
    tags=("webhooks",),
    operation_id="getWebhooks",
)
def get_webhooks(caller, _data):
    """Where your events go

    The endpoint as set by the last PUT, without its secret (404 before the first PUT)."""
    endpoint = endpoints.for_account(db.session, caller.account_id)
    if endpoint is None:
        raise ApiError("not_found", "No webhook endpoint yet: PUT /api/v1/webhooks.")
    return _view(endpoint), 200
