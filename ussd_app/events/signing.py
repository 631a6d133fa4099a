"""The signature on everything Tuma POSTs to a merchant's system (events and pay-bill
validation): ``Tuma-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` under
the endpoint's secret, Stripe's scheme. The time is inside what is signed, so a receiver that
refuses old timestamps (five minutes, say) refuses replays."""

import hashlib
import hmac
import secrets
import time

HEADER = "Tuma-Signature"
EVENT_ID_HEADER = "Tuma-Event-Id"
EVENT_TYPE_HEADER = "Tuma-Event-Type"
SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105  # a prefix naming what a value is, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header's value for ``body`` signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, header: str, tolerance: int | None = 300, now: int | None = None
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` (and, with ``tolerance``, was made within
    that many seconds of ``now``). For our own dev tools and tests of them; merchants write their
    own (docs/api.md)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if tolerance is not None and abs((int(time.time()) if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
