"""Reversal of a wrong send: the sender asks (USSD My account, or SMS ``REVERSE <code>``) within
``REVERSAL_WINDOW_SECONDS`` of the send; the recipient's funds for it are held; the recipient
agrees in My approvals, or the operator decides, and the hold is posted back to the sender;
refusal, or the hold falling due (``REVERSAL_HOLD_SECONDS``), voids it.

The hold is an escrow hold like the others (``payments/holds.py``): a REVERSAL request whose
main leg is a PENDING transfer recipient -> sender, ``reference`` = the send's code, resolved
once by compare-and-set (REVERSAL_POST or REVERSAL_VOID; expiry by ``resolve_due``). At most
one reversal of a send is open at a time: the partial unique index below refuses a second one
(a refused one, whose hold the ledger never made, does not count). Nothing here commits.
"""

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import Index, select, text
from sqlalchemy.exc import IntegrityError

from ..clock import utcnow
from ..ledger import Account
from ..users import User, find_by_account
from . import holds
from .execute import execute_requests
from .models import HoldState, RequestKind, RequestStatus, TransferRequest
from .submit import record_request

OPEN = "kind = 'reversal' AND hold_state = 'pending' AND status <> 'rejected'"
Index(
    "uq_transfer_requests_open_reversal",
    TransferRequest.reference,
    unique=True,
    postgresql_where=text(OPEN),
    sqlite_where=text(OPEN),
)

# Why a reversal cannot start (each a screen and an SMS reply).
UNKNOWN = "unknown"  # no such code, or not a send of this person's
NOT_SEND = "not_send"  # theirs, but not money sent to a person
LATE = "late"  # older than the window
OPEN_ALREADY = "open"  # one is open
DECIDED = "decided"  # one was agreed, refused, decided or lapsed already
SHORT = "short"  # the recipient no longer has the funds


@dataclass
class Found:
    send: TransferRequest
    recipient: User | None


def _reversals_of(session, code: str) -> list[TransferRequest]:
    return list(
        session.execute(
            select(TransferRequest).where(
                TransferRequest.kind == RequestKind.REVERSAL.value, TransferRequest.reference == code
            )
        ).scalars()
    )


def check(session, sender: User, code: str) -> tuple[str, Found | None]:
    """Whether ``sender`` may reverse the transfer ``code`` now: ("ok", found) or (why, ...)."""
    send = session.execute(select(TransferRequest).where(TransferRequest.code == code)).scalar_one_or_none()
    if send is None or send.debit_account_id != sender.account_id:
        return UNKNOWN, None
    recipient = find_by_account(session, send.credit_account_id)
    found = Found(send, recipient)
    if (
        send.kind != RequestKind.SEND.value
        or send.status != RequestStatus.ACCEPTED.value
        or recipient is None
    ):
        return NOT_SEND, found
    window = timedelta(seconds=current_app.config["REVERSAL_WINDOW_SECONDS"])
    if send.executed_at is None or send.executed_at < utcnow() - window:
        return LATE, found
    for earlier in _reversals_of(session, code):
        if earlier.status == RequestStatus.REJECTED.value:
            continue
        return (OPEN_ALREADY if earlier.hold_state == HoldState.PENDING.value else DECIDED), found
    account = session.get(Account, send.credit_account_id, populate_existing=True)
    if account.available < send.amount:
        return SHORT, found
    return "ok", found


def start(session, sender: User, code: str, request_id: str) -> tuple[str, Found | None]:
    """Check, then record the hold under ``request_id`` (its commit announces it).
    A repeated request with the same id is "ok" again, nothing twice."""
    existing = session.get(TransferRequest, request_id)
    if existing is not None and existing.kind == RequestKind.REVERSAL.value and existing.reference == code:
        return "ok", Found(existing, None)
    outcome, found = check(session, sender, code)
    if outcome != "ok":
        return outcome, found
    try:
        with session.begin_nested():
            record_request(
                session,
                request_id=request_id,
                kind=RequestKind.REVERSAL.value,
                debit_account_id=found.send.credit_account_id,
                credit_account_id=found.send.debit_account_id,
                amount=found.send.amount,
                reference=code,
                hold_seconds=current_app.config["REVERSAL_HOLD_SECONDS"],
            )
    except IntegrityError:  # another session opened one first: the index said no
        return OPEN_ALREADY, found
    return "ok", found


def owned_hold(session, user: User, hold_id: str) -> TransferRequest | None:
    """The reversal hold ``hold_id`` if ``user`` is the one asked to return the money."""
    hold = session.get(TransferRequest, hold_id)
    if hold is None or hold.kind != RequestKind.REVERSAL.value or hold.debit_account_id != user.account_id:
        return None
    return hold


def decide(session, hold: TransferRequest, *, agree: bool) -> TransferRequest | None:
    """Record the resolution (post back to the sender, or void); None if already resolved."""
    return holds.resolve(session, hold, RequestKind.REVERSAL_POST if agree else RequestKind.REVERSAL_VOID)


class ReversalError(ValueError):
    pass


def operator_decides(session, hold_id: str, *, approve: bool) -> TransferRequest:
    """The operator's decision, executed at once (the operator waits for the answer)."""
    hold = session.get(TransferRequest, hold_id)
    if hold is None or hold.kind != RequestKind.REVERSAL.value:
        raise ReversalError("no such reversal")
    request = decide(session, hold, agree=approve)
    if request is None:
        raise ReversalError(f"the reversal of {hold.reference} is already decided ({hold.hold_state})")
    execute_requests(session, [request])
    if request.status != RequestStatus.ACCEPTED.value:
        raise ReversalError(f"the ledger refused the decision: {request.result}")
    return request
