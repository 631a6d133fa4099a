"""One-time codes an agent uses to unlock a customer's PIN.

Any customer (one who registered alone over USSD has no ID number on record) can be unlocked
at an agent: the agent enters the customer's number and registered name; Tuma sends a random
code by SMS to the locked phone; the customer tells the agent the code; the agent types it and
the lock is lifted. Only someone holding the locked phone learns the code, so an agent cannot
unlock a stranger's account from a name alone.

The code lives in Redis only, as an HMAC under the PIN pepper (never in clear, never the PIN),
with a TTL of ``UNLOCK_CODE_SECONDS``; it is bound to the agent who asked for it and spent
after ``UNLOCK_CODE_TRIES`` wrong entries. Attempts are throttled per agent
(``UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR``: name checks and codes sent) and per customer
(``UNLOCK_CODES_PER_CUSTOMER_PER_HOUR``). Every key is the normalised E.164 number.
"""

import hashlib
import hmac
import secrets

from flask import current_app

from .queues import get_redis

DIGITS = 6
HOUR = 3600

OK = "ok"
WRONG = "wrong"  # wrong code, tries remain
SPENT = "spent"  # no code (never sent, expired, used, or out of tries)
THROTTLED = "throttled"


def _code_key(customer_phone: str) -> str:
    return f"tuma:unlock:code:{customer_phone}"


def _digest(customer_phone: str, agent_phone: str, code: str) -> str:
    pepper = current_app.config["PIN_PEPPER"].encode()
    message = f"{customer_phone}|{agent_phone}|{code}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def _count(key: str, limit: int) -> bool:
    """Count one more use of ``key`` in its hour; False when that goes past ``limit``."""
    redis = get_redis()
    used = redis.incr(key)
    if used == 1 or redis.ttl(key) < 0:  # the first in this hour (or a key left without a TTL)
        redis.expire(key, HOUR)
    return int(used) <= limit


def agent_attempt(agent_phone: str) -> bool:
    """Count an unlock attempt (a name check) by ``agent_phone``; False when over the limit."""
    return _count(
        f"tuma:unlock:agent:{agent_phone}", current_app.config["UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR"]
    )


def issue(agent_phone: str, customer_phone: str) -> str | None:
    """A fresh code for ``customer_phone``, bound to ``agent_phone`` (replacing any earlier
    one); None when the agent or the customer is over the hourly limit."""
    config = current_app.config
    if not _count(f"tuma:unlock:agent:{agent_phone}", config["UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR"]):
        return None
    if not _count(f"tuma:unlock:customer:{customer_phone}", config["UNLOCK_CODES_PER_CUSTOMER_PER_HOUR"]):
        return None
    code = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
    key = _code_key(customer_phone)
    redis = get_redis()
    with redis.pipeline() as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"digest": _digest(customer_phone, agent_phone, code), "tries": 0})
        pipe.expire(key, config["UNLOCK_CODE_SECONDS"])
        pipe.execute()
    return code


def tries_left(customer_phone: str) -> int:
    tries = get_redis().hget(_code_key(customer_phone), "tries")
    return max(0, current_app.config["UNLOCK_CODE_TRIES"] - int(tries or 0))


def verify(agent_phone: str, customer_phone: str, code: str) -> str:
    """OK (and the code is spent), WRONG (tries remain) or SPENT. A code is good only for the
    agent it was sent for; a try is counted before comparing, so racing sessions cannot get
    more than ``UNLOCK_CODE_TRIES`` guesses."""
    redis = get_redis()
    key = _code_key(customer_phone)
    digest = redis.hget(key, "digest")
    if digest is None:
        return SPENT
    tries = redis.hincrby(key, "tries", 1)
    if tries > current_app.config["UNLOCK_CODE_TRIES"]:
        redis.delete(key)
        return SPENT
    if not hmac.compare_digest(digest.decode(), _digest(customer_phone, agent_phone, code)):
        if tries >= current_app.config["UNLOCK_CODE_TRIES"]:
            redis.delete(key)
            return SPENT
        return WRONG
    # Spend it once: only the session that deletes the key unlocks.
    return OK if redis.delete(key) == 1 else SPENT
