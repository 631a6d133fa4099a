"""Who is calling: ``Authorization: Bearer <key>`` -> the key and its owner, or 401/403.

``authenticate`` is the first thing every operation does (``endpoint.operation``), before the
body is read: without a valid key nothing else is looked at. The key itself is never logged,
stored (only its hash: ``keys.py``) or echoed; a refusal names no reason an attacker could
use to tell a revoked key from a made-up one.
"""

import logging
from dataclasses import dataclass

from flask import request

from ..clock import utcnow
from ..extensions import db
from ..users import User
from . import rates
from .errors import ApiError
from .keys import OWNER_ROLES, ApiKey, find_key

log = logging.getLogger(__name__)

_CALLER = "tuma.api_caller"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tuma"'}


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    owner: User

    @property
    def account_id(self) -> int:
        return self.owner.account_id


def authenticate() -> Caller:
    """The caller of this request (once per request), or ApiError: 401 without a valid key,
    403 when the owner is locked, 429 over the key's rate."""
    if _CALLER in request.environ:  # on the request, not ``g``: an app context can outlive it
        return request.environ[_CALLER]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError("unauthenticated", headers=CHALLENGE)
    key = find_key(db.session, token.strip())
    if key is None:
        log.warning("api: refused a request with an unknown or revoked key")
        raise ApiError("unauthenticated", headers=CHALLENGE)
    rates.check(key.key_id)
    owner = key.owner
    now = utcnow()
    if owner.role not in OWNER_ROLES or (owner.locked_until is not None and owner.locked_until > now):
        log.warning("api: refused key %s: its owner is locked", key.display())
        raise ApiError("account_locked")
    request.environ[_CALLER] = Caller(key, owner)
    return request.environ[_CALLER]


def require_scope(caller: Caller, scope: str) -> None:
    if scope not in caller.key.scope_set:
        raise ApiError("insufficient_scope", f"This key has no '{scope}' scope.")
