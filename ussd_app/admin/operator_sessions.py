"""Operators' sessions, kept on the server (Redis) so that ending one takes effect at once.

The signed cookie holds only a random token (``secrets.token_urlsafe(32)``); Redis holds the
session under the token's SHA-256 (a copy of Redis gives no usable cookie):

- ``tuma:admin:session:<sha256>``: hash {operator_id, created, seen}, its TTL the idle timeout
  (``ADMIN_IDLE_MINUTES``), renewed by every page, never past the absolute timeout
  (``ADMIN_ABSOLUTE_HOURS`` after sign-in);
- ``tuma:admin:operator-sessions:<operator id>``: the set of that operator's session keys, so
  deactivating an operator deletes every session they have open.

Sign-out, deactivation and either timeout delete the key: a cookie copied before then finds
nothing and is sent to sign in. Times are checked here as well as by the TTL, so lowering a
timeout takes effect on sessions already open.
"""

import hashlib
import secrets
import time

from flask import current_app

SESSION_PREFIX = "tuma:admin:session:"
OPERATOR_PREFIX = "tuma:admin:operator-sessions:"


def _redis():
    return current_app.extensions["redis"]


def _key(token: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def _idle_seconds() -> int:
    return int(current_app.config.get("ADMIN_IDLE_MINUTES", 30)) * 60


def _absolute_seconds() -> int:
    return int(float(current_app.config.get("ADMIN_ABSOLUTE_HOURS", 12)) * 3600)


def _ttl(created: float, now: float) -> int:
    """Seconds the session may live from ``now``: the idle timeout, cut at the absolute one."""
    return int(min(_idle_seconds(), created + _absolute_seconds() - now))


def start(operator_id: int) -> str:
    """A new session for ``operator_id``; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    key, now = _key(token), time.time()
    index = f"{OPERATOR_PREFIX}{operator_id}"
    pipe = _redis().pipeline()
    pipe.hset(key, mapping={"operator_id": operator_id, "created": now, "seen": now})
    pipe.expire(key, max(1, _ttl(now, now)))
    pipe.sadd(index, key)
    pipe.expire(index, max(1, _absolute_seconds()))
    pipe.execute()
    return token


def operator_id(token: str | None) -> int | None:
    """The operator of a live session, renewing its idle timeout; None (and the session
    deleted) when it is unknown, idle too long or past its absolute timeout."""
    if not token or not isinstance(token, str) or len(token) > 100:
        return None
    key, now = _key(token), time.time()
    found = _redis().hgetall(key)
    if not found:
        return None
    try:
        created = float(found[b"created"])
        seen = float(found[b"seen"])
        owner = int(found[b"operator_id"])
    except (KeyError, ValueError):
        _redis().delete(key)
        return None
    ttl = _ttl(created, now)
    if now - seen > _idle_seconds() or ttl <= 0:
        end(token, owner)
        return None
    pipe = _redis().pipeline()
    pipe.hset(key, "seen", now)
    pipe.expire(key, ttl)
    pipe.execute()
    return owner


def end(token: str | None, owner: int | None = None) -> None:
    """Delete one session (sign-out, timeout)."""
    if not token or not isinstance(token, str):
        return
    key = _key(token)
    pipe = _redis().pipeline()
    pipe.delete(key)
    if owner is not None:
        pipe.srem(f"{OPERATOR_PREFIX}{owner}", key)
    pipe.execute()


def end_all(operator_id: int) -> int:
    """Delete every open session of ``operator_id`` (deactivation); returns how many were live."""
    index = f"{OPERATOR_PREFIX}{operator_id}"
    keys = list(_redis().smembers(index))
    pipe = _redis().pipeline()
    for key in keys:
        pipe.delete(key)
    pipe.delete(index)
    results = pipe.execute()
    return sum(results[: len(keys)])
