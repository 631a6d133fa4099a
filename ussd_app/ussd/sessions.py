"""USSD sessions in Redis, keyed by Africa's Talking's ``sessionId``.

One JSON value per session holds the conversation, the flow's data (never a PIN), and the
last request's text and answer, so a repeated request gets the same screen and causes nothing
twice. A second key per phone holds the resume snapshot of a session that dropped mid-flow.
Both expire on their own; nothing here needs cleaning up.
"""

import hashlib
import hmac
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import current_app
from redis.exceptions import LockError

from ..queues import get_redis
from .engine import Conversation

PREFIX = "tuma:ussd"
LOCK_SECONDS = 15  # longest one request may hold its session (AT gives up well before)
LOCK_WAIT_SECONDS = 10


class SessionBusy(RuntimeError):
    """Another request of the same session is still being answered."""


@dataclass
class StoredSession:
    phone: str
    conversation: Conversation
    data: dict = field(default_factory=dict)
    last_text: str | None = None  # a keyed digest of the text: the text carries PINs
    last_reply: str | None = None  # the full "CON ..."/"END ..." body

    def to_json(self) -> str:
        return json.dumps(
            {
                "phone": self.phone,
                "conversation": self.conversation.to_json(),
                "data": self.data,
                "last_text_digest": self.last_text,
                "last_reply": self.last_reply,
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
    raw = get_redis().get(_session_key(session_id))
    return StoredSession.from_json(raw) if raw else None


def save(session_id: str, stored: StoredSession) -> None:
    ttl = current_app.config["USSD_SESSION_TTL_SECONDS"]
    get_redis().set(_session_key(session_id), stored.to_json(), ex=ttl)


def load_resume(phone: str) -> dict | None:
    raw = get_redis().get(_resume_key(phone))
    return json.loads(raw) if raw else None


def save_resume(phone: str, snapshot: dict | None) -> None:
    """Keep ``snapshot`` for the resume window, or forget any when it is None."""
    if snapshot is None:
        get_redis().delete(_resume_key(phone))
    else:
        ttl = current_app.config["USSD_RESUME_WINDOW_SECONDS"]
        get_redis().set(_resume_key(phone), json.dumps(snapshot), ex=ttl)


@contextmanager
def locked(session_id: str):
    """Answer one request of a session at a time, so a repeat that arrives while the first is
    still running waits and then gets the stored answer instead of running the flow again."""
    lock = get_redis().lock(
        f"{PREFIX}:lock:{session_id}", timeout=LOCK_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS
    )
    if not lock.acquire():
        raise SessionBusy(session_id)
    try:
        yield
    finally:
        try:
            lock.release()
        except LockError:
            pass  # held past its timeout and taken over: nothing of ours to release
