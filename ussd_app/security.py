"""Protection of the webhooks (Africa's Talking does not sign its callbacks), and the refusal
to run in production with development secrets.

Every request to the ``ussd`` and ``sms`` blueprints (``/ussd``, ``/ussd/events``,
``/sms/delivery``, ``/sms/inbound``) passes these checks, in this order; each is off until
configured, so ``make run`` and the tests work without them:

1. body size: more than ``WEBHOOK_MAX_BODY_BYTES`` → 413 (``/ussd``: a clean ``END``);
2. IP allow-list ``WEBHOOK_ALLOWED_IPS`` (addresses or networks, comma-separated) → 403.
   The client's address is the socket's, or, behind ``WEBHOOK_TRUSTED_PROXIES`` proxies, the
   address that many hops from the right of ``X-Forwarded-For`` (never a client's own claim);
3. shared secret ``WEBHOOK_SECRET``: the callback URL carries ``?key=<secret>``, or the request
   carries it as the HTTP basic-auth password (any user name) → else 403. Prefer basic auth:
   a query string can end up in access logs. ``/sms/*`` also keeps its own older
   ``?token=`` check (``SMS_WEBHOOK_TOKEN``, sms/webhooks.py) when that is set: both must pass;
4. per-phone rate limit ``WEBHOOK_RATE_PER_MINUTE`` (a fixed one-minute window in Redis, by the
   form's ``phoneNumber`` or ``from``) → 429 (``/ussd``: a clean ``END``). If Redis is down the
   request goes through (logged): the webhook must still answer.

None of these ever raises: a refusal is a short plain-text answer, never a 500.
"""

import hmac
import ipaddress
import logging
import time

from flask import Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

log = logging.getLogger(__name__)

PROTECTED_BLUEPRINTS = ("ussd", "sms")
USSD_ENDPOINT = "ussd.ussd"  # the hop itself answers CON/END, even when refused

# The development defaults in config.py; production refuses to start with any of them.
# The known-bad defaults, listed so that production can refuse them.
DEV_SECRETS = {"SECRET_KEY": "dev-only-not-secret", "PIN_PEPPER": "dev-pepper", "AT_API_KEY": "dev-key"}  # nosec B105  # the defaults production refuses, not secrets


class InsecureConfig(RuntimeError):
    """Production was asked to start with a development secret."""


def check_secrets(config) -> None:
    """In production (``TUMA_ENV=production``) every secret must come from the environment:
    refuse to start with a development default or an empty value."""
    if config.get("TUMA_ENV") != "production":
        return
    bad = sorted(name for name, dev in DEV_SECRETS.items() if not config.get(name) or config.get(name) == dev)
    if bad:
        raise InsecureConfig(f"TUMA_ENV=production but {', '.join(bad)} not set in the environment")


def init_app(app) -> None:
    check_secrets(app.config)
    app.before_request(_guard)
    app.register_error_handler(RequestEntityTooLarge, _too_large)


def _refuse(status: int, text: str, ussd_text: str | None = None) -> Response:
    if ussd_text is not None and request.endpoint == USSD_ENDPOINT:
        # Africa's Talking shows our answer on the phone: a clean END, never an error page.
        return Response("END " + ussd_text, status=200, mimetype="text/plain")
    return Response(text, status=status, mimetype="text/plain")


def _too_large(_exc):
    return _refuse(413, "body too large", "Sorry, this request could not be read. Please dial again.")


def _guard():
    if request.blueprint not in PROTECTED_BLUEPRINTS:
        return None
    config = current_app.config
    limit = config.get("WEBHOOK_MAX_BODY_BYTES")
    if limit:
        request.max_content_length = limit  # also caps a body sent without Content-Length
        if request.content_length is not None and request.content_length > limit:
            return _too_large(None)
    allowed = config.get("WEBHOOK_ALLOWED_IPS")
    if allowed and not _ip_allowed(allowed, config.get("WEBHOOK_TRUSTED_PROXIES", 0)):
        log.warning("webhook refused: address not allowed (%s)", request.endpoint)
        return _refuse(403, "forbidden")
    secret = config.get("WEBHOOK_SECRET")
    if secret and not _has_secret(secret):
        log.warning("webhook refused: missing or wrong secret (%s)", request.endpoint)
        return _refuse(403, "forbidden")
    per_minute = config.get("WEBHOOK_RATE_PER_MINUTE")
    if per_minute and _over_rate(per_minute):
        return _refuse(429, "too many requests", "Too many requests. Please wait a minute and dial again.")
    return None


def client_address(trusted_proxies: int) -> str | None:
    """The caller's address: the socket's, or ``trusted_proxies`` hops from the right of
    X-Forwarded-For (each trusted proxy appends the address it saw)."""
    if trusted_proxies > 0:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies]
        return None  # fewer hops than proxies: not through our proxies
    return request.remote_addr


def _ip_allowed(allowed: str, trusted_proxies: int) -> bool:
    try:
        address = ipaddress.ip_address(client_address(trusted_proxies) or "")
    except ValueError:
        return False
    for entry in allowed.split(","):
        try:
            if entry.strip() and address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            log.error("WEBHOOK_ALLOWED_IPS has an entry that is not an address or network")
    return False


def _has_secret(secret: str) -> bool:
    given = request.args.get("key")
    if given is None and request.authorization is not None:
        given = request.authorization.password
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def _over_rate(per_minute: int) -> bool:
    try:
        phone = (request.form.get("phoneNumber") or request.form.get("from") or "").strip()[:32]
    except RequestEntityTooLarge:
        raise
    except Exception:  # an unreadable form: the view will say so
        return False
    if not phone:
        return False
    key = f"tuma:ratelimit:{phone}:{int(time.time() // 60)}"
    try:
        redis = current_app.extensions["redis"]
        count, _ = redis.pipeline().incr(key).expire(key, 120).execute()
    except Exception as exc:  # Redis down: answer anyway (the sessions will say what they can)
        log.error("webhook rate limit unavailable: %s", type(exc).__name__)
        return False
    if count > per_minute:
        log.warning(
            "webhook rate limit: %d requests this minute from one phone (%s)", count, request.endpoint
        )
        return True
    return False
