"""Operators of the back office and the audit log of what they did.

- An operator signs in with an email and a password, stored as an argon2id hash only.
  Operators are created from the CLI (``flask --app wsgi operators create``).
- Every operator action (sign-in, sign-out, refused sign-in, each change made) writes one
  ``audit_log`` row in the same database transaction as the change it records. Rows are
  never updated or deleted by the app.
"""

import functools
import json
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db

_hasher = PasswordHasher()  # argon2id, the library's interactive defaults
MIN_PASSWORD_LENGTH = 12


class Operator(db.Model):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher.hash(password)

    def check_password(self, password: str) -> bool:
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


class AuditEntry(db.Model):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), index=True, default=None)
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str | None] = mapped_column(String(100), index=True, default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)  # JSON
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    # The trace id of the web request that did it (logging_setup).
    trace_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    @property
    def details(self) -> dict:
        return json.loads(self.detail) if self.detail else {}


class OperatorError(ValueError):
    pass


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def create_operator(session, *, email: str, name: str, password: str) -> Operator:
    """Adds to the session; the caller commits."""
    email = normalize_email(email)
    name = " ".join((name or "").split())
    if "@" not in email or len(email) > 200:
        raise OperatorError("not an email address")
    if not name or len(name) > 100:
        raise OperatorError("a name is 1 to 100 characters")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"a password is at least {MIN_PASSWORD_LENGTH} characters")
    if session.execute(select(Operator).where(Operator.email == email)).scalar_one_or_none():
        raise OperatorError(f"{email} already exists")
    operator = Operator(email=email, name=name, active=True)
    operator.set_password(password)
    session.add(operator)
    session.flush()
    return operator


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made with the operators' parameters (once per process)."""
    return _hasher.hash(secrets.token_urlsafe(32))


def verify_sign_in(operator: Operator | None, password: str) -> bool:
    """True when ``operator`` is active and ``password`` is theirs. Every call costs one
    argon2 verify, also for an unknown e-mail (against a dummy hash) or a deactivated
    operator, so the time taken does not tell which e-mails are operators'."""
    if operator is None:
        try:
            _hasher.verify(_dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass
        return False
    return operator.check_password(password) and bool(operator.active)


def find_operator(session, email: str) -> Operator | None:
    return session.execute(
        select(Operator).where(Operator.email == normalize_email(email))
    ).scalar_one_or_none()


def record(session, operator_id: int | None, action: str, target: str | None = None, **detail) -> AuditEntry:
    """One audit row, in the caller's transaction. ``detail`` must never hold a secret."""
    from flask import has_request_context

    from ..logging_setup import current_trace_id
    from .throttle import client_address

    ip = client_address() if has_request_context() else None
    entry = AuditEntry(
        operator_id=operator_id,
        action=action,
        target=(str(target)[:100] if target is not None else None),
        detail=json.dumps(detail, default=str, sort_keys=True) if detail else None,
        ip=ip,
        trace_id=current_trace_id(),
    )
    session.add(entry)
    return entry
