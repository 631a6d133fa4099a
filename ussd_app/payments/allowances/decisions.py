"""The operator's decision on an allowance whose settlement is refused (the merchant locked by
Tuma, ``payee_locked``): the hold holds the customer's WHOLE period limit, not just what is
owed, and nothing else can free it (a cancel leaves it held while charges are owed on it; the
ledger frees part of a hold only by posting the rest to the merchant). The operator either
leaves it to be tried again (the default: ``settlement._settle_again``), or voids it:

- the whole hold goes back to the customer (one ``allowance_void`` of it, executed at once);
- the owed charges are forgiven: the tab is cleared, and the void is recorded as the
  allowance's settlement with ``why`` = ``forgiven`` (nothing paid: amount 0, the charges it
  closed), the amount in the audit row and the merchant's event;
- the allowance ends (``cancelled``; one already ``cancelled`` or ``expired`` stays so);
- the merchant hears ``allowance.voided``, the customer gets ONE SMS in their language;
- an ``audit_log`` row names the operator and their reason.

All in the caller's one transaction (the void's ledger posting, the outbox rows, the audit
row): the caller commits. Safe twice: a second void finds the first (``already``) and does
nothing. Never racing a retry: both take the tab off the allowance by the same compare-and-set
(``tab_amount`` as read) before claiming the hold (``holds.resolve``): one wins, the other finds
the tab gone and does nothing (the void says why)."""

from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from ...clock import utcnow
from ...users import find_by_phone
from .. import holds
from ..execute import execute_requests
from ..models import HoldState, RequestKind, RequestStatus, TransferRequest
from .records import (
    FINAL,
    Allowance,
    AllowanceError,
    AllowanceSettlement,
    State,
    fresh,
    merchant_of,
    move,
    tell_customer,
    tell_merchant,
)
from .settlement import record_settlement

# An AllowanceSettlement's ``why`` for an operator's void: the tab it closed was forgiven.
FORGIVEN = "forgiven"
REASON_LIMIT = 200


class DecisionError(AllowanceError):
    """The decision cannot be made as asked; the message says why (for the operator)."""


@dataclass(frozen=True)
class Voided:
    allowance_id: str
    state: str  # the allowance's state after it
    code: str  # the void's transaction code
    released: int  # the whole hold, back to the customer (minor units)
    forgiven: int  # the charges owed, not taken
    charges: int
    already: bool  # voided before: nothing done now


def _refused_attempt(session, allowance: Allowance) -> tuple[TransferRequest, TransferRequest] | None:
    """(hold, its last refused settlement) when the allowance's settlement is refused and
    waiting to be tried again: the hold pending, its latest attempt a refused post."""
    if allowance.hold_request_id is None:
        return None
    hold = session.get(TransferRequest, allowance.hold_request_id)
    if hold is None or hold.status != RequestStatus.ACCEPTED.value:
        return None
    session.refresh(hold)
    if hold.hold_state != HoldState.PENDING.value:
        return None
    last = holds.resolution(session, hold)
    if (
        last is None
        or last.status != RequestStatus.REJECTED.value
        or last.kind != RequestKind.ALLOWANCE_POST.value
        or allowance.tab_amount <= 0
    ):
        return None
    return hold, last


def _voided_before(session, allowance: Allowance) -> Voided | None:
    if allowance.hold_request_id is None:
        return None
    hold = session.get(TransferRequest, allowance.hold_request_id)
    last = holds.resolution(session, hold) if hold is not None else None
    if last is None or last.kind != RequestKind.ALLOWANCE_VOID.value:
        return None
    record = session.get(AllowanceSettlement, last.id)
    if record is None or record.why != FORGIVEN:
        return None
    return Voided(allowance.id, allowance.state, last.code, last.amount, 0, record.charges, already=True)


def void_refused(
    session,
    allowance_id: str,
    *,
    operator: str,
    reason: str,
    operator_id: int | None = None,
    via: str = "cli",
    now: datetime | None = None,
) -> Voided:
    """Void the hold of ``allowance_id``'s refused settlement (see the module's docstring).
    DecisionError when there is none to void; ``Voided.already`` when it was voided before.
    Nothing here commits: on DecisionError the caller rolls back."""
    from ...admin.models import record
    from ...messages import allowances as texts

    operator, reason = (operator or "").strip(), (reason or "").strip()
    if not operator:
        raise DecisionError("say who decides (the operator's name)")
    if not reason:
        raise DecisionError("say why (the reason is kept in the audit log)")
    if len(reason) > REASON_LIMIT:
        raise DecisionError(f"the reason: at most {REASON_LIMIT} characters")
    now = now or utcnow()
    allowance = session.get(Allowance, (allowance_id or "").strip())
    if allowance is None:
        raise DecisionError(f"no allowance {allowance_id}")
    for _ in range(3):
        allowance = fresh(session, allowance.id)
        found = _refused_attempt(session, allowance)
        if found is None:
            before = _voided_before(session, allowance)
            if before is not None:
                return before
            raise DecisionError(
                f"allowance {allowance.id} ({allowance.state}) has no refused settlement to void: "
                "nothing owed on a held settlement, or an attempt is being posted now"
            )
        hold, last = found
        tab, count = allowance.tab_amount, allowance.tab_count
        values: dict = {"tab_amount": 0, "tab_count": 0, "settle_again_at": None}
        if allowance.state not in FINAL:
            values.update(state=State.CANCELLED.value, decided_at=now)
        # The retry's own claim: the tab as read leaves the allowance, or someone moved it first.
        if move(
            session,
            allowance.id,
            allowance.state,
            Allowance.hold_request_id == hold.id,
            Allowance.tab_amount == tab,
            Allowance.tab_count == count,
            **values,
        ):
            break
    else:
        raise DecisionError(f"allowance {allowance_id} kept changing; look again (flask review list)")
    request = holds.resolve(session, hold, RequestKind.ALLOWANCE_VOID)
    if request is None:  # the hold claimed meanwhile (a retry posting it): nothing done here
        raise DecisionError(f"allowance {allowance.id}: a settlement of its hold is being posted now")
    execute_requests(session, [request])
    if request.status != RequestStatus.ACCEPTED.value:
        raise DecisionError(f"the ledger refused the void: {request.result}")
    # Nothing paid (amount 0): the tab forgiven, its amount in the audit row and the event; told
    # here, not by after_batch.
    record_settlement(
        session, request, allowance.id, allowance.period_no, count, 0, FORGIVEN, now, told_at=now
    )
    allowance = fresh(session, allowance.id)
    tell_merchant(
        session,
        allowance,
        "allowance.voided",
        forgiven=tab,
        charges=count,
        currency=current_app.config["CURRENCY"],
        failure=last.result,
    )
    customer = find_by_phone(session, allowance.customer_phone)
    if customer is not None:
        body = texts.voided(customer, merchant_of(session, allowance), held=hold.amount, forgiven=tab)
        tell_customer(session, customer.phone, body, request.id)
    record(
        session,
        operator_id,
        "allowance.void",
        allowance.id,
        by=operator,
        reason=reason,
        via=via,
        hold=hold.code,
        void=request.code,
        released=hold.amount,
        forgiven=tab,
        charges=count,
        refused=last.result,
        attempts=holds.attempt_of(hold.id, last.id),
    )
    return Voided(allowance.id, allowance.state, request.code, hold.amount, tab, count, already=False)
