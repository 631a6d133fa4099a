"""Idempotency keys: a POST sent twice has one effect and one answer.

Every POST carries ``Idempotency-Key`` (1 to 255 of ``A-Z a-z 0-9 . _ : -``). The first request
with a key inserts its row here **in the same database transaction as its effect**, and stores
its answer in that row before the commit, so the effect and the remembered answer commit
together or not at all:

- same key, same body (method, path and the body's canonical form: ``fingerprint``) -> the
  stored answer, replayed byte for byte with ``Idempotent-Replayed: true``;
- same key, another body -> 422 ``idempotency_key_reused``;
- two at once: the second's INSERT waits on the unique key until the first commits (then it
  replays) or rolls back (then it runs itself). On PostgreSQL it waits at most
  ``API_IDEMPOTENCY_WAIT_MS``, then answers 409 ``idempotency_in_progress`` (retry later); on
  SQLite every transaction already holds the database (``BEGIN IMMEDIATE``), so it waits.
- only a success (2xx) is remembered: a refusal has had no effect (its transaction rolled
  back), so the same key may be sent again once the cause is fixed.

Rows are kept at least 24 hours (``API_IDEMPOTENCY_HOURS``, never less), then purged by the
maintenance job (``purge``).

Even a lost answer cannot make a second transfer: the transfer requests' ids are derived from
(key, Idempotency-Key) (``derived_id``), and recording an id twice is the same request.
"""

import hashlib
import json
import re
from datetime import datetime, timedelta

from flask import Response, current_app, request
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, delete, insert, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..database import is_postgres
from ..extensions import db
from .errors import ApiError

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[A-Za-z0-9._:\-]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
MIN_HOURS = 24


class IdempotencyRecord(db.Model):
    __tablename__ = "api_idempotency_keys"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer, default=0)  # 0 until the answer is stored
    body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


def header_key() -> str:
    """The request's Idempotency-Key, or 422."""
    key = request.headers.get(HEADER)
    if key is None:
        raise ApiError("idempotency_key_missing")
    if not _KEY.match(key):
        raise ApiError("invalid_request", f"{HEADER} is 1 to 255 of A-Z a-z 0-9 . _ : -")
    return key


def fingerprint(body) -> str:
    """The request as compared: method, path and the body's canonical form (a JSON body with
    its keys sorted, so the same object spelled another way is the same request)."""
    canonical = (
        body if isinstance(body, bytes | str) else json.dumps(body, sort_keys=True, separators=(",", ":"))
    )
    if isinstance(canonical, str):
        canonical = canonical.encode()
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def derived_id(api_key_id: int, key: str) -> str:
    """The transfer request id (or payment request group id) of this (API key, Idempotency-Key):
    32 hex digits, the same on every retry."""
    return hashlib.sha256(f"api\0{api_key_id}\0{key}".encode()).hexdigest()[:32]


def claim(api_key_id: int, key: str, print_: str) -> tuple[int, str] | Response:
    """Claim (API key, key) for this request (its row inserted in the request's transaction),
    or the answer to give instead: the stored one replayed, or an ApiError (reused key, still
    in progress)."""
    session = db.session
    row = {"api_key_id": api_key_id, "key": key, "fingerprint": print_, "status": 0, "body": ""}
    for _ in range(3):
        try:
            if is_postgres(session):
                wait = int(current_app.config["API_IDEMPOTENCY_WAIT_MS"])
                session.execute(text(f"SET LOCAL lock_timeout = {wait}"))
            # A statement, not an object: the answer stored later is an UPDATE of this row.
            session.execute(insert(IdempotencyRecord).values(**row, created_at=utcnow()))
            if is_postgres(session):
                session.execute(text("SET LOCAL lock_timeout = 0"))
            return api_key_id, key
        except IntegrityError:
            session.rollback()  # nothing else was done yet in this transaction
        except DBAPIError as exc:
            session.rollback()
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_timeout: the first still runs
                raise ApiError("idempotency_in_progress", headers={"Retry-After": "1"}) from None
            raise
        existing = session.get(IdempotencyRecord, (api_key_id, key), populate_existing=True)
        if existing is None:
            continue  # purged in between: claim it again
        if existing.fingerprint != print_:
            raise ApiError("idempotency_key_reused")
        if not existing.status:  # cannot happen (stored before the commit); refuse, never guess
            raise ApiError("idempotency_in_progress", headers={"Retry-After": "1"})
        return _replay(existing)
    raise ApiError("idempotency_in_progress", headers={"Retry-After": "1"})


def _replay(record: IdempotencyRecord) -> Response:
    replay = Response(record.body, status=record.status, mimetype="application/json")
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def stored(api_key_id: int, key: str, print_: str) -> Response | None:
    """The stored answer to this very request (same key, same body), replayed; None if there is
    none. For a body its model refuses now but took when first sent (a moment "in the future"
    that has since passed): the retry gets the first answer, not a 422."""
    existing = db.session.get(IdempotencyRecord, (api_key_id, key), populate_existing=True)
    if existing is None or existing.fingerprint != print_ or not existing.status:
        return None
    return _replay(existing)


def remember(claimed: tuple[int, str], response: Response) -> None:
    """Store the answer in the claimed row (the caller commits it with the effect)."""
    api_key_id, key = claimed
    db.session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
        .values(status=response.status_code, body=response.get_data(as_text=True))
    )


def keep_hours(config) -> int:
    return max(MIN_HOURS, int(config.get("API_IDEMPOTENCY_HOURS") or MIN_HOURS))


def purge(session, now: datetime | None = None) -> int:
    """Delete the rows older than the keeping time. No commit."""
    cutoff = (now or utcnow()) - timedelta(hours=keep_hours(current_app.config))
    result = session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    return result.rowcount or 0
