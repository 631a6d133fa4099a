"""``/api/v1/allowances``: ask a customer for an allowance, charge it, settle it, read it
(``payments/allowances/`` does the rest; the customer approves in My approvals with the PIN).

- ``POST /allowances``: the customer gets an SMS and finds it in My approvals; its id derives
  from (key, Idempotency-Key), so a retry finds the same allowance. The customer must be
  registered, as for payment requests, and one number may be asked at most
  ``REQUESTS_PER_PAYER_PER_DAY`` times a day by one merchant.
- ``POST /allowances/{id}/charges`` and ``/charges/batch``: each charge is a tab line, durable
  (committed) before the answer; no ledger posting, no SMS. A charge's id derives from (key,
  Idempotency-Key) (a batch row's from that and its row number), so a retry is the same charge.
- ``POST /allowances/{id}/settle``: the tab settles now as one posting (the worker posts it);
  the period goes on with what is left of it.
- ``GET /allowances/{id}``: terms, status, what is charged and left this period.

Only the merchant whose key asked may see or charge an allowance: anyone else's id is 404,
exactly as an id that does not exist (no oracle).
"""

from flask import current_app, request

from ..extensions import db
from ..payments import allowances as al
from ..payments.models import TransferRequest
from ..users import Role, find_by_phone
from . import bp
from .endpoint import json_body, operation, validated, validated_batch
from .errors import CODES, ApiError
from .idempotency import derived_id
from .keys import Scope
from .payouts import check_currency, lock_asked, mobile
from .schemas import (
    Allowance,
    AllowanceCharge,
    AllowanceChargeBatch,
    AllowanceChargeBatchCreate,
    AllowanceChargeCreate,
    AllowanceChargeRow,
    AllowanceCreate,
    AllowanceSettle,
    AllowanceSettleCreate,
    AllowanceSettlementView,
    Error,
    ErrorBody,
)
from .transactions import status_of

REUSED = (
    "This Idempotency-Key already made another allowance or charge (keys are never reused, even after 24 h)."
)


def _settlement(settlement: al.AllowanceSettlement | None) -> AllowanceSettlementView | None:
    if settlement is None:
        return None
    posted = db.session.get(TransferRequest, settlement.id)
    return AllowanceSettlementView(
        transaction=posted.code,
        amount=settlement.amount,
        charges=settlement.charges,
        status=status_of(posted),
        created=settlement.created_at,
    )


def view(allowance: al.Allowance) -> Allowance:
    return Allowance(
        id=allowance.id,
        status=allowance.state,
        phone=allowance.customer_phone,
        limit=allowance.limit_amount,
        max_charge=allowance.max_charge,
        period=allowance.period,
        currency=current_app.config["CURRENCY"],
        description=allowance.description,
        reference=allowance.reference,
        charged=allowance.charged,
        left=al.left(allowance),
        charges=allowance.charge_count,
        tab=allowance.tab_amount,
        period_starts=allowance.period_starts_at,
        period_ends=allowance.period_ends_at,
        ends_at=allowance.ends_at,
        last_settlement=_settlement(al.last_settlement(db.session, allowance.id)),
        created=allowance.created_at,
    )


def owned(caller, allowance_id: str) -> al.Allowance:
    allowance = al.owned(db.session, caller.account_id, allowance_id)
    if allowance is None:
        raise ApiError("not_found")
    return allowance


@bp.post("/allowances")
@operation(
    scope=Scope.COLLECT,
    json_model=AllowanceCreate,
    ok={"HTTP_201": Allowance},
    tags=("allowances",),
    operation_id="createAllowance",
)
def create_allowance(caller, body: AllowanceCreate, idempotency_key: str):
    """Ask a customer for an allowance

    The customer gets an SMS and approves (with the PIN) or declines in My approvals on USSD.
    Approving holds the period's limit; from then on (status ``active``, event
    ``allowance.approved``) you may charge up to ``max_charge`` a charge and ``limit`` a period,
    with no SMS and no PIN per charge. Each period's charges settle as one payment to you.
    With ``ends_at``, the customer sees the end before approving; at that moment the tab
    settles and the allowance expires (event ``allowance.expired``, one SMS to the customer)."""
    check_currency(body.currency)
    phone = mobile(body.phone)
    customer = find_by_phone(db.session, phone)
    if customer is None or customer.role != Role.CUSTOMER.value:
        raise ApiError("customer_not_found")
    owner = caller.owner
    if customer.account_id == owner.account_id:
        raise ApiError("own_number")
    allowance_id = "al_" + derived_id(caller.key.id, idempotency_key)[:29]
    lock_asked(customer)  # asks sent side by side count one after the other
    # Recorded under this key before (its idempotency row since purged): ``ask`` hands it back
    # for the same request, counting nothing against the day; other terms are a reused key.
    if (
        db.session.get(al.Allowance, allowance_id) is None
        and al.asked_today(db.session, owner.account_id, phone)
        >= current_app.config["REQUESTS_PER_PAYER_PER_DAY"]
    ):
        raise ApiError("too_many_allowance_requests")
    try:
        allowance = al.ask(
            db.session,
            owner,
            phone,
            limit=body.limit,
            max_charge=body.max_charge,
            period=body.period,
            description=body.description,
            reference=body.reference,
            allowance_id=allowance_id,
            ends_at=body.ends_at,
        )
    except al.ConflictingAllowance:  # this key's allowance, asked on other terms
        raise ApiError("idempotency_key_reused", REUSED) from None
    return view(allowance), 201


@bp.get("/allowances/<allowance_id>")
@operation(
    scope=Scope.READ,
    ok={"HTTP_200": Allowance, "HTTP_404": ErrorBody},
    tags=("allowances",),
    operation_id="getAllowance",
)
def get_allowance(caller, _data, allowance_id: str):
    """An allowance: its terms, status and this period's charges

    ``awaiting_approval``, ``approving`` (approved; its hold is being made), ``active`` (taking
    charges), ``settling`` (a settlement is being posted; charges resume with the next hold),
    ``paused`` (the customer's money was not there for a period's hold), ``declined``,
    ``cancelled`` or ``expired``. Another merchant's allowance answers 404."""
    return view(owned(caller, allowance_id)), 200


def _refusal(code: str) -> ApiError:
    if code == al.Refusal.NOT_FOUND:
        return ApiError("not_found")
    if code == al.Refusal.ID_REUSED:
        return ApiError("idempotency_key_reused", REUSED)
    return ApiError(code)


@bp.post("/allowances/<allowance_id>/charges")
@operation(
    scope=Scope.COLLECT,
    json_model=AllowanceChargeCreate,
    ok={"HTTP_201": AllowanceCharge, "HTTP_404": ErrorBody},
    tags=("allowances",),
    operation_id="chargeAllowance",
)
def charge_allowance(caller, body: AllowanceChargeCreate, idempotency_key: str, allowance_id: str):
    """Charge an allowance

    A tab line, recorded before this answer: no ledger posting, no SMS. Refused with 409
    ``allowance_not_active`` (not active now: retry after ``approving``/``settling``),
    409 ``exceeds_allowance_left`` (the period's limit is used up) or 422 ``exceeds_max_charge``.
    The same Idempotency-Key is the same charge."""
    outcome = al.charge(
        db.session,
        allowance_id,
        caller.account_id,
        body.amount,
        body.reference,
        charge_id=derived_id(caller.key.id, idempotency_key),
    )
    if not outcome.ok:
        raise _refusal(outcome.code)
    return AllowanceCharge(
        id=outcome.charge_id,
        allowance=allowance_id,
        amount=outcome.amount,
        reference=outcome.reference,
        currency=current_app.config["CURRENCY"],
        left=outcome.left,
        charged=outcome.charged,
        charges=outcome.charge_count,
        created=outcome.created_at,
    ), 201


def read_charges() -> tuple[AllowanceChargeBatchCreate, object]:
    """The batch, well-formed as a whole (else 422 naming the first bad row)."""
    data = json_body()
    return validated_batch(AllowanceChargeBatchCreate, data, "charges"), data


@bp.post("/allowances/<allowance_id>/charges/batch")
@operation(
    scope=Scope.COLLECT,
    reader=read_charges,
    body_doc=AllowanceChargeBatchCreate,
    ok={"HTTP_201": AllowanceChargeBatch, "HTTP_404": ErrorBody},
    tags=("allowances",),
    operation_id="chargeAllowanceBatch",
)
def charge_allowance_batch(
    caller, batch: AllowanceChargeBatchCreate, idempotency_key: str, allowance_id: str
):
    """Charge an allowance many times

    Up to 1,000 charges, taken in order in one transaction: every one answered is recorded
    before this answer. Each row is ``accepted`` (with its id) or ``rejected`` with the error a
    single charge would get (``exceeds_allowance_left`` once the period's limit is used up,
    ``exceeds_max_charge``, ``allowance_not_active``)."""
    base = derived_id(caller.key.id, idempotency_key)
    wanted = [(row.amount, row.reference, f"{base}.{n}") for n, row in enumerate(batch.charges, 1)]
    outcomes = al.charge_many(db.session, allowance_id, caller.account_id, wanted)
    if outcomes and outcomes[0].code == al.Refusal.NOT_FOUND:
        raise ApiError("not_found")
    if any(o.code == al.Refusal.ID_REUSED for o in outcomes):
        raise ApiError("idempotency_key_reused", REUSED)
    results = []
    for n, outcome in enumerate(outcomes, 1):
        if outcome.ok:
            results.append(
                AllowanceChargeRow(row=n, status="accepted", id=outcome.charge_id, amount=outcome.amount)
            )
        else:
            error = Error(code=outcome.code, message=CODES[outcome.code][1])
            results.append(AllowanceChargeRow(row=n, status="rejected", amount=outcome.amount, error=error))
    accepted = sum(1 for o in outcomes if o.ok)
    last = outcomes[-1]  # each row's figures are the period's after the rows before it
    return AllowanceChargeBatch(
        count=len(outcomes),
        accepted=accepted,
        rejected=len(outcomes) - accepted,
        left=last.left,
        charged=last.charged,
        results=results,
    ), 201


def read_settle() -> tuple[AllowanceSettleCreate, object]:
    """No body, or ``{}``."""
    if not request.get_data(cache=True):
        return AllowanceSettleCreate(), b""
    data = json_body()
    return validated(AllowanceSettleCreate, data), data


@bp.post("/allowances/<allowance_id>/settle")
@operation(
    scope=Scope.COLLECT,
    reader=read_settle,
    body_doc=AllowanceSettleCreate,
    ok={"HTTP_202": AllowanceSettle, "HTTP_404": ErrorBody},
    tags=("allowances",),
    operation_id="settleAllowance",
)
def settle_allowance(caller, _body, idempotency_key: str, allowance_id: str):
    """Settle an allowance's tab now

    The charges since the last settlement are paid to you as one payment (less the tariff's
    fee), posted by the worker within a second or so; the customer gets one SMS and you the
    ``allowance.settled`` event. The period goes on: the next hold is what is left of it.
    Nothing charged since the last settlement: nothing to do (``settlement`` is null). An
    allowance not active (approving, settling, paused, ended) answers 409
    ``allowance_not_active``."""
    allowance = owned(caller, allowance_id)
    if allowance.state != al.State.ACTIVE.value:
        raise ApiError("allowance_not_active")
    recorded = al.settle(db.session, allowance.id, why=al.Why.MERCHANT)
    settlement = db.session.get(al.AllowanceSettlement, recorded.id) if recorded is not None else None
    db.session.refresh(allowance)
    return AllowanceSettle(allowance=view(allowance), settlement=_settlement(settlement)), 202
