"""The back-office pages, one module per page; importing this package puts every page's routes
on the ``admin`` blueprint. Figures (counts, sums, queue depths, ledger totals) come from the
read model, ``ussd_app/reports.py``, which ``/metrics`` and ``flask ledger check`` read too; a
page's own lists (a search, a transfer's trail) are its own queries. Each change is one
transaction with its audit row, and every POST has passed the CSRF check (``admin/__init__.py``).

| module | page |
| --- | --- |
| ``signin`` | sign-in and sign-out |
| ``dashboard`` | the last 24 hours, escrow held, queues, SMS delivery |
| ``ledger`` | the ledger's invariants and the trust figures |
| ``accounts`` | people: search, lock, unlock, KYC tier |
| ``transfers`` | transfers and one transfer's trail |
| ``disputes`` | disputes and reversals awaiting a decision |
| ``review`` | transfers held for review (clear or refuse), allowance settlements refused again and again |
| ``sms`` | the SMS outbox and retries |
| ``webhooks`` | webhook deliveries to merchants' systems, and resends |
| ``efloat`` | e-float issue against a trust deposit |
| ``api_keys`` | merchants' API keys: make (shown once) and revoke |
| ``queues`` | rq queues, failed jobs, workers |
| ``audit`` | the audit log |

``common`` holds what they share (money, form text, the audit row).
"""

from . import (  # noqa: F401
    accounts,
    api_keys,
    audit,
    dashboard,
    disputes,
    efloat,
    ledger,
    queues,
    review,
    signin,
    sms,
    transfers,
    webhooks,
)
