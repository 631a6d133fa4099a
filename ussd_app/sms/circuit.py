"""The SMS gateway's circuit: while Africa's Talking (or our account with it) fails every call,
the senders stop calling it, instead of spending the outbox's attempts on it.

A hand-over that fails for a reason that is the gateway's or the account's, not the message's
(``Answer.pause``: connection refused or reset, a timeout, a non-2xx answer such as a 5xx or a
429, 402 InvalidSenderId, 405 InsufficientBalance) costs its row no attempt (``sender.records._values``:
``pending`` again, its attempt undone, the reason kept for the operator) and **opens** the
circuit: no sender claims anything for ``SMS_GATEWAY_PAUSE_SECONDS``. Once the pause is over,
the next job **probes**: one sender (``PROBE_KEY``, set NX) claims one row, the oldest due
(of another number than the last call that failed, when there is one, so no one message can
hold the circuit open), and hands it over. Answered (accepted, or refused for that message
alone), the circuit **closes** and the job goes on as usual; failed again, the pause doubles,
up to ``SMS_GATEWAY_PAUSE_MAX_SECONDS``. A number's rows go back in order (the row that failed
first), so per-number order holds across the outage. Per-message refusals (403/404/406/409,
and per-recipient transient codes such as 407 or a recipient's 500) are the message's: they
spend attempts and end ``failed`` as before, and the circuit stays closed.

A **suspect** keeps one message from passing its own failure off as the gateway's forever (a
"poison" message whose own call fails at the HTTP level or times out while the gateway answers
everyone else: it would cost no attempt, open the circuit, the probe to another number would
close it, and it would be claimed again, pausing every sender each time). When a probe closes
the circuit, the number whose call failed last (``State.last_phone``) becomes the suspect
(``SUSPECT_KEY``, for ``SMS_GATEWAY_PAUSE_MAX_SECONDS``). While the circuit is closed, a
gateway-type failure of the suspect's row is taken as the message's own (``sender.lanes``):
it spends its attempt with the usual backoff (so ``SMS_MAX_ATTEMPTS`` bounds it and it ends
``failed``), stops no other lane and opens no circuit; each such failure keeps the number
suspect past its backoff (``keep_suspect``), so a poison row pauses the senders once, not once
per attempt. The price: if the gateway goes down again (flaps) while a number is suspect, that
number's one row in flight spends one attempt (the other rows still open the circuit and
spend none); a real outage costs no other row an attempt. The suspect's time is Redis's own
(the key's TTL), not the senders' ``now``. A poison row with no other number due is its own
probe: it keeps the circuit open (pausing nobody else) until another number's row is due,
whose probe closes it (after at most ``SMS_GATEWAY_PAUSE_MAX_SECONDS``). One suspect at a
time: two poison numbers can be each other's probe.

The state is one Redis key that every sender reads before it claims (a JSON value: when the
gateway was first seen down, until when nobody calls it, how many failures in a row, the last
reason, the number whose call failed last). Times are the senders' ``now`` (``utcnow()``, or
a test's). When Redis cannot be read or written the circuit is treated as closed: a failure
still costs no attempt and still stops the job (``sender.job.send_due``), so without Redis the
senders fall back to one short job per ring. The operator sees it in the log (a warning when
the circuit opens, at each failed probe, and when it closes) and at ``/metrics``
(``tuma_sms_gateway_down``, ``tuma_sms_gateway_down_since_seconds``, read from this key at
scrape time).
"""

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import redis
from flask import current_app

from ..queues import get_redis

log = logging.getLogger(__name__)

KEY = "tuma:sms:gateway"
PROBE_KEY = "tuma:sms:gateway:probe"
SUSPECT_KEY = "tuma:sms:gateway:suspect"  # the number whose failure last opened it, once closed


@dataclass(frozen=True)
class State:
    """An open circuit (no key: closed)."""

    down_since: str  # ISO time of the first failure of this outage
    until: str  # ISO time before which no sender calls the gateway
    failures: int  # failures in a row (the first, then each failed probe)
    reason: str
    last_phone: str | None = None  # whose call failed last: the next probe goes to another number

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


def look() -> tuple[State | None, str | None]:
    """The circuit's state (as ``read``) and the suspect number (None: none, or Redis cannot
    be read), in one round trip."""
    try:
        raw, suspect = get_redis().mget(KEY, SUSPECT_KEY)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unreadable (%s); treated as closed", type(exc).__name__)
        return None, None
    if isinstance(suspect, bytes):
        suspect = suspect.decode()
    if raw is None:
        return None, suspect
    try:
        return State(**json.loads(raw)), suspect
    except (TypeError, ValueError) as exc:
        log.warning("sms gateway circuit: unreadable state (%s); treated as closed", exc)
        return None, suspect


def keep_suspect(phone: str, seconds: float = 0) -> None:
    """``phone``'s gateway-type failures are its own for ``SMS_GATEWAY_PAUSE_MAX_SECONDS`` more
    than ``seconds`` (its row's backoff, so its next attempt still finds it suspect)."""
    ttl = max(1, int(current_app.config["SMS_GATEWAY_PAUSE_MAX_SECONDS"] + seconds + 0.999))
    try:
        get_redis().set(SUSPECT_KEY, phone, ex=ttl)
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
    state = State(
        down_since=current.down_since if current is not None else now.isoformat(),
        until=(now + wait).isoformat(),
        failures=failures,
        reason=(reason or "")[:120],
        last_phone=phone,
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
    """The probe was answered: every sender sends again, the number whose call failed last a
    suspect (the module's docstring)."""
    try:
        get_redis().delete(KEY)
    except redis.RedisError as exc:
        log.warning("sms gateway circuit: Redis unwritable (%s)", type(exc).__name__)
    if state.last_phone:
        keep_suspect(state.last_phone)
    log.warning(
        "sms gateway answers again after %d s down (%d failures in a row): sends resume",
        (now - state.since).total_seconds(),
        state.failures,
    )
