"""How each kind of request becomes ledger transfers: one linked chain per request
(payment, then the fee when there is one, then an agent's commission when there is one, then
the merchant's fee when there is one).

Leg ids are derived from the request id, so executing a request twice asks the ledger for
the same transfers and gets EXISTS back: a retried job can never post twice.
"""

from ..ledger import AccountKind, TransferFlags, TransferSpec, house_account
from .models import RequestKind, TransferRequest


def leg_id(request_id: str, leg: str) -> str:
    return request_id if leg == "main" else f"{request_id}.{leg}"


class HouseAccounts:
    """House account ids, looked up once per batch."""

    def __init__(self, session):
        self._session = session
        self._ids: dict[AccountKind, int] = {}

    def __getitem__(self, kind: AccountKind) -> int:
        if kind not in self._ids:
            self._ids[kind] = house_account(self._session, kind).id
        return self._ids[kind]


# Holds: the main leg is a PENDING transfer (no ledger timeout: payments/holds.py decides when
# each falls due, because a protected purchase must be posted, not voided, when it does).
HOLD_KINDS = frozenset(
    {RequestKind.SEND_UNREGISTERED, RequestKind.PROTECTED_PURCHASE, RequestKind.REVERSAL, RequestKind.AIRTIME}
)
POSTING_KINDS = frozenset(
    {
        RequestKind.SUSPENSE_RELEASE,
        RequestKind.PROTECTED_RELEASE,
        RequestKind.REVERSAL_POST,
        RequestKind.AIRTIME_POST,
    }
)
VOIDING_KINDS = frozenset(
    {
        RequestKind.SUSPENSE_REFUND,
        RequestKind.PROTECTED_REFUND,
        RequestKind.REVERSAL_VOID,
        RequestKind.AIRTIME_VOID,
    }
)


def legs_for(request: TransferRequest, house: HouseAccounts) -> list[TransferSpec]:
    kind = RequestKind(request.kind)
    if kind in POSTING_KINDS or kind in VOIDING_KINDS:
        return _resolution_legs(request, kind, house)
    main = TransferSpec(
        id=leg_id(request.id, "main"),
        debit_account_id=request.debit_account_id,
        credit_account_id=request.credit_account_id,
        amount=request.amount,
        code=kind.value,
        flags=TransferFlags.PENDING if kind in HOLD_KINDS else TransferFlags.NONE,
        user_data=request.id,
    )
    legs = [main]
    if request.fee:
        legs.append(
            TransferSpec(
                id=leg_id(request.id, "fee"),
                debit_account_id=request.debit_account_id,
                credit_account_id=house[AccountKind.FEES],
                amount=request.fee,
                code="fee",
                user_data=request.id,
            )
        )
    if request.commission:
        # The agent's share of a withdrawal's fee: owed to the agent from fee revenue, in the
        # same chain, so there is never a commission without the fee that pays it.
        legs.append(
            TransferSpec(
                id=leg_id(request.id, "commission"),
                debit_account_id=house[AccountKind.FEES],
                credit_account_id=house[AccountKind.COMMISSIONS],
                amount=request.commission,
                code="commission",
                user_data=request.id,
            )
        )
    if request.payee_fee and kind not in HOLD_KINDS:
        legs.append(_payee_fee_leg(request, house))
    return [_linked(leg) for leg in legs[:-1]] + legs[-1:]


def _payee_fee_leg(request: TransferRequest, house: HouseAccounts) -> TransferSpec:
    """The merchant's fee, out of the payment it was just credited in the same chain (so the
    fee can never fail for want of funds, and is never charged without the payment). A held
    payment (protected purchase) charges it when the hold is posted to the merchant."""
    return TransferSpec(
        id=leg_id(request.id, "payee_fee"),
        debit_account_id=request.credit_account_id,
        credit_account_id=house[AccountKind.FEES],
        amount=request.payee_fee,
        code="payee_fee",
        user_data=request.id,
    )


def _resolution_legs(request: TransferRequest, kind: RequestKind, house: HouseAccounts) -> list[TransferSpec]:
    """Post or void the hold named by ``pending_request_id`` (its main leg has the hold
    request's id); a suspense release then pays the held money on to the new customer."""
    # A posting kind with nothing to post voids the hold instead: none of it fitted under the
    # payee's balance limit, so it all goes back to the payer (limits.POSTS_WHAT_FITS).
    post = kind in POSTING_KINDS and request.amount > 0
    resolve = TransferSpec(
        id=leg_id(request.id, "main"),
        debit_account_id=None,
        credit_account_id=None,
        amount=request.amount if post else 0,
        code=kind.value,
        pending_id=request.pending_request_id,
        flags=TransferFlags.POST_PENDING_TRANSFER if post else TransferFlags.VOID_PENDING_TRANSFER,
        user_data=request.id,
    )
    if kind == RequestKind.PROTECTED_RELEASE and request.payee_fee and post:
        return [_linked(resolve), _payee_fee_leg(request, house)]
    if kind != RequestKind.SUSPENSE_RELEASE or not post:
        return [resolve]
    pay_on = TransferSpec(
        id=leg_id(request.id, "pay"),
        debit_account_id=house[AccountKind.SUSPENSE],
        credit_account_id=request.credit_account_id,
        amount=request.amount,
        code=kind.value,
        user_data=request.id,
    )
    return [_linked(resolve), pay_on]


def _linked(spec: TransferSpec) -> TransferSpec:
    return TransferSpec(**{**spec.__dict__, "flags": spec.flags | TransferFlags.LINKED})
