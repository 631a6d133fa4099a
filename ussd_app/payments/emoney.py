"""Issuing e-money: every shilling of e-float is a shilling deposited in the trust account."""

from ..ledger import AccountKind, house_account
from ..users import Role, User
from .execute import execute_requests
from .models import RequestKind, RequestStatus, TransferRequest, TrustDeposit
from .submit import mint_request_id, record_request


class FloatError(ValueError):
    pass


def issue_float(session, agent: User, amount: int, bank_reference: str | None = None) -> TransferRequest:
    """Record a trust deposit of ``amount`` minor units and credit it to the agent's e-float,
    in the caller's transaction (posted at once: the operator is waiting for the answer)."""
    if agent.role != Role.AGENT.value:
        raise FloatError(f"{agent.phone} is a {agent.role}, not an agent")
    if amount <= 0:
        raise FloatError("the amount must be positive")
    trust = house_account(session, AccountKind.TRUST)
    request = record_request(
        session,
        request_id=mint_request_id(),
        kind=RequestKind.FLOAT_ISSUE.value,
        debit_account_id=trust.id,
        credit_account_id=agent.account_id,
        amount=amount,
        reference=bank_reference,
    )
    execute_requests(session, [request])
    if request.status != RequestStatus.POSTED.value:
        raise FloatError(f"the ledger refused the issue: {request.result}")
    session.add(TrustDeposit(request_id=request.id, amount=amount, bank_reference=bank_reference))
    session.flush()
    return request
