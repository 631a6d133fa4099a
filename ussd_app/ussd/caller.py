"""Who is dialling: the few facts a USSD hop needs about its caller, kept in the session.

A menu hop needs to know whether the number is registered, its holder's role (which home menu),
language (which words) and lock (a locked account is refused at once); a limit check before
the PIN, the holder's wallet (``account_id``) and KYC tier. Reading them from the
database on every hop cost a connection check-out, a query and a commit, most of a menu hop's
work; so the first hop of a session reads them (``Facts.read``: one statement of plain
columns, one round trip on PostgreSQL: ``reads.py``) and the session's Redis value keeps them
(``Facts``: never a PIN, nor its hash; only whether one is set, which the home step asks). The
full row is read only when a flow touches ``ctx.user`` (a step that looks something up or
checks a PIN), in the hop's session, and a PIN check always reads the row afresh and locks it
(``pin_guard.check_pin``): no money moves on cached facts.

They must not outlive a change. Every commit that changes a user (a lock from the back office,
the CLI or three wrong PINs, a new role, language, tier or PIN, a registration) replaces a
random token per phone in Redis, ``tuma:caller:<phone>``, after the commit (a listener on
every SQLAlchemy session, so the web app, the back office, the CLI and the worker all do it);
an ORM bulk ``update(User)``/``delete(User)``/``insert(User)``, which names no phone,
replaces ``tuma:caller:epoch``. The hop reads
both tokens in the round trip that takes the session's lock (``sessions.locked``) and trusts
its facts only if they were read under the same tokens and are younger than
``FACTS_MAX_AGE_SECONDS``; otherwise it reads the row again. The tokens are taken before the
row is read, so a change committed in between is seen at the next hop at the latest.

What this does not see, for at most ``FACTS_MAX_AGE_SECONDS`` and never on a PIN check
(above): a change made outside SQLAlchemy (``psql``); a statement on the users *table* rather
than the mapped class (``update(User.__table__)``, ``text("UPDATE users ...")``,
``bulk_update_mappings``, a separate ``engine.begin()`` connection: no app code writes users
so today; a listener at the engine's ``before_cursor_execute`` would close it); a token write
lost because Redis failed just after the writer's commit; and a token key lost (evicted) after
it changed, since an absent token reads as unchanged (creating one with ``SET NX`` when absent
would close that).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, has_app_context
from sqlalchemy import and_, bindparam, event, inspect, literal_column, select
from sqlalchemy.orm import Session

from .. import reads
from ..clock import utcnow
from ..users import User

log = logging.getLogger(__name__)

PREFIX = "tuma:caller"
EPOCH_KEY = f"{PREFIX}:epoch"
# Cached facts are read again after this long whatever the tokens say: a bound on what the
# token cannot see (above). A USSD session lives about 180 s, a hop comes every few seconds.
FACTS_MAX_AGE_SECONDS = 60
# Longer than any session lives; a token that ran out reads as "", which differs from any
# token a session saw, unless the session saw none either (then its facts age out, above).
TOKEN_TTL_SECONDS = 24 * 3600
# The columns a hop's facts come from; a change to any other (a wrong PIN counted) is not one.
WATCHED = ("phone", "role", "language", "tier", "locked_until", "pin_hash", "account_id", "first_name")


def token_keys(phone: str) -> tuple[str, str]:
    return f"{PREFIX}:{phone}", EPOCH_KEY


@dataclass(frozen=True)
class Facts:
    """What a hop knows of its caller without the database: ``user_id`` None if the number is
    not registered. ``seen`` is the tokens they were read under; ``at`` when (epoch seconds)."""

    user_id: int | None
    account_id: int | None
    role: str | None
    language: str | None
    locked_until: datetime | None
    seen: str
    at: float
    tier: str | None = None  # the KYC tier: the limits said before the PIN (limits.before_pin)
    # Whether a PIN is set (a customer an agent registered chooses one first: the home step).
    # Only that: never the PIN, nor its hash.
    has_pin: bool | None = None

    @classmethod
    def read(cls, session, phone: str, seen: str) -> Facts:
        """The facts of ``phone``'s holder, read now under the tokens ``seen``: one prebuilt
        statement of plain columns (``reads.first``: one round trip on PostgreSQL), never the
        row as an ORM object and never the PIN's hash, only whether there is one."""
        row = reads.first(session, _statement(), {"phone": phone})
        if row is None:
            return cls(None, None, None, None, None, seen, time.time())
        user_id, account_id, role, language, locked_until, tier, has_pin = row
        return cls(user_id, account_id, role, language, locked_until, seen, time.time(), tier, bool(has_pin))

    @property
    def registered(self) -> bool:
        return self.user_id is not None

    @property
    def locked(self) -> bool:
        """Locked now (``pin_guard.is_locked``'s rule: a PIN lock runs out, an operator's does not)."""
        return self.locked_until is not None and self.locked_until > utcnow()

    def fresh(self, seen: str) -> bool:
        """Still true of the caller: read under the tokens Redis holds now, and not too long ago."""
        return self.seen == seen and 0 <= time.time() - self.at < FACTS_MAX_AGE_SECONDS

    def to_json(self) -> dict:
        return {
            "user_id": self.user_id,
            "account_id": self.account_id,
            "role": self.role,
            "language": self.language,
            "locked_until": self.locked_until.isoformat() if self.locked_until else None,
            "seen": self.seen,
            "at": self.at,
            "tier": self.tier,
            "has_pin": self.has_pin,
        }

    @classmethod
    def from_json(cls, doc: dict | None) -> Facts | None:
        """The facts a session kept, or None when it kept none (or an older form of them)."""
        try:
            locked = doc["locked_until"]
            return cls(
                doc["user_id"],
                doc["account_id"],
                doc["role"],
                doc["language"],
                datetime.fromisoformat(locked) if locked else None,
                doc["seen"],
                float(doc["at"]),
                doc["tier"],  # facts kept before the tier was are read again
                doc["has_pin"],  # and before whether a PIN is set was
            )
        except (TypeError, KeyError, ValueError):
            return None


_FACTS = None


def _statement():
    """``Facts.read``'s one statement, built once (building it cost as much as running it)."""
    global _FACTS
    if _FACTS is None:
        t = User.__table__
        has_pin = and_(t.c.pin_hash.is_not(None), t.c.pin_hash != literal_column("''"))
        _FACTS = select(
            t.c.id, t.c.account_id, t.c.role, t.c.language, t.c.locked_until, t.c.tier, has_pin
        ).where(t.c.phone == bindparam("phone"))
    return _FACTS


# -- the writers' side: a commit that changed a user replaces its token ------------------------

_CHANGED = "tuma_changed_callers"  # session.info: phones (or EPOCH_KEY) whose token to replace


def _changed(user: User) -> list[str]:
    state = inspect(user)
    phones = [user.phone]
    if state.attrs.phone.history.deleted:  # a number moved: the old one's facts are stale too
        phones += [p for p in state.attrs.phone.history.deleted if p]
    return phones


def _after_flush(session, _flush_context) -> None:
    phones: set[str] = set()
    for user in session.new:
        if isinstance(user, User):
            phones.add(user.phone)
    for user in session.deleted:
        if isinstance(user, User):
            phones.update(_changed(user))
    for user in session.dirty:
        if isinstance(user, User):
            state = inspect(user)
            if any(state.attrs[name].history.has_changes() for name in WATCHED):
                phones.update(_changed(user))
    if phones:
        session.info.setdefault(_CHANGED, set()).update(p for p in phones if p)


def _bulk(orm_execute_state) -> None:
    """An UPDATE, DELETE or INSERT of users by statement names no row: every caller's facts go."""
    if not (orm_execute_state.is_update or orm_execute_state.is_delete or orm_execute_state.is_insert):
        return
    if any(mapper.class_ is User for mapper in orm_execute_state.all_mappers):
        orm_execute_state.session.info.setdefault(_CHANGED, set()).add(EPOCH_KEY)


def _after_commit(session) -> None:
    if session.in_nested_transaction():  # a savepoint: wait for the transaction's commit
        return
    changed = session.info.pop(_CHANGED, None)
    if changed:
        forget(changed)


def forget(phones) -> None:
    """Replace the tokens of ``phones`` (or ``EPOCH_KEY``): facts sessions hold for them are
    read again at their next hop. Committed is committed: a failure is logged, not raised."""
    if not has_app_context():
        log.warning("caller facts of %d numbers not invalidated: no app (no Redis)", len(phones))
        return
    try:
        pipe = current_app.extensions["redis"].pipeline(transaction=False)
        for phone in phones:
            key = phone if phone == EPOCH_KEY else token_keys(phone)[0]
            pipe.set(key, secrets.token_hex(8), ex=TOKEN_TTL_SECONDS)
        pipe.execute()
    except Exception as exc:
        name, most = type(exc).__name__, FACTS_MAX_AGE_SECONDS
        log.error("caller facts not invalidated (%s): stale for up to %d s", name, most)


def listen() -> None:
    """Register the listeners (every session; once, however many apps are made)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "do_orm_execute", _bulk)
        event.listen(Session, "after_commit", _after_commit)
