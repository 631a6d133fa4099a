"""How each kind of request becomes ledger transfers: one linked chain per request.

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


def legs_for(request: TransferRequest, house: HouseAccounts) -> list[TransferSpec]:
    kind = RequestKind(request.kind)
    main = TransferSpec(
        id=leg_id(request.id, "main"),
        debit_account_id=request.debit_account_id,
        credit_account_id=request.credit_account_id,
        amount=request.amount,
        code=kind.value,
        user_data=request.id,
    )
    if not request.fee:
        return [main]
    fee = TransferSpec(
        id=leg_id(request.id, "fee"),
        debit_account_id=request.debit_account_id,
        credit_account_id=house[AccountKind.FEES],
        amount=request.fee,
        code="fee",
        user_data=request.id,
    )
    return [_linked(main), fee]


def _linked(spec: TransferSpec) -> TransferSpec:
    return TransferSpec(**{**spec.__dict__, "flags": spec.flags | TransferFlags.LINKED})
