"""``POST /api/v1/refunds``: give back all or part of a payment the key owner received.

The refund is a transfer request of kind ``refund`` from the owner's wallet to the payer of the
payment, its reference the payment's code, free. Checked here so the merchant hears at once
(the payment must be a posted payment to this owner; the amount at most what is left of it,
counting refunds still queued); checked again by the worker under the row locks, where no race
can pass it (``payments/refunds.py``).
"""

from flask import current_app

from ..extensions import db
from ..payments import refunds
from ..payments.models import RequestKind
from ..payments.submit import ConflictingRequest, record_request
from . import bp
from .endpoint import operation
from .errors import ApiError
from .idempotency import derived_id
from .keys import Scope
from .payouts import check_currency
from .schemas import ErrorBody, Refund, RefundCreate
from .transactions import result_of, status_of


def view(request, refunded_code: str) -> Refund:
    return Refund(
        id=request.id,
        transaction=request.code,
        refunded_transaction=refunded_code,
        amount=request.amount,
        currency=current_app.config["CURRENCY"],
        status=status_of(request),
        result=result_of(request),
        created=request.created_at,
    )


@bp.post("/refunds")
@operation(
    scope=Scope.PAYOUT,
    json_model=RefundCreate,
    ok={"HTTP_202": Refund, "HTTP_404": ErrorBody},
    tags=("refunds",),
    operation_id="createRefund",
)
def create_refund(caller, body: RefundCreate, idempotency_key: str):
    """Refund a payment

    All (leave ``amount`` out) or part of a payment a customer made to the key owner (buy goods
    or pay bill, posted), back to that customer, free. Never more than the payment less its
    earlier refunds (422 ``refund_exceeds_payment``). Answers 202 ``queued``; the customer gets
    an SMS when it is posted."""
    check_currency(body.currency)
    payment = refunds.refundable(db.session, caller.account_id, body.transaction)
    if payment is None:
        raise ApiError("not_found", "No posted payment to you has that code.")
    request_id = derived_id(caller.key.id, idempotency_key)
    left = payment.amount - refunds.refunded(db.session, [payment.code], queued_too=True)[payment.code]
    amount = body.amount if body.amount is not None else left
    if amount <= 0 or amount > left:
        raise ApiError("refund_exceeds_payment", f"At most {left} (minor units) is left to refund.")
    try:
        recorded = record_request(
            db.session,
            request_id=request_id,
            kind=RequestKind.REFUND.value,
            debit_account_id=caller.account_id,
            credit_account_id=payment.debit_account_id,
            amount=amount,
            reference=payment.code,
        )
    except ConflictingRequest:  # the key's row was purged (24 h): the id still remembers its body
        raise ApiError("idempotency_key_reused") from None
    return view(recorded, payment.code), 202
