"""Refunds (the merchant API): all or part of a payment a merchant received, back to its payer.

A refund is an ordinary transfer request of kind ``refund`` from the merchant's wallet to the
payer of the payment, whose ``reference`` is that payment's code. The rule, checked where it
holds, in the worker under the batch's row locks (the merchant's account is locked by
the ledger's ``lock_accounts`` before this runs, so two batches refunding one payment queue behind
each other, and the second reads the first's postings):

    posted refunds of the payment + this refund > the payment's amount  ->  refused
    (``refund_exceeds_payment``)

The API checks the same at the edge (counting refunds still queued too) so a merchant hears at
once; the worker's check is the one that cannot be raced.
"""

from sqlalchemy import func, select

from ..database import among
from ..limits import Refusal
from .models import RequestKind, RequestStatus, TransferRequest

# Payments a merchant may refund: what a customer paid it, posted.
REFUNDABLE_KINDS = (RequestKind.BUY_GOODS.value, RequestKind.PAY_BILL.value)
EXCEEDS = "refund_exceeds_payment"


def refundable(session, merchant_account_id: int, code: str) -> TransferRequest | None:
    """The posted payment with this code that the merchant received, or None."""
    payment = session.execute(
        select(TransferRequest).where(TransferRequest.code == code)
    ).scalar_one_or_none()
    if (
        payment is None
        or payment.kind not in REFUNDABLE_KINDS
        or payment.credit_account_id != merchant_account_id
        or payment.status != RequestStatus.ACCEPTED.value
    ):
        return None
    return payment


def refunded(session, codes, *, queued_too: bool = False) -> dict[str, int]:
    """{payment code: amount refunded so far} (posted; ``queued_too``: and still queued)."""
    codes = list(set(codes))
    if not codes:
        return {}
    statuses = [RequestStatus.ACCEPTED.value] + ([RequestStatus.QUEUED.value] if queued_too else [])
    rows = session.execute(
        select(TransferRequest.reference, func.coalesce(func.sum(TransferRequest.amount), 0))
        .where(
            TransferRequest.kind == RequestKind.REFUND.value,
            among(session, TransferRequest.reference, codes),
            TransferRequest.status.in_(statuses),
        )
        .group_by(TransferRequest.reference)
    )
    found = dict.fromkeys(codes, 0)
    found.update({code: int(total) for code, total in rows})
    return found


def check_batch(session, requests) -> dict[str, Refusal]:
    """{request id: Refusal} for the refunds of a batch that would refund more than their
    payment brought in (``limit``: what was left to refund; ``excess``: by how much). Call it
    under the batch's locks (``ledger.lock_accounts``); refunds are checked in batch order,
    each let through counting against the next."""
    refunds = [r for r in requests if r.kind == RequestKind.REFUND.value]
    if not refunds:
        return {}
    codes = {r.reference for r in refunds}
    query = select(TransferRequest).where(among(session, TransferRequest.code, codes))
    payments = {p.code: p.amount for p in session.execute(query).scalars()}
    done = refunded(session, payments)
    refused = {}
    for r in refunds:
        left = payments.get(r.reference, 0) - done.get(r.reference, 0)
        if r.amount > left:
            refused[r.id] = Refusal(EXCEEDS, max(0, left), r.amount - max(0, left))
        else:
            done[r.reference] = done.get(r.reference, 0) + r.amount
    return refused
