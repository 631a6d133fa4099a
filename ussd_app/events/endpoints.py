"""A merchant's webhook endpoint: set by ``PUT /api/v1/webhooks`` (``ussd_app/api/webhooks.py``)
and by the demo seed. The signing secret is made on the first PUT and kept across later ones
(a merchant changing the URL keeps verifying with the secret it has); ``rotate`` makes a new
one, and the old one stops signing at once. The API shows the secret only when it is made."""

import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from . import signing, urls
from .models import EventType, WebhookEndpoint, utcnow

MAX_EVENT_TYPES = len(EventType)
RESOLVE_SECONDS = 5.0  # a PUT waits at most this long for the URL's host name to resolve


class EndpointError(ValueError):
    """Input we refuse: the message says what is wanted, for the merchant."""


@dataclass(frozen=True)
class Configured:
    endpoint: WebhookEndpoint
    secret: str  # shown to the merchant only when created or rotated (api/webhooks.py)
    created: bool
    rotated: bool


def event_types(raw) -> str:
    """The stored form of a list of event types: sorted, comma-separated; "*" for all."""
    if raw is None:
        return "*"
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw) or not raw:
        raise EndpointError('events: a non-empty list of event types, or ["*"]')
    known = {t.value for t in EventType}
    unknown = sorted(set(raw) - known - {"*"})
    if unknown:
        raise EndpointError(f"events: unknown type {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return "*" if "*" in raw else ",".join(sorted(set(raw)))


def check_url(url, field: str) -> str:
    """``url`` if we would call it (``urls.check``: https and a public address in production,
    resolved now; elsewhere its form only, resolved when it is called)."""
    production = current_app.config.get("TUMA_ENV") == "production"
    try:
        if production:
            urls.check(url, production=True, deadline=time.monotonic() + RESOLVE_SECONDS)
        else:
            urls.parse(url, production=False)
    except urls.UnsafeURL as exc:
        raise EndpointError(f"{field}: {exc}") from None
    except urls.CallFailed:
        raise EndpointError(f"{field}: a host that resolves in time") from None
    return url


def for_account(session, account_id: int) -> WebhookEndpoint | None:
    return session.execute(
        select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id)
    ).scalar_one_or_none()


def configure(
    session,
    account_id: int,
    *,
    url,
    events=None,
    validation_url=None,
    rotate: bool = False,
    secret: str | None = None,
) -> Configured:
    """Set the merchant's endpoint (one per account) in the caller's transaction; no commit.
    ``secret`` is for the demo seed only (a known secret its local receiver verifies with)."""
    check_url(url, "url")
    types = event_types(events)
    if validation_url is not None:
        check_url(validation_url, "validation_url")
    endpoint = for_account(session, account_id)
    now = utcnow()
    if endpoint is None:
        endpoint = WebhookEndpoint(
            account_id=account_id,
            url=url,
            events=types,
            secret=secret or signing.new_secret(),
            created_at=now,
        )
        endpoint.validation_url = validation_url
        endpoint.updated_at = now
        session.add(endpoint)
        session.flush()
        return Configured(endpoint, endpoint.secret, created=True, rotated=False)
    endpoint.url, endpoint.events, endpoint.validation_url, endpoint.updated_at = (
        url,
        types,
        validation_url,
        now,
    )
    if rotate or secret:
        endpoint.secret = secret or signing.new_secret()
    session.flush()
    return Configured(endpoint, endpoint.secret, created=False, rotated=bool(rotate or secret))
