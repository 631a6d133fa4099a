"""Airtime: the customer's money is held (an AIRTIME request: a PENDING transfer customer ->
airtime clearing, ``reference`` = the number topped up), then a worker job asks Africa's
Talking to send it (``africas_talking.send_airtime``, through the SDK) and posts the hold when it
was sent, or voids it (the money comes back, with an SMS) when it was refused.

Exactly once: the job claims a hold by compare-and-set (``pending`` -> ``sending``) and commits
before the HTTP call, which never happens inside a transaction; it then resolves it from
``sending`` by compare-and-set. A job that died after its claim leaves the hold ``sending``;
``AIRTIME_RETRY_SECONDS`` after the hold was made, a later job asks again with the same
idempotency key (the hold's id), so Africa's Talking sends nothing twice. A network error or
an HTTP error leaves it for that retry. Nothing here commits but ``buy_waiting``.
"""

import logging

from flask import current_app
from sqlalchemy import BigInteger, cast, select

from .. import country, phones
from ..database import db_clock_us
from ..ledger import AccountKind, Transfer, house_account
from ..money import major_text, to_minor
from . import holds
from .execute import execute_requests
from .models import HoldState, RequestKind, RequestStatus, TransferRequest
from .submit import record_request

log = logging.getLogger(__name__)

# Kenya's bounds on one purchase (KES 10 to KES 10,000); ``bounds`` gives the app's country's.
AIRTIME_MIN, AIRTIME_MAX = 10_00, 10_000_00


def bounds() -> tuple[int, int]:
    """The least and the most one airtime purchase may be, minor units, in the country's scale
    (``country.Profile.airtime_min``/``airtime_max``: GHS 1 to 1,000, TZS 200 to 200,000)."""
    here = country.profile()
    return to_minor(here.airtime_min), to_minor(here.airtime_max)


SENT = {"Sent", "Success"}


def record(session, *, request_id: str, account_id: int, phone: str, amount: int) -> TransferRequest:
    """Record the hold (its commit announces it to the workers); repeated ids are no-ops.
    Only a mobile of our own country gets airtime (NotLocalMobile otherwise)."""
    phone = phones.normalize_mobile(phone)
    request = record_request(
        session,
        request_id=request_id,
        kind=RequestKind.AIRTIME.value,
        debit_account_id=account_id,
        credit_account_id=house_account(session, AccountKind.AIRTIME_CLEARING).id,
        amount=amount,
        reference=phone,
    )
    # Held with no due time: only the job's answer resolves it (payments/holds.py's
    # resolve_due never sees it: its hold_seconds is NULL).
    if request.hold_state is None and request.status == RequestStatus.QUEUED.value:  # new, not a repeat
        request.hold_state = HoldState.PENDING.value
        session.flush()
    return request


def _held():
    """Airtime holds accepted and still pending: waiting for Africa's Talking."""
    return select(TransferRequest.id).where(
        TransferRequest.kind == RequestKind.AIRTIME.value,
        TransferRequest.status == RequestStatus.ACCEPTED.value,
        TransferRequest.hold_state == HoldState.PENDING.value,
    )


def _sent(answer) -> bool:
    responses = answer.get("responses") if isinstance(answer, dict) else None
    return bool(responses) and all(r.get("status") in SENT for r in responses)


def buy_waiting(session, send, limit: int = 50) -> dict:
    """Claim the airtime holds waiting (and retry stale claims), ask Africa's Talking for each
    through ``send(phone, amount_major, key)`` and resolve them; commits as it goes."""
    now = db_clock_us(session)
    retry_us = current_app.config["AIRTIME_RETRY_SECONDS"] * 1_000_000
    fresh = list(session.execute(_held().order_by(TransferRequest.created_at).limit(limit)).scalars())
    claimed = [i for i in fresh if holds._claim(session, i, HoldState.PENDING, HoldState.SENDING)]
    stale = list(
        session.execute(
            select(TransferRequest.id)
            .join(Transfer, Transfer.id == TransferRequest.id)
            .where(
                TransferRequest.kind == RequestKind.AIRTIME.value,
                TransferRequest.hold_state == HoldState.SENDING.value,
                Transfer.created_at + cast(retry_us, BigInteger) <= now,
            )
            .limit(limit)
        ).scalars()
    )
    session.commit()  # the claims, before any call
    counts = {"sent": 0, "failed": 0, "retry": 0}
    for hold_id in dict.fromkeys(claimed + stale):
        hold = session.get(TransferRequest, hold_id)
        phone, amount = hold.reference, hold.amount
        session.commit()  # no transaction open during the call
        try:
            answer = send(phone, major_text(amount), hold_id)
        except Exception as exc:  # network, timeout, HTTP error: ask again later, same key
            log.warning("airtime for %s not answered (%s); retried later", hold_id, type(exc).__name__)
            counts["retry"] += 1
            continue
        ok = _sent(answer)
        hold = session.get(TransferRequest, hold_id)
        kind = RequestKind.AIRTIME_POST if ok else RequestKind.AIRTIME_VOID
        request = holds.resolve(session, hold, kind, from_state=HoldState.SENDING)
        if request is not None:
            execute_requests(session, [request])
            counts["sent" if ok else "failed"] += 1
        session.commit()
    return counts
