"""Writing events: one row per thing a merchant's system should hear of, in the transaction
that made it happen, and one delivery row per endpoint that wants it. No commit; the commit
rings the delivery job (``queues.Bell.EVENTS``).

Where events come from:

- ``for_requests``: transfer requests the worker just executed (``payments/execute.py``, the
  one place outcomes and receipts are written). Which kinds, which event per outcome and which
  side is the merchant: the ``events`` column of ``payments/kinds.py``.
- ``for_payment_request``: a merchant's payment request paid, declined or expired
  (``payments/payment_requests.py``, where each state move is a compare-and-set).

Idempotent: an event's id derives from its type and its source (a transfer request's id, a
payment request's id) and (type, source) is unique, so a job that runs twice cannot emit twice
(the repeat's insert fails and its whole transaction is retried, finding the work done).
"""

import base64
import hashlib
import json
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from ..database import among, insert_rows
from ..phones import masked
from ..queues import Bell, ring_after_commit
from .models import Delivery, DeliveryStatus, Event, EventType, WebhookEndpoint, utcnow

POSTED, FAILED = "posted", "failed"


def event_id(event_type: str, source_id: str) -> str:
    digest = hashlib.sha256(f"{event_type}:{source_id}".encode()).digest()
    return "evt_" + base64.b32encode(digest).decode()[:24].lower()


def party(user, phone: str | None = None) -> dict:
    """A counterparty as events name it: registered name and masked number."""
    if user is None:
        return {"name": None, "phone": masked(phone)}
    return {"name": user.name, "phone": masked(user.phone)}


def body(event_id_: str, event_type: str, created: datetime, data: dict) -> str:
    """The exact JSON every delivery of the event sends and signs."""
    created_unix = int(
        created.timestamp() if created.tzinfo else (created - datetime(1970, 1, 1)).total_seconds()
    )
    return json.dumps(
        {"id": event_id_, "type": event_type, "created": created_unix, "data": data},
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )


def write(session, events: list[tuple[str, int, str, dict]]) -> int:
    """Write ``events`` = [(type, merchant account id, source id, data)] and their deliveries,
    in the caller's transaction. How many were written."""
    if not events:
        return 0
    now = utcnow()
    rows = []
    for event_type, account_id, source_id, data in events:
        EventType(event_type)  # a type nobody documented is a bug
        eid = event_id(event_type, source_id)
        rows.append(
            {
                "id": eid,
                "type": event_type,
                "account_id": account_id,
                "source_id": source_id,
                "created_at": now,
                "payload": body(eid, event_type, now, data),
            }
        )
    insert_rows(session, Event.__table__, rows)
    accounts = {row["account_id"] for row in rows}
    endpoints = {
        e.account_id: e
        for e in session.execute(
            select(WebhookEndpoint).where(among(session, WebhookEndpoint.account_id, accounts))
        ).scalars()
    }
    give_up = now + _retry_window()
    deliveries = [
        {
            "event_id": row["id"],
            "endpoint_id": endpoints[row["account_id"]].id,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "give_up_at": give_up,
            "created_at": now,
        }
        for row in rows
        if row["account_id"] in endpoints and endpoints[row["account_id"]].wants(row["type"])
    ]
    if deliveries:
        insert_rows(session, Delivery.__table__, deliveries)
        ring_after_commit(session, Bell.EVENTS)
    return len(rows)


def _retry_window():
    from datetime import timedelta

    return timedelta(seconds=current_app.config["EVENT_RETRY_FOR_SECONDS"])


def _money(amount: int) -> dict:
    return {"amount": int(amount), "currency": current_app.config["CURRENCY"]}


def for_requests(session, executed: list[tuple[object, str]], people) -> int:
    """Events for transfer requests just executed: ``executed`` = [(request, POSTED|FAILED)];
    ``people`` the batch's holders (``sms.receipts.People``). Kinds without ``events`` in the
    kinds table, and outcomes without an event type, write nothing."""
    from ..payments import kinds

    events = []
    for request, outcome in executed:
        spec = kinds.spec(request.kind).events
        if spec is None:
            continue
        event_type = spec.posted if outcome == POSTED else spec.failed
        if event_type is None or (outcome == POSTED and request.amount <= 0):
            continue
        merchant_is_payee = spec.merchant == kinds.Side.PAYEE
        merchant_account = request.credit_account_id if merchant_is_payee else request.debit_account_id
        other_account = request.debit_account_id if merchant_is_payee else request.credit_account_id
        other = people.get(other_account)
        # A registered name only once money moved: a refused payout must not name whoever owns
        # a number the merchant typed (the API's transactions hide it too); nor a posted one
        # whose name look-up the merchant was not granted (``payee_named``, api/payouts.py).
        named = outcome == POSTED and (merchant_is_payee or request.payee_named)
        shown = party(other) if named else party(None, other.phone if other else None)
        data = {
            "transaction": request.code,
            **_money(request.amount),
            spec.reference_as: request.reference,
            ("payer" if merchant_is_payee else "recipient"): shown,
        }
        if outcome == FAILED:
            data["failure"] = request.result
        events.append((event_type, merchant_account, request.id, data))
    return write(session, events)


def for_payment_request(session, request, event_type: EventType) -> int:
    """The event of a merchant's payment request moving to paid, declined or expired (a
    customer's request for money, or split bill, is nobody's system's business)."""
    from ..payments.models import TransferRequest
    from ..payments.payment_requests import Kind
    from ..users import find_by_phone

    if request.kind != Kind.MERCHANT.value:
        return 0
    transfer = (
        session.get(TransferRequest, request.transfer_request_id) if request.transfer_request_id else None
    )
    data = {
        "payment_request": request.id,
        **_money(request.amount),
        "reference": getattr(request, "reference", None),  # the merchant's own (set through the API)
        "description": request.reason,
        # A registered name only once the customer paid: a declined or expired ask must not
        # name whoever owns a number the merchant typed (a look-up counted nowhere).
        "payer": party(find_by_phone(session, request.payer_phone), request.payer_phone)
        if event_type == EventType.PAYMENT_REQUEST_PAID
        else party(None, request.payer_phone),
        "transaction": transfer.code
        if transfer is not None and event_type == EventType.PAYMENT_REQUEST_PAID
        else None,
    }
    return write(session, [(event_type.value, request.requester_account_id, request.id, data)])
