"""USSD sessions in Redis, keyed by Africa's Talking's ``sessionId``.

One JSON value per session holds the conversation, the flow's data (never a PIN), and the
last request's text and answer, so a repeated request gets the same screen and causes nothing
twice. A second key per phone holds the resume snapshot of a session that dropped mid-flow.
Both expire on their own; nothing here needs cleaning up.

Both values are sealed (``seal``/``unseal``): an HMAC-SHA256 under a key derived from
``SECRET_KEY``, over the value and the Redis key it is stored under (the session's id, or the
phone for a snapshot), goes in front of the JSON. A value someone wrote into Redis by hand, or
moved from another session or number, is unreadable: the session ends ("Your session has
ended"), the snapshot is no offer. So the order a person confirmed (whom, how much) is the one
their PIN authorises, whoever else can write to Redis. (A value of the same session from
earlier in it still opens: it is one this person's own session held.)

The JSON is written and read by pydantic_core (``_dumps``, ``_loads``; pydantic's own core, a
runtime dependency already): the same documents as ``json.dumps`` and ``json.loads`` give, in
about a third of their instructions (json's encode and decode of a session were a third of
what a menu hop cost above bench/floor_app.py's, by callgrind). Its text is compact and UTF-8
where json writes ", " and ``\\u`` escapes: the same document to any reader, older sessions
included.
"""

import functools
import hmac
import json
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import pydantic_core
from flask import current_app
from redis.exceptions import RedisError

from ..queues import get_redis, hold_announcements, run_script, send_held
from ..tariffs import STAMP_KEY as TARIFF_STAMP
from . import caller
from .conversation import Conversation

log = logging.getLogger(__name__)

PREFIX = "tuma:ussd"
LOCK_SECONDS = 15  # longest one request may hold its session (AT gives up well before)
LOCK_WAIT_SECONDS = 10
LOCK_POLL_SECONDS = 0.05


class SessionBusy(RuntimeError):
    """Another request of the same session is still being answered."""


class Unreadable(RuntimeError):
    """The session's value in Redis cannot be read (cut short, not a session, not sealed for
    it): nothing was applied and its lock was let go. The session is over."""


# What reading a value that is not a session (or not a snapshot) raises: bad JSON or UTF-8
# (ValueError), a document of another shape (KeyError, TypeError, AttributeError).
_NOT_A_SESSION = (ValueError, KeyError, TypeError, AttributeError)


@dataclass
class StoredSession:
    phone: str
    conversation: Conversation
    data: dict = field(default_factory=dict)
    last_text: str | None = None  # a keyed digest of the text: the text carries PINs
    last_reply: str | None = None  # the full "CON ..."/"END ..." body
    # The keyed digest of the session's first hop when it carried a dial string (a shortcut,
    # walked or not): a copy of it arriving later is a late copy, never applied as an input.
    first_text: str | None = None
    answered_at: float | None = None  # when it was answered (epoch seconds): a repeat's window
    # The caller's few facts (``caller.Facts``: who, role, language, lock; never a PIN or its
    # hash), so a menu hop reads no database. None: read them from the database.
    caller: dict | None = None

    def to_json(self) -> bytes | str:
        return _dumps(
            {
                "phone": self.phone,
                "conversation": self.conversation.to_json(),
                "data": self.data,
                "last_text_digest": self.last_text,
                "last_reply": self.last_reply,
                "first_text_digest": self.first_text,
                "answered_at": self.answered_at,
                "caller": self.caller,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "StoredSession":
        doc = _loads(raw)
        return cls(
            phone=doc["phone"],
            conversation=Conversation.from_json(doc["conversation"]),
            data=doc.get("data") or {},
            last_text=doc.get("last_text_digest"),
            last_reply=doc.get("last_reply"),
            first_text=doc.get("first_text_digest"),
            answered_at=doc.get("answered_at"),
            caller=doc.get("caller"),
        )


def _dumps(doc) -> bytes | str:
    """``json.dumps(doc)``'s document, by pydantic_core (compact, UTF-8). A text it cannot write
    (a lone surrogate, which a gateway's JSON may carry) is json's to write."""
    try:
        return pydantic_core.to_json(doc)
    except pydantic_core.PydanticSerializationError:
        return json.dumps(doc)


def _loads(raw: str | bytes):
    """``json.loads(raw)``, by pydantic_core (field names cached, not values); what it refuses
    (json's escape of a lone surrogate) is json's to read or refuse."""
    try:
        return pydantic_core.from_json(raw, cache_strings="keys")
    except ValueError:
        return json.loads(raw)


SEAL_PREFIX = b"t1."  # then the HMAC's 64 hex digits, ".", the JSON
_SEAL_LENGTH = len(SEAL_PREFIX) + 64 + 1


@functools.lru_cache(maxsize=4)
def _seal_key(secret: str) -> str:
    """The sealing key: derived from ``SECRET_KEY`` for this use alone (``text_digest`` uses the
    secret itself)."""
    return hmac.new(secret.encode(), b"tuma ussd session seal", "sha256").hexdigest()


def _seal_mac(owner: str, body: bytes) -> bytes:
    mac = _keyed(_seal_key(current_app.config["SECRET_KEY"])).copy()
    mac.update(owner.encode())
    mac.update(b"\x00")
    mac.update(body)
    return mac.hexdigest().encode()


def seal(owner: str, body: bytes | str) -> bytes:
    """``body`` (a value's JSON) as stored in Redis under the key ``owner`` (the session's, or
    the phone's snapshot's): its HMAC, over the key and the JSON, in front."""
    body = body.encode() if isinstance(body, str) else body
    return SEAL_PREFIX + _seal_mac(owner, body) + b"." + body


def unseal(owner: str, raw: bytes | str) -> bytes:
    """The JSON of a value ``seal`` wrote for ``owner``; ValueError for any other (unsealed,
    another owner's, changed, cut short)."""
    raw = raw.encode() if isinstance(raw, str) else raw
    if not raw.startswith(SEAL_PREFIX) or raw[_SEAL_LENGTH - 1 : _SEAL_LENGTH] != b".":
        raise ValueError("not a sealed value")  # (a value cut short has no "." there either)
    body = raw[_SEAL_LENGTH:]
    if not hmac.compare_digest(raw[len(SEAL_PREFIX) : _SEAL_LENGTH - 1], _seal_mac(owner, body)):
        raise ValueError("seal does not match")
    return body


def text_digest(session_id: str, text: str) -> str:
    """Recognises a repeated request without keeping its text, which may hold a PIN. Keyed,
    so the 10,000 possible PINs cannot be tried against it without the server's secret."""
    mac = _keyed(current_app.config["SECRET_KEY"]).copy()
    mac.update(f"{session_id}\x00{text}".encode())
    return mac.hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(key: str):
    """HMAC-SHA256 keyed with ``key``, copied for each digest: OpenSSL's look-up of the hash and
    the key's padding made once, where ``hmac.digest`` made them every hop (a third of it)."""
    return hmac.new(key.encode(), digestmod="sha256")


def _session_key(session_id: str) -> str:
    return f"{PREFIX}:session:{session_id}"


def _resume_key(phone: str) -> str:
    return f"{PREFIX}:resume:{phone}"


def load(session_id: str) -> StoredSession | None:
    """The stored session, read without its lock (for inspection and tests)."""
    raw = get_redis().get(_session_key(session_id))
    return StoredSession.from_json(unseal(_session_key(session_id), raw)) if raw else None


# Taking a session: count the hop against the caller's rate limit (when asked), then take the
# lock and read, in the same round trip, what the request needs: the session, the phone's
# resume snapshot and the tokens that say whether the caller's cached facts still hold
# (``caller.py``), and the tariffs' stamp (``tariffs.py``: created, with the lock's random
# token for a value, when it is gone, so that a lost token never reads as "unchanged").
# Over the limit, nothing is taken or read. Returns {count, taken, ...}.
# The rate key's expiry is set by the count that makes the key (it lives past its minute);
# every other count only counts. A lock already holding this request's token is taken: the
# script sent again by ``queues.SCRIPT_RETRY`` after its connection broke once it had run (the
# count is then one too many, never one too few).
# KEYS: lock, session, resume, caller token, caller epoch, rate key, tariffs' stamp.
# ARGV: lock token, lock ms, rate limit (0: not counted here), rate key's seconds.
_ACQUIRE = """
local count = 0
local limit = tonumber(ARGV[3])
if limit > 0 then
  count = redis.call('incr', KEYS[6])
  if count == 1 then redis.call('expire', KEYS[6], ARGV[4]) end
  if count > limit then return {count, 0} end
end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
   and redis.call('get', KEYS[1]) ~= ARGV[1] then return {count, 0} end
local stamp = redis.call('get', KEYS[7])
if not stamp then
  stamp = ARGV[1]
  redis.call('set', KEYS[7], stamp)
end
return {count, 1, redis.call('get', KEYS[2]), redis.call('get', KEYS[3]),
        redis.call('get', KEYS[4]), redis.call('get', KEYS[5]), stamp}
"""
# Letting go: the session's writes (if any), then the lock deleted only if it is still ours (it
# may have run out and been taken over). The writes are made either way, as they always were.
# KEYS: lock, session, resume. ARGV: lock token, "write" or "", session, its seconds,
# resume: "set" (then the snapshot and its seconds), "del" or "keep".
_RELEASE = """
if ARGV[2] == 'write' then
  redis.call('set', KEYS[2], ARGV[3], 'EX', ARGV[4])
  if ARGV[5] == 'set' then redis.call('set', KEYS[3], ARGV[6], 'EX', ARGV[7])
  elseif ARGV[5] == 'del' then redis.call('del', KEYS[3]) end
end
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class TooManyHops(RuntimeError):
    """The caller's number is over its rate limit (``security``): nothing was taken or read."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


class Hold:
    """One request's hold on its session: what Redis held when the lock was taken, and the
    writes to make when it is let go (sent with the release, in the same round trip)."""

    def __init__(
        self,
        session_id: str,
        phone: str,
        stored: StoredSession | None,
        resume: dict | None,
        caller_token: str,
        tariff_stamp: str = "",
    ):
        self.session_id, self.phone = session_id, phone
        self.stored = stored  # None on a session's first request
        self.resume = resume  # the phone's snapshot of an unfinished earlier session, if any
        # What the caller's cached facts are checked against (``caller.Facts.fresh``).
        self.caller_token = caller_token
        self.tariff_stamp = tariff_stamp  # what a quote's cached tariff is checked against
        self._writes: tuple[StoredSession, dict | None, bool] | None = None

    def save(self, stored: StoredSession, snapshot: dict | None, *, keep_resume: bool = False) -> None:
        """Keep ``stored`` for this session and ``snapshot`` as the phone's resume point (None
        forgets it, unless ``keep_resume``). Written when the request lets go of the session."""
        self._writes = (stored, snapshot, keep_resume)

    def _release_args(self, token: str) -> list:
        if self._writes is None:
            return [token, ""]
        stored, snapshot, keep_resume = self._writes
        config = current_app.config
        value = seal(_session_key(self.session_id), stored.to_json())
        args = [token, "write", value, config["USSD_SESSION_TTL_SECONDS"]]
        if snapshot is None:
            return [*args, "keep" if keep_resume else "del"]
        snapshot_value = seal(_resume_key(self.phone), _dumps(snapshot))
        return [*args, "set", snapshot_value, config["USSD_RESUME_WINDOW_SECONDS"]]


def _snapshot(raw, phone: str) -> dict | None:
    """The phone's resume snapshot, or None when there is none or it cannot be read: one cut
    short or of another shape is no offer (it failed every dial of the number until it ran
    out); the hop's save replaces or forgets it."""
    if not raw:
        return None
    try:
        snapshot = _loads(unseal(_resume_key(phone), raw))
    except ValueError:
        snapshot = None
    if isinstance(snapshot, dict) and isinstance(snapshot.get("data") or {}, dict):
        return snapshot
    log.error("ussd resume snapshot of %s unreadable in Redis: not offered", phone[:5] + "***")
    return None


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else (raw or "")


@contextmanager
def locked(session_id: str, phone: str, *, rate: tuple[str, int, int] | None = None, announce=None):
    """Answer one request of a session at a time, so a repeat that arrives while the first is
    still running waits and then gets the stored answer instead of running the flow again.

    ``rate`` is (key, limit, seconds) of the caller's rate-limit window (``security``), counted
    once, in the same round trip as the lock: over the limit, ``TooManyHops`` and nothing taken.

    Two round trips to Redis per request, one command each: taking the lock reads the session,
    the phone's resume snapshot and the caller's tokens; letting go writes them back and
    releases the lock. ``announce``: the announcements of the commits made while the lock is
    held (a request's doorbell, its trace id, a name look-up's cancel taken back: ``queues``)
    are held, and sent with the release in its one round trip (``queues.send_held``)."""
    lock_key, token = f"{PREFIX}:lock:{session_id}", secrets.token_hex(16)
    keys = [lock_key, _session_key(session_id), _resume_key(phone), *caller.token_keys(phone)]
    rate_key, limit, seconds = rate or ("", 0, 0)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        args = [token, LOCK_SECONDS * 1000, limit, seconds]
        count, taken, *read = run_script(_ACQUIRE, [*keys, rate_key or lock_key, TARIFF_STAMP], args)
        if limit and count > limit:
            raise TooManyHops(count)
        limit = 0  # counted once, however long it waits for the lock
        if taken:
            break
        if time.monotonic() >= deadline:
            raise SessionBusy(session_id)
        time.sleep(LOCK_POLL_SECONDS)
    raw, resume, caller_token, epoch, tariff_stamp = read
    try:
        stored = StoredSession.from_json(unseal(_session_key(session_id), raw)) if raw else None
    except _NOT_A_SESSION as exc:
        # Never left locked: a value nobody can read held the lock 15 s at every hop, and each
        # retry waited 10 s to be told "busy". (Only the type is logged: never the value.)
        log.error("ussd session=%s unreadable in Redis (%s): ended", session_id[:40], type(exc).__name__)
        try:
            run_script(_RELEASE, keys[:3], [token, ""])
        except RedisError:
            pass  # the lock runs out on its own
        raise Unreadable(session_id) from None
    hold = Hold(
        session_id,
        phone,
        stored,
        _snapshot(resume, phone),
        f"{_text(caller_token)}/{_text(epoch)}",
        _text(tariff_stamp),
    )
    held = hold_announcements() if announce else None
    finished = False
    try:
        yield hold
        finished = True
    finally:
        args = hold._release_args(token) if finished else [token, ""]
        release = run_script if held is None else functools.partial(send_held, held)
        if finished:  # a failed write must be seen: the view answers accordingly
            release(_RELEASE, keys[:3], args)
        else:
            try:
                release(_RELEASE, keys[:3], args)
            except RedisError:
                pass  # the request failed already; the lock runs out on its own
