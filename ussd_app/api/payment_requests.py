"""``POST /api/v1/payment-requests`` and ``GET /api/v1/payment-requests/{id}``: ask a customer
to pay (USSD has no push: an SMS and an entry in My approvals, as a merchant's request made
on USSD gets; ``payments/payment_requests.py`` does the rest, the same way for both).

The request's group id derives from (key, Idempotency-Key), so a retry finds the same request.
The customer must be registered (an API cannot invite strangers by SMS), and the owner may ask
one number at most ``REQUESTS_PER_PAYER_PER_DAY`` times a day, as on USSD.

The payer's registered name is a name look-up of the asking merchant (or agent), as each number
of a request made in the menus is (``fraud.py``), and as a payout's recipient is
(``payouts.names_granted``): the same rule, the same allowance (``NAME_LOOKUP_LIMIT_BUSINESS``,
keyed on the owner's normalised number, shared with its menus and its payouts), taken once when
the request is accepted, after every check that can refuse it, and recorded with the request
(``payment_requests.payer_named``). The API itself names nobody (the events name the payer only
once paid); the owner's USSD My requests and its "declined your request" SMS name the payer
only when it was granted (``payment_requests.payer_name_shown``). Beyond the allowance the
request is still made and shows the number. Without it a request of 1 minor unit, free and
never paid, named any customer's holder in My requests, counted nowhere. A replay takes nothing
more: the idempotency row answers before the view runs, and a group already recorded under the
derived id keeps its first answer.
"""

from datetime import timedelta

from flask import current_app

from ..extensions import db
from ..payments import payment_requests as pr
from ..payments.models import TransferRequest
from ..users import Role, find_by_phone
from . import bp
from .endpoint import operation
from .errors import ApiError
from .idempotency import derived_id
from .keys import Scope
from .payouts import check_currency, lock_asked, mobile, names_granted
from .schemas import ErrorBody, PaymentRequest, PaymentRequestCreate


def view(request: pr.PaymentRequest) -> PaymentRequest:
    code = None
    if request.state == pr.State.PAID.value and request.transfer_request_id:
        paid = db.session.get(TransferRequest, request.transfer_request_id)
        code = paid.code if paid is not None else None
    return PaymentRequest(
        id=request.id,
        phone=request.payer_phone,
        amount=request.amount,
        currency=current_app.config["CURRENCY"],
        reference=request.reference,
        description=request.reason,
        status=request.state,
        transaction=code,
        created=request.created_at,
        expires_at=request.expires_at,
    )


REUSED = "This Idempotency-Key already asked for another payment (keys are never reused, even after 24 h)."


def _same_request(first: pr.PaymentRequest, phone: str, body: PaymentRequestCreate) -> bool:
    """Whether ``body`` asks exactly what ``first`` (recorded under the same key) asked."""
    lifetime = body.expires_in if body.expires_in is not None else pr.lifetime(pr.Kind.MERCHANT)
    return (
        first.kind == pr.Kind.MERCHANT.value
        and (first.payer_phone, first.amount, first.reason, first.reference)
        == (phone, body.amount, body.description, body.reference)
        and first.expires_at == first.created_at + timedelta(seconds=lifetime)
    )


@bp.post("/payment-requests")
@operation(
    scope=Scope.COLLECT,
    json_model=PaymentRequestCreate,
    ok={"HTTP_201": PaymentRequest},
    tags=("payment requests",),
    operation_id="createPaymentRequest",
)
def create_payment_request(caller, body: PaymentRequestCreate, idempotency_key: str):
    """Ask a customer to pay

    The customer gets an SMS and finds the request in My approvals on USSD, where they pay it
    with their PIN (or decline). Read its status with ``GET /payment-requests/{id}``.

    Showing you the customer's registered name before they pay (in My requests on USSD, in the
    SMS saying they declined) is a name look-up of the key's owner, counted when the request is
    accepted against the owner's hourly allowance (the one its look-ups in the USSD menus and
    its payouts use). Beyond it the request is made all the same, but shows only the customer's
    number until they pay. A refused request counts nothing; a replay (the same
    Idempotency-Key) counts nothing more."""
    check_currency(body.currency)
    phone = mobile(body.phone)
    payer = find_by_phone(db.session, phone)
    if payer is None or payer.role != Role.CUSTOMER.value:
        raise ApiError("payer_not_found")
    owner = caller.owner
    if payer.account_id == owner.account_id:
        raise ApiError("own_number")
    group_id = derived_id(caller.key.id, idempotency_key)
    # Recorded before (its idempotency row since purged): the same body gets its first answer,
    # nothing counted or changed; another body is a reused key, as for a payout or a refund.
    earlier = pr.group(db.session, group_id)
    if earlier:
        if not _same_request(earlier[0], phone, body):
            raise ApiError("idempotency_key_reused", REUSED)
        return view(earlier[0]), 201
    lock_asked(payer)
    if not pr.may_ask(db.session, owner, phone):
        raise ApiError("too_many_requests_to_payer")
    named = names_granted(caller, 1) == 1
    made = pr.create(
        db.session,
        owner,
        group_id,
        pr.Kind.MERCHANT,
        [(phone, body.amount)],
        body.description,
        payer_named=named,
    )
    request = made[0]
    request.reference = body.reference
    if body.expires_in is not None:
        request.expires_at = request.created_at + timedelta(seconds=body.expires_in)
    db.session.flush()
    return view(request), 201


@bp.get("/payment-requests/<request_id>")
@operation(
    scope=Scope.READ,
    ok={"HTTP_200": PaymentRequest, "HTTP_404": ErrorBody},
    tags=("payment requests",),
    operation_id="getPaymentRequest",
)
def get_payment_request(caller, _data, request_id: str):
    """A payment request and its status

    ``open`` (waiting), ``paying`` (approved, being posted), ``paid`` (with its transaction),
    ``declined``, ``expired`` or ``cancelled``. Another owner's request answers 404."""
    request = pr.owned(db.session, caller.owner, request_id[:40])
    if request is None:
        raise ApiError("not_found")
    return view(request), 200
