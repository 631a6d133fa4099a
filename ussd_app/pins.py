"""PINs: 4 digits, hashed with argon2id over an HMAC of the PIN under a server-side pepper.

A stolen database alone does not let anyone brute-force the 10,000 possible PINs: without the
pepper (environment only) the hashes cannot be checked. PINs are never logged, never put in
Redis and never echoed; callers pass them straight from the request to these functions.
"""

import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

# Interactive-login strength, tuned down from argon2-cffi's defaults so a USSD hop that checks
# a PIN stays well inside Africa's Talking's time budget on a 2-core machine.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def is_valid_pin(pin: str) -> bool:
    return isinstance(pin, str) and len(pin) == 4 and pin.isascii() and pin.isdigit()


# What a thief tries first with three tries before the lock: one digit four times, a straight
# run up or down, and the last four digits of the phone's own number (on the SIM's pack).
_RUNS = "0123456789"
EASY = frozenset(
    {d * 4 for d in _RUNS} | {_RUNS[i : i + 4] for i in range(7)} | {_RUNS[::-1][i : i + 4] for i in range(7)}
)


def is_easy(pin: str, phone: str | None = None) -> bool:
    """Whether ``pin``, chosen by the holder of ``phone`` (E.164), is among the first guesses
    of whoever holds the phone: refused wherever a person chooses a PIN (the operator's
    ``accounts create`` sets one as it is told)."""
    return pin in EASY or (phone is not None and len(phone) > 4 and pin == phone[-4:])


def _peppered(pin: str) -> str:
    pepper = current_app.config["PIN_PEPPER"].encode()
    return hmac.new(pepper, pin.encode(), hashlib.sha256).hexdigest()


def hash_pin(pin: str) -> str:
    if not is_valid_pin(pin):
        raise ValueError("a PIN is exactly 4 digits")
    return _hasher.hash(_peppered(pin))


def verify_pin(pin_hash: str, pin: str) -> bool:
    if not is_valid_pin(pin) or not pin_hash:
        return False
    try:
        return _hasher.verify(pin_hash, _peppered(pin))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
