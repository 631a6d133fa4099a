"""The SMS gateway's circuit: while Africa's Talking (or our account with it) fails every call,
the senders stop calling it, instead of spending the outbox's attempts on it.

A hand-over that fails for a reason that is the gateway's or the account's, not the message's
(``Answer.pause``: connection refused or reset, a timeout, a non-2xx answer such as a 5xx or a
429, 402 InvalidSenderId, 405 InsufficientBalance) costs its row no attempt (``sender.records._values``:
``pending`` again, its attempt undone, the reason kept for the operator) and **opens** the
circuit: no sender claims anything for ``SMS_GATEWAY_PAUSE_SECONDS``. Once the pause is over,
the next job **probes**: one sender (``PROBE_KEY``, set NX) claims one row, the oldest due
(of another number than the calls that failed in this outage, when there is one, so no one
message can hold the circuit open), and hands it over. Answered (accepted, or refused for that message
alone), the circuit **closes** and the job goes on as usual; failed again, the pause doubles,
up to ``SMS_GATEWAY_PAUSE_MAX_SECONDS``. A number's rows go back in order (the row that failed
first), so per-number order holds across the outage. Per-message refusals (403/404/406/409,
and per-recipient transient codes such as 407 or a recipient's 500) are the message's: they
spend attempts and end ``failed`` as before, and the circuit stays closed.

A **suspect** keeps a message from passing its own failure off as the gateway's forever (a
"poison" message whose own call fails at the HTTP level or times out while the gateway answers
everyone else: it would cost no attempt, open the circuit, the probe to another number would
close it, and it would be claimed again, pausing every sender each time). Each probe goes to
another number than every one whose call failed in this outage (``State.phones``, the last
``SUSPECTS_MAX``), so a few poison messages cannot be each other's failed probes (more than
``SUSPECTS_MAX`` at once, each older than every healthy row, still could). When a probe
closes the circuit, those numbers become suspects (``SUSPECT_KEY``, each for
``SMS_GATEWAY_PAUSE_MAX_SECONDS``). While the circuit is closed, a gateway-type failure of a
suspect's row is taken as the message's own (``sender.lanes``): it spends its attempt with the
usual backoff (so ``SMS_MAX_ATTEMPTS`` bounds it and it ends ``failed``), stops no other lane
and opens no circuit; each such failure keeps its number suspect past its backoff
(``keep_suspects``), so a poison message pauses the senders once, not once per attempt. The
price: if the gateway goes down again (flaps) while numbers are suspect, each suspect's one row
in flight spends one attempt (the other rows still open the circuit and spend none); a real
outage costs no other row an attempt. The suspects' time is the wall clock's (``time.time``),
not the senders' ``now``. A poison row with no other number due is its own probe: it keeps the
circuit open (pausing nobody else) until another number's row is due, whose probe closes it
(after at most ``SMS_GATEWAY_PAUSE_MAX_SECONDS``).

The state is one Redis key that every sender reads before it claims (a JSON value: when the
gateway was first seen down, until when nobody calls it, how many failures in a row, the last
reason, the numbers whose calls failed, the last one last). Times are the senders' ``now`` (``utcnow()``, or
a test's). When Redis cannot be read or written the circuit is treated as closed: a failure
still costs no attempt and still stops the job (``sender.job.send_due``), so without Redis the
senders fall back to one short job per ring. The operator sees it in the log (a warning when
the circuit opens, at each failed probe, and when it closes) and at ``/metrics``
(``tuma_sms_gateway_down``, ``tuma_sms_gateway_down_since_seconds``, read from this key at
scrape time).
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import redis
from flask import current_app

from ..queues import get_redis

log = logging.getLogger(__name__)

KEY = "tuma:sms:gateway"
PROBE_KEY = "tuma:sms:gateway:probe"
# Once closed, the numbers whose calls failed in the outage: JSON {number: until, epoch seconds}.
SUSPECT_KEY = "tuma:sms:gateway:suspects"
SUSPECTS_MAX = 5  # numbers remembered per outage (State.phones): probes skip them, then suspects


@dataclass(frozen=True)
class State:
    """An open circuit (no key: closed)."""

    down_since: str  # ISO time of the first failure of this outage
    until: str  # ISO time before which no sender calls the gateway
    failures: int  # failures in a row (the first, then each failed probe)
    reason: str
    last_phone: str | None = None  # whose call failed last
    phones: list[str] | None = None  # whose calls failed in this outage (newest last): probes skip them

    def failed_phones(self) -> list[str]:
        return list(self.phones or ([self.last_phone] if self.last_phone else []))

    def open_at(self, now: datetime) -> bool:
        return now < datetime.fromisoformat(self.until)

    @property
    def since(self) -> datetime:
        return datetime.fromisoformat(self.down_since)


def pause(failures: int) -> timedelta:
    config = current_app.config
    base = max(1, config["SMS_GATEWAY_PAUSE_SECONDS"])
    return timedelta(seconds=min(config["SMS_GATEWAY_PAUSE_MAX_SECONDS"], base * 2 ** max(0, failures - 1)))


def read() -> State | None:
    """The circuit's state; None when closed (or Redis cannot be read: then closed)."""
    try:
        raw = get_redis().get(KEY)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unreadable (%s); treated as closed", type(exc).__name__)
        return None
    if raw is None:
        return None
    try:
        return State(**json.loads(raw))
    except (TypeError, ValueError) as exc:
        log.warning("sms gateway circuit: unreadable state (%s); treated as closed", exc)
        return None


def look() -> tuple[State | None, set[str]]:
    """The circuit's state (as ``read``) and the suspect numbers (none when Redis cannot be
    read), in one round trip."""
    try:
        raw, suspects = get_redis().mget(KEY, SUSPECT_KEY)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unreadable (%s); treated as closed", type(exc).__name__)
        return None, set()
    try:
        state = None if raw is None else State(**json.loads(raw))
    except (TypeError, ValueError) as exc:
        log.warning("sms gateway circuit: unreadable state (%s); treated as closed", exc)
        state = None
    return state, set(_suspects(suspects))


def _suspects(raw) -> dict[str, float]:
    """The live suspects in ``SUSPECT_KEY``'s value: {number: until}."""
    try:
        kept = json.loads(raw) if raw is not None else {}
        now = time.time()
        return {str(phone): float(until) for phone, until in kept.items() if float(until) > now}
    except (TypeError, ValueError, AttributeError):
        return {}


def keep_suspects(phones: dict[str, float]) -> None:
    """Each number's gateway-type failures are its own for ``SMS_GATEWAY_PAUSE_MAX_SECONDS``
    more than its seconds (its row's backoff, so its next attempt still finds it suspect)."""
    if not phones:
        return
    longest = current_app.config["SMS_GATEWAY_PAUSE_MAX_SECONDS"]
    now = time.time()
    try:
        client = get_redis()
        kept = _suspects(client.get(SUSPECT_KEY))  # two senders at once: one's may be lost (benign)
        kept.update({phone: now + longest + seconds for phone, seconds in phones.items()})
        ttl = max(1, int(max(kept.values()) - now + 1))
        client.set(SUSPECT_KEY, json.dumps(kept), ex=ttl)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unwritable (%s)", type(exc).__name__)


def take_probe(seconds: float) -> bool:
    """This sender probes (no other does for ``seconds``, the claim timeout: the longest a probe's
    claim holds its row). True when Redis cannot be written (closed, as in ``read``)."""
    try:
        return bool(get_redis().set(PROBE_KEY, "1", nx=True, ex=max(1, int(seconds + 0.999))))
    except redis.RedisError:
        return True


def end_probe() -> None:
    try:
        get_redis().delete(PROBE_KEY)
    except redis.RedisError:
        pass  # it expires


def failed(now: datetime, reason: str, phone: str | None, *, probe: bool = False) -> State:
    """A call failed for the gateway's reason: open the circuit (or, after a failed probe,
    again for twice as long). A sender whose lanes failed while another had already opened it
    leaves that pause be."""
    current = read()
    if current is not None and not probe and current.open_at(now):
        return current
    failures = current.failures + 1 if current is not None else 1
    wait = pause(failures)
    earlier = [p for p in current.failed_phones() if p != phone] if current is not None else []
    phones = (earlier + [phone])[-SUSPECTS_MAX:] if phone else earlier
    state = State(
        down_since=current.down_since if current is not None else now.isoformat(),
        until=(now + wait).isoformat(),
        failures=failures,
        reason=(reason or "")[:120],
        last_phone=phone,
        phones=phones,
    )
    try:
        get_redis().set(KEY, json.dumps(asdict(state)))
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unwritable (%s)", type(exc).__name__)
    if current is None:
        log.warning(
            "sms gateway down (%s): sends paused for %d s; messages keep their attempts",
            state.reason,
            wait.total_seconds(),
        )
    else:
        log.warning(
            "sms gateway still down after %d s (%s, failure %d in a row): next probe in %d s",
            (now - current.since).total_seconds(),
            state.reason,
            failures,
            wait.total_seconds(),
        )
    return state


def closed(now: datetime, state: State) -> None:
    """The probe was answered: every sender sends again, the numbers whose calls failed in the
    outage suspects (the module's docstring)."""
    try:
        get_redis().delete(KEY)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unwritable (%s)", type(exc).__name__)
    keep_suspects(dict.fromkeys(state.failed_phones(), 0.0))
    log.warning(
        "sms gateway answers again after %d s down (%d failures in a row): sends resume",
        (now - state.since).total_seconds(),
        state.failures,
    )
