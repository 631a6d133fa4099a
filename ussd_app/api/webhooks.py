"""``PUT /api/v1/webhooks`` and ``GET /api/v1/webhooks``: where the key owner's events go
(``ussd_app/events``), which types, and an optional pay-bill validation URL.

The signing ``secret`` is shown twice only: in the answer to the PUT that creates the endpoint,
and in the answer to a PUT with ``rotate_secret`` true (a new one; the old one stops signing at
once). Any other PUT, and the GET, answer without it: a key that can set the endpoint (even a
leaked one) cannot read the secret and sign events of its own; a merchant that lost its secret
rotates.

The PUT is idempotent by nature (it sets the whole endpoint), so it does **not** go through the
idempotency store (``idempotency.py``, which keeps each answer 24 hours): no secret is ever
written there or replayed. An ``Idempotency-Key`` sent with it is ignored. The cost: a
rotation retried after a lost answer rotates again, and the secret in the last answer is the
one that signs. A URL we would not call is refused (422 ``invalid_request``, saying why): in
production only ``https`` to a public address (``events/urls.py``).
"""

from functools import wraps
from typing import Literal

from flask import jsonify
from pydantic import Field
from sqlalchemy.exc import IntegrityError

from ..events import endpoints
from ..events.models import EventType
from ..extensions import db
from . import bp
from .auth import authenticate, require_scope
from .endpoint import json_body, operation, validated
from .errors import ApiError
from .keys import Scope
from .schemas import ErrorBody, In, Out, When
from .spec import responses, spec

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
    secret: str | None = Field(
        default=None,
        description=(
            "Verify each Tuma-Signature with it (docs/api.md). Only in the answer to the PUT that"
            " creates the endpoint or rotates the secret; left out otherwise (lost it? PUT with"
            " rotate_secret true)."
        ),
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


def _unstored_write(view):
    """The steps of ``endpoint.operation`` for a write (key, scope, body within its limit,
    validated; one commit; a refusal rolls back), without the idempotency store: the answer
    may hold a secret, which must not be kept or replayed."""

    @wraps(view)
    def run():
        try:
            caller = authenticate()
            require_scope(caller, Scope.COLLECT)
            body = validated(WebhookSettings, json_body())
            model, status = view(caller, body)
            response = jsonify(model.model_dump(mode="json", exclude_unset=True))
            response.status_code = status
            db.session.commit()
            return response
        except BaseException:
            db.session.rollback()
            raise

    return spec.validate(
        json=WebhookSettings,
        resp=responses(HTTP_200=WebhookWithSecret, HTTP_409=ErrorBody),
        tags=("webhooks",),
        security={"bearer": []},
        skip_validation=True,
        operation_id="putWebhooks",
    )(run)


@bp.put("/webhooks")
@_unstored_write
def put_webhooks(caller, body: WebhookSettings):
    """Set where your events go

    One endpoint per key owner: this replaces it. The signing ``secret`` is in the answer only
    when this PUT creates the endpoint or has ``rotate_secret`` true. Not kept by the
    idempotency store (it is idempotent by nature): no ``Idempotency-Key`` needed."""
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
    if configured.created or configured.rotated:
        return _view(configured.endpoint, WebhookWithSecret, secret=configured.secret), 200
    return _view(configured.endpoint, WebhookWithSecret), 200


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
