"""Per-key rate limits: at most ``API_RATE_PER_MINUTE`` requests per key in a fixed minute
(Redis, ``security.window_count``), else 429 ``rate_limited`` with ``Retry-After``.

Counted after the key is known and before anything else is read: a key that floods the API is
turned away for the price of one Redis round trip. If Redis is down the request goes through
(logged): money is guarded by the ledger and the idempotency table, not by this count.
"""

import time

from flask import current_app

from ..security import window_count
from .errors import ApiError


def check(key_id: str) -> None:
    per_minute = current_app.config["API_RATE_PER_MINUTE"]
    if not per_minute:
        return
    count = window_count(f"api:{key_id}")
    if count is not None and count > per_minute:
        raise ApiError("rate_limited", headers={"Retry-After": str(60 - int(time.time()) % 60)})
