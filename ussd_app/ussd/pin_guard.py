"""Checking a PIN typed on a phone, with the lock-out after too many wrong ones.

``PIN_MAX_ATTEMPTS`` wrong PINs in a row lock the account for ``PIN_LOCK_SECONDS``; a right
PIN resets the count. An agent or the operator lifts a lock with ``unlock_pin``. Nothing here
commits: the request owns the transaction (so the count is saved with the answer).
"""

import enum
from datetime import UTC, datetime, timedelta

from flask import current_app

from .. import pins
from ..users import User


class PinCheck(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"  # wrong, tries remain
    LOCKED = "locked"  # locked now (this attempt was the last one) or already


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as the database stores it


def is_locked(user: User) -> bool:
    return user.locked_until is not None and user.locked_until > _now()


def tries_left(user: User) -> int:
    return max(0, current_app.config["PIN_MAX_ATTEMPTS"] - (user.pin_failures or 0))


def check_pin(session, user: User, pin: str | None) -> PinCheck:
    """Verify ``pin`` for ``user`` and count a failure. The row is locked first, so two
    sessions guessing at once cannot both get the third try."""
    session.refresh(user, with_for_update=True)
    if is_locked(user):
        return PinCheck.LOCKED
    if user.locked_until is not None:  # an old lock that ran out: a fresh set of tries
        user.locked_until, user.pin_failures = None, 0
    if pin is not None and pins.verify_pin(user.pin_hash, pin):
        user.pin_failures = 0
        return PinCheck.OK
    user.pin_failures = (user.pin_failures or 0) + 1
    if user.pin_failures >= current_app.config["PIN_MAX_ATTEMPTS"]:
        user.locked_until = _now() + timedelta(seconds=current_app.config["PIN_LOCK_SECONDS"])
        return PinCheck.LOCKED
    return PinCheck.WRONG


def unlock_pin(session, user: User) -> None:
    """Lift a PIN lock and reset the count of wrong PINs (an agent's or the operator's act)."""
    user.pin_failures = 0
    user.locked_until = None
    session.add(user)
