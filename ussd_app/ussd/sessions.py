"""USSD sessions in Redis, keyed by Africa's Talking's ``sessionId``.

One JSON value per session holds the conversation, the flow's data (never a PIN), and the
last request's text and answer, so a repeated request gets the same screen and causes nothing
twice. A second key per phone holds the resume snapshot of a session that dropped mid-flow.
Both expire on their own; nothing here needs cleaning up.
"""

import hashlib
import hmac
import json
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import current_app
from redis.exceptions import RedisError

from ..queues import get_redis
from .conversation import Conversation

PREFIX = "tuma:ussd"
LOCK_SECONDS = 15  # longest one request may hold its session (AT gives up well before)
LOCK_WAIT_SECONDS = 10
LOCK_POLL_SECONDS = 0.05


class SessionBusy(RuntimeError):
    """Another request of the same session is still being answered."""


@dataclass
class StoredSession:
    phone: str
    conversation: Conversation
    data: dict = field(default_factory=dict)
    last_text: str | None = None  # a keyed digest of the text: the text carries PINs
    last_reply: str | None = None  # the full "CON ..."/"END ..." body
    answered_at: float | None = None  # when it was answered (epoch seconds): a repeat's window

    def to_json(self) -> str:
        return json.dumps(
            {
                "phone": self.phone,
                "conversation": self.conversation.to_json(),
                "data": self.data,
                "last_text_digest": self.last_text,
                "last_reply": self.last_reply,
                "answered_at": self.answered_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "StoredSession":
        doc = json.loads(raw)
        return cls(
            phone=doc["phone"],
            conversation=Conversation.from_json(doc["conversation"]),
            data=doc.get("data") or {},
            last_text=doc.get("last_text_digest"),
            last_reply=doc.get("last_reply"),
            answered_at=doc.get("answered_at"),
        )


def text_digest(session_id: str, text: str) -> str:
    """Recognises a repeated request without keeping its text, which may hold a PIN. Keyed,
    so the 10,000 possible PINs cannot be tried against it without the server's secret."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{session_id}\x00{text}".encode(), hashlib.sha256).hexdigest()


def _session_key(session_id: str) -> str:
    return f"{PREFIX}:session:{session_id}"


def _resume_key(phone: str) -> str:
    return f"{PREFIX}:resume:{phone}"


def load(session_id: str) -> StoredSession | None:
    """The stored session, read without its lock (for inspection and tests)."""
    raw = get_redis().get(_session_key(session_id))
    return StoredSession.from_json(raw) if raw else None


# Deletes the lock only if it is still ours (it may have run out and been taken over).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Hold:
    """One request's hold on its session: what Redis held when the lock was taken, and the
    writes to make when it is let go (sent with the release, in the same round trip)."""

    def __init__(self, session_id: str, phone: str, stored: StoredSession | None, resume: dict | None):
        self.session_id, self.phone = session_id, phone
        self.stored = stored  # None on a session's first request
        self.resume = resume  # the phone's snapshot of an unfinished earlier session, if any
        self._writes: tuple[StoredSession, dict | None, bool] | None = None

    def save(self, stored: StoredSession, snapshot: dict | None, *, keep_resume: bool = False) -> None:
        """Keep ``stored`` for this session and ``snapshot`` as the phone's resume point (None
        forgets it, unless ``keep_resume``). Written when the request lets go of the session."""
        self._writes = (stored, snapshot, keep_resume)

    def _queue_writes(self, pipe) -> None:
        if self._writes is None:
            return
        stored, snapshot, keep_resume = self._writes
        config = current_app.config
        pipe.set(_session_key(self.session_id), stored.to_json(), ex=config["USSD_SESSION_TTL_SECONDS"])
        if snapshot is not None:
            pipe.set(_resume_key(self.phone), json.dumps(snapshot), ex=config["USSD_RESUME_WINDOW_SECONDS"])
        elif not keep_resume:
            pipe.delete(_resume_key(self.phone))


@contextmanager
def locked(session_id: str, phone: str):
    """Answer one request of a session at a time, so a repeat that arrives while the first is
    still running waits and then gets the stored answer instead of running the flow again.

    Two round trips to Redis per request: taking the lock reads the session and the phone's
    resume snapshot in the same pipeline; letting go writes them back and releases the lock."""
    redis = get_redis()
    lock_key, token = f"{PREFIX}:lock:{session_id}", secrets.token_hex(16)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        pipe = redis.pipeline(transaction=False)
        pipe.set(lock_key, token, nx=True, px=LOCK_SECONDS * 1000)
        pipe.get(_session_key(session_id))
        pipe.get(_resume_key(phone))
        taken, raw, resume = pipe.execute()
        if taken:
            break
        if time.monotonic() >= deadline:
            raise SessionBusy(session_id)
        time.sleep(LOCK_POLL_SECONDS)
    hold = Hold(
        session_id,
        phone,
        StoredSession.from_json(raw) if raw else None,
        json.loads(resume) if resume else None,
    )
    finished = False
    try:
        yield hold
        finished = True
    finally:
        pipe = redis.pipeline(transaction=False)
        if finished:
            hold._queue_writes(pipe)
        pipe.eval(_RELEASE, 1, lock_key, token)
        if finished:
            pipe.execute()  # a failed write must be seen: the view answers accordingly
        else:
            try:
                pipe.execute()
            except RedisError:
                pass  # the request failed already; the lock runs out on its own
