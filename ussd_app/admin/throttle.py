"""Throttling of back-office sign-in, per account and per client address (Redis counters).

Each sign-in attempt first takes a slot in two counters, in one Redis script (atomic),
before any password is checked:

- ``tuma:admin:signin:account:<HMAC-SHA256 of the normalised e-mail>`` (known or not, so the
  answer never tells whether an e-mail is an operator's), at most
  ``ADMIN_SIGNIN_MAX_PER_ACCOUNT``;
- ``tuma:admin:signin:address:<client address>`` (the webhooks' client address, so behind the
  trusted proxies it is the caller, not the proxy), at most ``ADMIN_SIGNIN_MAX_PER_ADDRESS``.

A counter lives ``ADMIN_SIGNIN_LOCK_MINUTES`` from its first attempt. When either is full the
attempt is refused with 429 and ``Retry-After``, takes no slot and checks no password (not
even a right one: the lock must not be a way to test guesses). A successful sign-in gives
its slots back, so only failures count. Taking the slot before checking means concurrent
attempts cannot pass the limit together.
"""

import hashlib
import hmac
import math
from dataclasses import dataclass

from flask import current_app, request

PREFIX = "tuma:admin:signin:"


@dataclass(frozen=True)
class Attempt:
    keys: tuple[str, str]
    counts: tuple[int, int]
    retry_after: int  # seconds until the tightest lock ends (when refused)
    refused_by: str | None  # "account" or "address" when refused, else None

    @property
    def refused(self) -> bool:
        return self.refused_by is not None

    @property
    def locks(self) -> str | None:
        """Which limit this (failed) attempt filled: "account", "address" or None. Audited
        once per lock, not on every refusal that follows."""
        account, address = self.counts
        if account == _limit("account"):
            return "account"
        if address == _limit("address"):
            return "address"
        return None

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


def _limit(scope: str) -> int:
    name = "ADMIN_SIGNIN_MAX_PER_ACCOUNT" if scope == "account" else "ADMIN_SIGNIN_MAX_PER_ADDRESS"
    return int(current_app.config.get(name) or (5 if scope == "account" else 20))


def _window() -> int:
    return max(1, int(current_app.config.get("ADMIN_SIGNIN_LOCK_MINUTES") or 15) * 60)


def client_address() -> str:
    """The caller's address as the webhooks see it (``security.client_address``: behind the
    configured proxies, from X-Forwarded-For; otherwise the socket's)."""
    from ..security import caller_address

    found = caller_address()
    return found or request.remote_addr or "unknown"


def keys_for(email: str, address: str) -> tuple[str, str]:
    # Keyed with the app's secret: a password typed into the e-mail box must not sit in
    # Redis as a plain SHA-256 anyone with a copy could try guesses against.
    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, email.encode(), hashlib.sha256).hexdigest()
    return f"{PREFIX}account:{digest}", f"{PREFIX}address:{address[:64]}"


def take(email: str, address: str) -> Attempt:
    """Take a slot in both counters, or none when either is full (then ``refused``).
    Raises redis errors (the caller answers 503)."""
    keys = keys_for(email, address)
    refused, account, address_count, account_ttl, address_ttl = current_app.extensions["redis"].eval(
        _TAKE, 2, *keys, _window(), _limit("account"), _limit("address")
    )
    refused_by = {0: None, 1: "account", 2: "address", 3: "account"}[int(refused)]
    retry_after = max([ttl for bit, ttl in ((1, account_ttl), (2, address_ttl)) if refused & bit] + [1])
    return Attempt(keys, (int(account), int(address_count)), int(retry_after), refused_by)


# KEYS: account, address counters; ARGV: window seconds, account limit, address limit.
# Returns {refused (bit 1 account, bit 2 address), account count, address count, their TTLs}.
_TAKE = """
local counts, ttls, refused = {}, {}, 0
for i, key in ipairs(KEYS) do
  counts[i] = tonumber(redis.call('GET', key) or '0')
  ttls[i] = redis.call('TTL', key)
  if counts[i] >= tonumber(ARGV[i + 1]) then refused = refused + i end
end
if refused == 0 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')
    counts[i] = redis.call('INCR', key)
    ttls[i] = redis.call('TTL', key)
  end
end
return {refused, counts[1], counts[2], ttls[1], ttls[2]}
"""


def give_back(attempt: Attempt) -> None:
    """A successful sign-in does not count as a failure."""
    # Only while the window lasts: a DECR after it ended would leave a key with no expiry.
    current_app.extensions["redis"].eval(_GIVE_BACK, len(attempt.keys), *attempt.keys)


_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 and tonumber(redis.call('GET', key)) > 0 then
    redis.call('DECR', key)
  end
end
return 0
"""


def clear_account(email: str) -> None:
    """Lift an account's lock (``flask operators unlock-sign-in``)."""
    current_app.extensions["redis"].delete(keys_for(email, "")[0])
