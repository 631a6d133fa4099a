"""Pay-bill validation: a merchant that set a validation URL is asked, before a pay-bill
payment to it is accepted, whether the account reference (and amount) is one it takes,
Daraja's C2B validation URL in our words.

The USSD pay-bill flow (``ussd/flows/pay.py``) reads the question (``question``: the URL, the
secret and the signed body, all copied out of the database), ends its database transaction,
then ``ask``s: no transaction is open while a merchant's server takes its time. The merchant
has ``PAYBILL_VALIDATION_TIMEOUT_SECONDS`` (2 s) all told, by the wall clock (name resolution,
connect, headers and body: ``urls.py``'s deadline, so an answer sent a byte at a time is cut
off); without a clear answer in that time (no answer, not 2xx, not the JSON below, a URL we
refuse) ``PAYBILL_VALIDATION_DEFAULT`` decides.

The request: ``POST <validation_url>`` with ``Tuma-Signature`` (as for events) and the body
``{"type": "paybill.validation", "business_number", "account_reference", "amount",
"currency", "payer": {"phone": masked}}``. The answer: ``{"accept": true}`` or
``{"accept": false}`` (2xx).
"""

import json
import logging
import time
from dataclasses import dataclass, field

from flask import current_app

from ..phones import masked
from . import signing, urls
from .endpoints import for_account

log = logging.getLogger(__name__)

ACCEPT, REFUSE = "accept", "refuse"


@dataclass(frozen=True)
class Question:
    url: str
    secret: str = field(repr=False)  # never in a log line, even by accident
    body: bytes


def question(
    session, merchant_account_id: int, *, business_number: str, reference: str, amount: int, payer_phone: str
):
    """What to ask the merchant, or None when it has no validation URL (nothing to ask)."""
    endpoint = for_account(session, merchant_account_id)
    if endpoint is None or not endpoint.validation_url:
        return None
    body = json.dumps(
        {
            "type": "paybill.validation",
            "business_number": business_number,
            "account_reference": reference,
            "amount": int(amount),
            "currency": current_app.config["CURRENCY"],
            "payer": {"phone": masked(payer_phone)},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return Question(endpoint.validation_url, endpoint.secret, body)


def ask(asked: Question) -> str:
    """ACCEPT or REFUSE: the merchant's answer, else the configured default. Call it with no
    database transaction open. Never raises for what the network or the merchant does."""
    config = current_app.config
    default = config["PAYBILL_VALIDATION_DEFAULT"]
    timeout = float(config["PAYBILL_VALIDATION_TIMEOUT_SECONDS"])
    deadline = time.monotonic() + timeout  # the whole call: name, connect, headers and body
    try:
        target = urls.check(asked.url, production=config.get("TUMA_ENV") == "production", deadline=deadline)
        answer = urls.post(
            target,
            asked.body,
            {signing.HEADER: signing.signature(asked.secret, asked.body)},
            connect_timeout=timeout,
            read_timeout=timeout,
            deadline=deadline,
        )
    except (urls.UnsafeURL, urls.CallFailed) as exc:
        log.info("pay-bill validation: no answer (%s): %s", type(exc).__name__, default)
        return default
    if not 200 <= answer.status < 300:
        log.info("pay-bill validation: HTTP %d: %s", answer.status, default)
        return default
    try:
        decision = json.loads(answer.body).get("accept")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        decision = None  # (RecursionError: nested deeper than the decoder goes, a few KB of "[")
    if decision is True:
        return ACCEPT
    if decision is False:
        return REFUSE
    log.info("pay-bill validation: an answer without accept true or false: %s", default)
    return default
