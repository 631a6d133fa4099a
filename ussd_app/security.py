"""Protection of the webhooks (Africa's Talking does not sign its callbacks), and the refusal
to run in production with development secrets.

Every request to the ``ussd``, ``sms`` and ``sms_commands`` blueprints (``/ussd``,
``/ussd/events``, ``/sms/delivery``, ``/sms/inbound``) passes these checks, in this order; each
is off until configured, so ``make run`` and the tests work without them:

1. body size: more than ``WEBHOOK_MAX_BODY_BYTES`` → 413 (``/ussd``: a clean ``END``);
2. IP allow-list ``WEBHOOK_ALLOWED_IPS`` (addresses or networks, comma-separated) → 403.
   The client's address is the socket's (``remote_addr``). ``X-Forwarded-For`` is believed only
   when that socket's peer is one of our own proxies, ``WEBHOOK_TRUSTED_PROXIES`` (addresses or
   networks, comma-separated): then the client is the right-most address in it that is not one
   of our proxies (each proxy appends the address it saw; anything left of that is the caller's
   own claim). A direct caller's ``X-Forwarded-For`` is never read. The older form, a bare
   count of proxies, trusts the header from any peer: it still works outside production (and
   is logged as unsafe), and production refuses to start with it;
3. shared secret ``WEBHOOK_SECRET``: the callback URL carries ``?key=<secret>``, or the request
   carries it as the HTTP basic-auth password (any user name) → else 403. Prefer basic auth:
   a query string can end up in access logs. ``/sms/*`` also keeps its own older
   ``?token=`` check (``SMS_WEBHOOK_TOKEN``, sms/callbacks.py) when that is set: both must pass;
4. per-phone rate limit ``WEBHOOK_RATE_PER_MINUTE`` (a fixed one-minute window in Redis) →
   429 (``/ussd``: a clean ``END``). The key is the form's ``phoneNumber`` (or ``from``) in
   E.164, read once by ``caller_phone`` (``phones.normalize_mobile``), so ``0711…``,
   ``+254 711 …``, ``tel:+254711…`` and ``254-711-…`` share one count, and the views use that
   same number. A missing field, or one that is not a mobile number of our own country, is
   counted against the client's address instead (its own bucket), so made-up numbers cannot be
   used to get a fresh count per request. If Redis is down the request goes through (logged):
   the webhook must still answer. A ``/ussd`` hop from a valid number is counted by the hop
   itself, in the one Redis round trip that takes its session (``deferred_rate``,
   ``ussd.sessions.locked``): the same key and limit, still before anything is done.

None of these ever raises: a refusal is a short plain-text answer, never a 500.

In production (``TUMA_ENV=production``) ``check_config`` refuses to start (``InsecureConfig``)
with a development secret, with open webhooks (neither ``WEBHOOK_SECRET`` nor
``WEBHOOK_ALLOWED_IPS``: anyone who reaches ``/ussd`` could act as any phone number), with the
phone simulator on, with ``WEBHOOK_TRUSTED_PROXIES`` given as a count, or with a network in
``WEBHOOK_ALLOWED_IPS`` or ``WEBHOOK_TRUSTED_PROXIES`` wider than ``WIDEST_NETWORK`` (``0.0.0.0/0``
would believe X-Forwarded-For from anyone, or allow everyone while looking like a closed door),
or with a ``DATABASE_URL`` naming several hosts without ``target_session_attrs=read-write``
(after a failover libpq would write to whichever answered first). A malformed ``WEBHOOK_ALLOWED_IPS``,
``WEBHOOK_TRUSTED_PROXIES`` or ``REDIS_SENTINELS`` refuses to start in every environment.
"""

import hmac
import ipaddress
import logging
import time

from flask import Response, current_app, request
from flask.globals import _cv_request
from werkzeug.exceptions import RequestEntityTooLarge

from . import phones
from .queues import sentinel_addresses

log = logging.getLogger(__name__)

PROTECTED_BLUEPRINTS = ("ussd", "sms", "sms_commands")
_CALLER_PHONE = "tuma.caller_phone"  # where caller_phone keeps its answer for the request

# The development defaults in config.py; production refuses to start with any of them.
# The known-bad defaults, listed so that production can refuse them.
DEV_SECRETS = {"SECRET_KEY": "dev-only-not-secret", "PIN_PEPPER": "dev-pepper", "AT_API_KEY": "dev-key"}  # nosec B105  # the defaults production refuses, not secrets


# The widest network production accepts in an address list, by IP version: a /8 is the largest
# private range (10.0.0.0/8) and larger than any block Africa's Talking calls from; a /32 is a
# whole provider's IPv6 allocation. Wider is not a list of our proxies or of Africa's Talking,
# it is a large part of the internet. IPv6 networks that embed IPv4 addresses (IPv4-mapped
# ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96``) are held to the IPv4 bound on the embedded part.
WIDEST_NETWORK = {4: 8, 6: 32}
_EMBEDDED_IPV4 = tuple(ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96"))


def too_wide(network) -> bool:
    """Whether ``network`` is wider than production accepts (``WIDEST_NETWORK``)."""
    if network.version == 6:
        for embedding in _EMBEDDED_IPV4:
            if network.overlaps(embedding):
                # Inside the embedding: held to the IPv4 bound; containing it: wider still.
                return network.prefixlen < embedding.prefixlen + WIDEST_NETWORK[4]
    return network.prefixlen < WIDEST_NETWORK[network.version]


class InsecureConfig(RuntimeError):
    """Production was asked to start with a development secret or an open door, or a security
    setting cannot be read."""


def check_secrets(config) -> None:
    """In production (``TUMA_ENV=production``) every secret must come from the environment:
    refuse to start with a development default or an empty value."""
    if config.get("TUMA_ENV") != "production":
        return
    bad = sorted(name for name, dev in DEV_SECRETS.items() if not config.get(name) or config.get(name) == dev)
    if bad:
        raise InsecureConfig(f"TUMA_ENV=production but {', '.join(bad)} not set in the environment")


def check_config(config) -> None:
    """Everything ``create_app`` refuses to start with (see the module docstring)."""
    check_secrets(config)
    if config.get("PAYBILL_VALIDATION_DEFAULT", "accept") not in ("accept", "refuse"):
        raise InsecureConfig("TUMA_PAYBILL_VALIDATION_DEFAULT must be accept or refuse")
    allowed = _networks("WEBHOOK_ALLOWED_IPS", config.get("WEBHOOK_ALLOWED_IPS"))
    gateway_lists = {
        f"USSD_{name.upper()}_ALLOWED_IPS": _networks(
            f"USSD_{name.upper()}_ALLOWED_IPS", config.get(f"USSD_{name.upper()}_ALLOWED_IPS")
        )
        for name in config.get("USSD_GATEWAYS", ())
    }
    proxies = trusted_proxies(config.get("WEBHOOK_TRUSTED_PROXIES"))
    try:
        sentinel_addresses(config.get("REDIS_SENTINELS"))
    except ValueError as exc:
        raise InsecureConfig(str(exc)) from None
    if config.get("TUMA_ENV") != "production":
        if isinstance(proxies, int) and proxies:
            log.warning(
                "TUMA_WEBHOOK_TRUSTED_PROXIES is a count: X-Forwarded-For is believed from any peer; "
                "name the proxies' addresses instead (production refuses a count)"
            )
        return
    refused = []
    if not config.get("WEBHOOK_SECRET") and not config.get("WEBHOOK_ALLOWED_IPS"):
        refused.append(
            "neither TUMA_WEBHOOK_SECRET nor TUMA_WEBHOOK_ALLOWED_IPS is set (anyone who can reach "
            "/ussd could act as any phone number): set one, better both"
        )
    if config.get("SIMULATOR_ENABLED"):
        refused.append("TUMA_SIMULATOR_ENABLED is on (the phone simulator lets anyone type as any number)")
    if isinstance(proxies, int) and proxies:
        refused.append(
            "TUMA_WEBHOOK_TRUSTED_PROXIES is a count: give the proxies' addresses or networks, so "
            "X-Forwarded-For is believed only from them"
        )
    lists = [("WEBHOOK_ALLOWED_IPS", allowed), ("WEBHOOK_TRUSTED_PROXIES", proxies), *gateway_lists.items()]
    for name, networks in lists:
        wide = [str(n) for n in (networks if isinstance(networks, tuple) else ()) if too_wide(n)]
        if wide:
            refused.append(
                f"TUMA_{name} has {', '.join(wide)}, wider than /{WIDEST_NETWORK[4]} (IPv4) or "
                f"/{WIDEST_NETWORK[6]} (IPv6): that is a large part of the internet, not "
                + ("your proxies" if name == "WEBHOOK_TRUSTED_PROXIES" else "the gateway's addresses")
                + "; list their own addresses or networks"
            )
    if _several_hosts_any_session(config.get("SQLALCHEMY_DATABASE_URI")):
        refused.append(
            "DATABASE_URL names several hosts without target_session_attrs=read-write (libpq would "
            "write to the first that answers: after a failover, a standby or the old primary)"
        )
    if refused:
        raise InsecureConfig("TUMA_ENV=production but " + "; and ".join(refused))


def _several_hosts_any_session(url) -> bool:
    """A libpq multi-host URL (``?host=a:5432&host=b:5432``, or ``a,b`` in the host part) that
    does not ask for the read-write one."""
    if not url or not str(url).startswith("postgresql"):
        return False
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    hosts = parsed.query.get("host", ())
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    several = len(hosts) > 1 or "," in (parsed.host or "") or any("," in h for h in hosts)
    return several and parsed.query.get("target_session_attrs") not in ("read-write", "primary")


def init_app(app) -> None:
    check_config(app.config)
    app.before_request(_guard)
    app.register_error_handler(RequestEntityTooLarge, _too_large)


def _view():
    endpoint = request.endpoint
    return current_app.view_functions.get(endpoint) if endpoint else None


def _refuse(status: int, text: str, ussd_text: str | None = None) -> Response:
    answer = getattr(_view(), "ussd_refusal", None)
    if ussd_text is not None and answer is not None:
        # A USSD gateway shows our answer on the phone: its own "session over" shape (on
        # /ussd a clean END), never an error page.
        return answer(ussd_text)
    return Response(text, status=status, mimetype="text/plain")


def _too_large(_exc):
    return _refuse(413, "body too large", "Sorry, this request could not be read. Please dial again.")


def _guard():
    # The request, the app and the view looked up once (each proxy access is a few calls,
    # and this runs before every request).
    req = request._get_current_object()
    if req.blueprint not in PROTECTED_BLUEPRINTS:
        return None
    app = current_app._get_current_object()
    config = app.config
    limit = config.get("WEBHOOK_MAX_BODY_BYTES")
    if limit:
        req.max_content_length = limit  # also caps a body sent without Content-Length
        length = req.content_length
        if length is not None and length > limit:
            return _too_large(None)
        if length is None and req.streamed_past(limit):
            return _too_large(None)
    endpoint = req.endpoint
    view = app.view_functions.get(endpoint) if endpoint else None
    gateway = getattr(view, "ussd_gateway", None)  # looked up once for both settings
    allowed = _setting(config, "ALLOWED_IPS", gateway)
    if allowed and not _ip_allowed(allowed):
        log.warning("webhook refused: address not allowed (%s)", endpoint)
        return _refuse(403, "forbidden")
    secret = _setting(config, "SECRET", gateway)
    if secret and not _has_secret(secret):
        log.warning("webhook refused: missing or wrong secret (%s)", endpoint)
        return _refuse(403, "forbidden")
    per_minute = config.get("WEBHOOK_RATE_PER_MINUTE")
    if per_minute and not _defer_rate(req, endpoint, view) and _over_rate(per_minute):
        from . import country
        from .i18n import t

        # Nobody is known yet: the country's first language (Kiswahili in Tanzania).
        return _refuse(429, "too many requests", t(country.first_language(), USSD_TOO_MANY))
    return None


USSD_TOO_MANY = "Too many requests. Please wait a minute and dial again."
_RATE_DEFERRED = "tuma.rate_deferred"  # request.environ: the hop itself counts (``deferred_rate``)
# Africa's Talking's hop (``/ussd``) counts itself; the other gateways' hops are counted here.
_COUNTS_ITS_OWN = "ussd.ussd"


def _defer_rate(req, endpoint: str | None, view) -> bool:
    """A USSD hop from a valid number is counted by the hop itself, in the round trip that
    takes its session (``sessions.locked``), rather than in one of its own here: same key,
    same window, same limit, still before anything is done. Anything else is counted here.
    (``req``, ``endpoint``, ``view``: the guard's request, its endpoint and view.)"""
    if endpoint != _COUNTS_ITS_OWN:
        return False
    try:
        phone = _caller_phone(req, view)
    except RequestEntityTooLarge:
        raise
    except Exception:  # an unreadable form: counted (or not) by _over_rate, as before
        return False
    if phone is None:
        return False  # counted against the address, here
    req.environ[_RATE_DEFERRED] = True
    return True


def deferred_rate() -> tuple[str, int, int] | None:
    """(key, limit, seconds the key lives) of this USSD hop's one-minute window, when the guard
    left the counting to the hop; None when there is nothing to count (no limit set)."""
    ctx = _cv_request.get(None)  # has_request_context(), and the request and app behind it
    if ctx is None:
        return None
    per_minute = ctx.app.config.get("WEBHOOK_RATE_PER_MINUTE")
    if not per_minute:
        return None
    environ = ctx.request.environ
    if not environ.get(_RATE_DEFERRED):
        return None
    return window_key(environ[_CALLER_PHONE]), per_minute, 2 * 60  # read by the guard (_defer_rate)


def over_deferred_rate() -> bool:
    """Count this hop now, for a hop that ends before taking its session (unreadable fields):
    True if that puts the number over its limit (logged). Redis down: False, as in the guard."""
    rate = deferred_rate()
    if rate is None:
        return False
    count = window_count(caller_phone())
    return count is not None and over_rate(count, rate[1])


def over_rate(count: int, per_minute: int, *, phone: bool = True) -> bool:
    """Whether ``count`` requests this minute is over ``per_minute`` (logged when it is)."""
    if count <= per_minute:
        return False
    log.warning(
        "webhook rate limit: %d requests this minute from one %s (%s)",
        count,
        "phone" if phone else "address without a valid phone",
        request.endpoint,
    )
    return True


def _setting(config, what: str, gateway: str | None):
    """``WEBHOOK_<what>``, or for another USSD gateway's endpoint (its view names the gateway,
    ``gateway``: ``ussd/gateways/``) that gateway's own ``USSD_<GATEWAY>_<what>`` when it is
    set: each gateway is given its own callback secret and calls from its own addresses."""
    own = config.get(f"USSD_{gateway.upper()}_{what}") if gateway else None
    return own or config.get(f"WEBHOOK_{what}")


def _networks(name: str, value) -> tuple:
    """Comma-separated addresses or networks; anything else is ``InsecureConfig``."""
    found = []
    for entry in str(value or "").split(","):
        if entry.strip():
            try:
                found.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise InsecureConfig(f"TUMA_{name} has an entry that is not an address or network") from None
    return tuple(found)


def trusted_proxies(value) -> int | tuple:
    """``WEBHOOK_TRUSTED_PROXIES`` read: a tuple of our proxies' networks, or (the older form)
    a count of proxies; 0 or empty is no proxies."""
    if isinstance(value, int):
        return max(0, value)
    if value is None or not str(value).strip():
        return 0
    if str(value).strip().isdigit():
        return int(str(value).strip())
    return _networks("WEBHOOK_TRUSTED_PROXIES", value)


def _address(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def client_address(proxies) -> str | None:
    """The caller's address: the socket's, unless the socket's peer is one of our ``proxies``
    (``trusted_proxies``); then the right-most address of X-Forwarded-For that is not one of
    ours. With the older count form, that many hops from the right (whoever the peer is)."""
    peer = request.remote_addr
    if not proxies:
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("X-Forwarded-For")).split(",") if h.strip()]
    if isinstance(proxies, int):
        return hops[-proxies] if len(hops) >= proxies else None  # fewer hops: not through them

    def ours(text):
        address = _address(text)
        return address is not None and any(address in network for network in proxies)

    if not ours(peer):
        return peer  # a direct caller: its X-Forwarded-For is its own claim
    for hop in reversed(hops):
        if not ours(hop):
            return hop  # not an address at all: fails any allow-list
    return hops[0] if hops else peer  # sent by one of our proxies itself


def caller_address() -> str | None:
    """``client_address`` under the configured proxies (a setting changed after start that
    cannot be read: the socket's address, never a header)."""
    try:
        proxies = trusted_proxies(current_app.config.get("WEBHOOK_TRUSTED_PROXIES"))
    except InsecureConfig as exc:
        log.error("webhook guard: %s", exc)
        proxies = 0
    return client_address(proxies)


def _ip_allowed(allowed: str) -> bool:
    address = _address(caller_address())
    if address is None:
        return False
    for entry in allowed.split(","):
        try:
            if entry.strip() and address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:  # create_app refuses these; one set after start is skipped
            log.error("WEBHOOK_ALLOWED_IPS has an entry that is not an address or network")
    return False


def _has_secret(secret: str) -> bool:
    given = request.args.get("key")
    if given is None and request.authorization is not None:
        given = request.authorization.password
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


def caller_phone() -> str | None:
    """The form's ``phoneNumber`` (or ``from``) as E.164, read once per request; None when it
    is missing or not a mobile number of our own country (``phones.normalize_mobile``). Every
    per-phone count, and the views, use this number, never the raw string."""
    # Kept on the request itself (not ``g``: an app context can outlive one request).
    req = request._get_current_object()  # (the proxy looked through once: this runs three times a hop)
    found = req.environ.get(_CALLER_PHONE, _UNREAD)
    return _caller_phone(req, _view()) if found is _UNREAD else found


_UNREAD = object()


def _caller_phone(req, view) -> str | None:
    """``caller_phone`` for the request ``req`` whose view is ``view``."""
    environ = req.environ
    if _CALLER_PHONE not in environ:
        reader = getattr(view, "raw_caller", None)  # a gateway that posts JSON says where
        if reader is not None:
            raw = reader()
        else:
            form = req.form
            raw = (form.get("phoneNumber") or form.get("from") or "").strip()
        try:
            environ[_CALLER_PHONE] = phones.normalize_mobile(raw)
        except phones.InvalidPhone:
            environ[_CALLER_PHONE] = None
    return environ[_CALLER_PHONE]


def _over_rate(per_minute: int) -> bool:
    try:
        phone = caller_phone()
    except RequestEntityTooLarge:
        raise
    except Exception:  # an unreadable form: the view will say so
        return False
    # No number, or not a real one: it counts against the address it came from.
    who = phone if phone is not None else f"address:{caller_address()}"
    count = window_count(who)
    if count is None:  # Redis down: answer anyway (the sessions will say what they can)
        return False
    return over_rate(count, per_minute, phone=phone is not None)


def window_key(who: str, seconds: int = 60) -> str:
    """The Redis key counting ``who``'s requests in the current fixed window of ``seconds``."""
    return f"tuma:ratelimit:{who}:{int(time.time() // seconds)}"


def window_count(who: str, seconds: int = 60) -> int | None:
    """Count one more request by ``who`` in the current fixed window of ``seconds`` (Redis,
    ``tuma:ratelimit:<who>:<window>``) and return the count so far; None when Redis cannot
    say (logged: the caller decides whether to answer anyway). The webhooks count per phone;
    the API counts per key (``api/rates.py``)."""
    key = window_key(who, seconds)
    try:
        redis = current_app.extensions["redis"]
        count, _ = redis.pipeline().incr(key).expire(key, 2 * seconds).execute()
    except Exception as exc:
        log.error("rate limit unavailable: %s", type(exc).__name__)
        return None
    return int(count)
