"""How each kind of request becomes ledger transfers: one linked chain per request
(payment, then the fee when there is one, then an agent's commission when there is one, then
the merchant's fee when there is one). Which kinds hold, post or void: payments/kinds.py.

Leg ids are derived from the request id, so executing a request twice asks the ledger for
the same transfers and gets EXISTS back: a retried job can never post twice.
"""

from ..ledger import AccountKind, TransferFlags, TransferSpec, house_account
from .kinds import Phase, spec
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


def legs_for(request: TransferRequest, house: HouseAccounts) -> list[TransferSpec]:
    kind = RequestKind(request.kind)
    row = spec(kind)
    if row.resolves is not None:
        return _resolution_legs(request, kind, house)
    main = TransferSpec(
        id=leg_id(request.id, "main"),
        debit_account_id=request.debit_account_id,
        credit_account_id=request.credit_account_id,
        amount=request.amount,
        code=kind.value,
        # A hold (payments/kinds.py) has no ledger timeout: payments/holds.py decides when each
        # falls due, because a protected purchase must be posted, not voided, when it does.
        flags=TransferFlags.PENDING if row.phase == Phase.PENDING else TransferFlags.NONE,
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
    if request.payee_fee and row.phase != Phase.PENDING:
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
    request's id); a post that ``pays_on`` (a suspense post) then pays the held money on
    to the new customer."""
    # A posting kind with nothing to post voids the hold instead: none of it fitted under the
    # payee's balance limit, so it all goes back to the payer (kinds.POSTS_WHAT_FITS).
    row = spec(kind)
    post = row.phase == Phase.POST and request.amount > 0
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
    if row.payee_fee_on_post and request.payee_fee and post:
        return [_linked(resolve), _payee_fee_leg(request, house)]
    if not row.pays_on or not post:
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
