"""API keys: who a request to ``/api/v1`` acts for, and what it may do.

A key is ``tuma_<key id>_<secret>``: the key id (12 hex digits) finds the row, the secret (43
URL-safe characters, 256 bits) proves it. Only the SHA-256 of the whole key is stored, compared
in constant time. A slow hash (argon2, as for PINs) would add 27 ms to every request and buy
nothing: it protects guessable secrets, and these have 256 bits of entropy.

The key is shown once, when it is made (``api-keys create`` prints it on its last line; the back
office shows it once); nobody can read it back, only revoke it and make another.

Only merchants and agents get keys. A key whose owner is locked (PIN lock or an operator's lock)
is refused at every request (``auth.py``), as is a revoked key.
"""

import enum
import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..clock import utcnow
from ..extensions import db
from ..users import Role, User

PREFIX = "tuma_"
KEY_ID_HEX = 12
NAME_LIMIT = 40
OWNER_ROLES = (Role.MERCHANT.value, Role.AGENT.value)


class Scope(enum.StrEnum):
    COLLECT = "collect"  # ask customers to pay (payment requests), allowances and their charges
    PAYOUT = "payout"  # move money out of the wallet: payouts and refunds
    READ = "read"  # read the wallet: balance, transactions, payment requests


ALL_SCOPES = tuple(s.value for s in Scope)


class ApiKey(db.Model):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_HEX), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole key
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LIMIT))
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated Scope values
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    owner: Mapped[User] = relationship()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def display(self) -> str:
        """How the key is named where it may be seen (logs, lists): its id, never its secret."""
        return f"{PREFIX}{self.key_id}_…"


class KeyRefused(ValueError):
    """A key could not be made; the message says why."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | None) -> list[str]:
    """``"collect,payout"`` -> the scopes, in the catalogue's order; KeyRefused for an unknown
    one or none. Only ``None`` (not given) means every scope: an empty text (``--scopes ""``, a
    form with nothing ticked) is refused, never read as all of them (a payout key)."""
    wanted = [s.strip() for s in (",".join(ALL_SCOPES) if text is None else text).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ALL_SCOPES]
    if unknown or not wanted:
        raise KeyRefused(f"scopes are some of {', '.join(ALL_SCOPES)}")
    return [s for s in ALL_SCOPES if s in wanted]


def create_key(session, owner: User, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Make a key for ``owner``: (the row, the key itself, to be shown once). No commit."""
    if owner.role not in OWNER_ROLES:
        raise KeyRefused(f"{owner.name} is a {owner.role}: only merchants and agents get API keys")
    name = " ".join((name or "").split())
    if not name or len(name) > NAME_LIMIT or not name.isprintable():
        raise KeyRefused(f"a key's name is 1 to {NAME_LIMIT} printable characters")
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        key_id=key_id,
        secret_hash=digest(key),
        user_id=owner.id,
        name=name,
        scopes=",".join(parse_scopes(",".join(scopes))),
    )
    session.add(row)
    session.flush()
    return row, key


def find_key(session, presented: str) -> ApiKey | None:
    """The active key ``presented`` is, or None (unknown, malformed, wrong secret, revoked).
    Compared in constant time; an unknown id costs the same hash as a known one."""
    if not presented.startswith(PREFIX) or len(presented) > 100:
        return None
    key_id = presented[len(PREFIX) : len(PREFIX) + KEY_ID_HEX]
    row = session.execute(select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one_or_none()
    expected = row.secret_hash if row is not None else "0" * 64
    if not hmac.compare_digest(digest(presented), expected) or row is None or not row.active:
        return None
    return row


def revoke(session, key_id: str) -> ApiKey | None:
    """Revoke the key with this id (``tuma_<id>_…`` or the bare id); None when unknown."""
    key_id = key_id.removeprefix(PREFIX).split("_", 1)[0]
    row = session.execute(select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one_or_none()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def keys_of(session, owner: User | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if owner is not None:
        query = query.where(ApiKey.user_id == owner.id)
    return list(session.execute(query).scalars())
