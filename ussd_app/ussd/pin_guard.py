"""Checking a PIN typed on a phone, with the lock-out after too many wrong ones.

``PIN_MAX_ATTEMPTS`` wrong PINs in a row lock the account for ``PIN_LOCK_SECONDS``; a right
PIN resets the count. An agent or the operator lifts a lock with ``unlock_pin``. The holder is
told by SMS when the PIN locks and when it is unlocked (someone else may be trying it). Nothing
here commits: the request owns the transaction (so the count is saved with the answer).

An operator's lock (the back office's "lock", for a stolen phone or fraud) is the same column
set to ``OPERATOR_LOCK_UNTIL``, a time no PIN lock reaches: it never runs out, and only an
operator lifts it (``unlock_pin(..., operator=True)``), never an agent.
"""

import enum
from datetime import timedelta

from flask import current_app

from .. import notices, pins
from ..clock import utcnow
from ..users import OPERATOR_LOCK_UNTIL, User, is_operator_locked  # noqa: F401 (the flows ask here)


class PinCheck(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"  # wrong, tries remain
    LOCKED = "locked"  # locked now (this attempt was the last one) or already


def is_locked(user: User) -> bool:
    return user.locked_until is not None and user.locked_until > utcnow()


class OperatorLock(Exception):
    """An agent (or anyone but an operator) tried to lift an operator's lock."""


def tries_left(user: User) -> int:
    return max(0, current_app.config["PIN_MAX_ATTEMPTS"] - (user.pin_failures or 0))


def check_pin(
    session, user: User, pin: str | None, *, locked: bool = False, verified: bool | None = None
) -> PinCheck:
    """Verify ``pin`` for ``user`` and count a failure. The row is locked first, so two
    sessions guessing at once cannot both get the third try (``locked``: the caller read it
    with FOR UPDATE in this transaction just now, so it is not read again). ``verified``: what
    ``check_locked_row`` found of this PIN on the row, locked in this transaction and without a
    lock of its own (argon2 is not run twice)."""
    if not locked:
        session.refresh(user, with_for_update=True)
    if is_locked(user):
        return PinCheck.LOCKED
    if user.locked_until is not None:  # an old lock that ran out: a fresh set of tries
        user.locked_until, user.pin_failures = None, 0
    right = verified if verified is not None else pin is not None and pins.verify_pin(user.pin_hash, pin)
    if right:
        if user.pin_failures:  # set only when it changes: an unchanged row is not flushed
            user.pin_failures = 0
        return PinCheck.OK
    user.pin_failures = (user.pin_failures or 0) + 1
    if user.pin_failures >= current_app.config["PIN_MAX_ATTEMPTS"]:
        user.locked_until = utcnow() + timedelta(seconds=current_app.config["PIN_LOCK_SECONDS"])
        notices.pin_locked(session, user, user.pin_failures)
        return PinCheck.LOCKED
    return PinCheck.WRONG


def check_locked_row(row, pin: str | None) -> tuple[PinCheck | None, bool | None]:
    """``check_pin``'s common case without the row as an object: ``row`` (its pin_hash,
    pin_failures and locked_until) read with FOR UPDATE in this transaction just now. (OK,
    True) when the PIN is right and nothing on the row changes (no lock, no wrong tries to
    reset): nothing to write. Else (None, what was found): the PIN's check (False: wrong; True:
    right, wrong tries to reset) for ``check_pin(..., verified=)`` on the row loaded, or None
    (not checked: the row has a lock, which ``check_pin`` weighs first)."""
    if row.locked_until is not None:
        return None, None
    right = pin is not None and pins.verify_pin(row.pin_hash, pin)
    return (PinCheck.OK if right and not row.pin_failures else None), right


def unlock_pin(session, user: User, *, agent: User | None = None, operator: bool = False) -> None:
    """Lift a PIN lock and reset the count of wrong PINs (an agent's or the operator's act),
    telling the holder by SMS (naming the ``agent`` who did it, if one did). An operator's
    lock is lifted only for an operator (``operator=True``): anyone else gets OperatorLock."""
    if is_operator_locked(user) and (agent is not None or not operator):
        raise OperatorLock(user.phone)
    was_locked = is_locked(user)
    user.pin_failures = 0
    user.locked_until = None
    session.add(user)
    if not was_locked:
        return
    notices.pin_unlocked(session, user, agent)
