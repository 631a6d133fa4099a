"""An agent's own flow, ``agent``: the states the agent's menu (``home.agent``) leads to, one
module per piece, all named ``agent.<state>``:

- deposit (cash-in) for a customer: ``agent_deposit.py``
- registering a customer, and raising one whose ID card the agent checked to the full tier:
  ``agent_register.py``
- unlocking a customer's PIN with a one-time code sent to the locked phone: ``agent_unlock.py``
- commission earned: here.

Finding the customer by number is shared (``agent_lookup.py``). Float balance and last
transactions are My account's screens (an agent's wallet is the e-float); the withdrawal an
agent starts is its own flow (``agent_withdraw.py``).
"""

from sqlalchemy import func, select

from ...extensions import db
from ...money import WIDEST_AMOUNT
from ...payments.models import RequestKind, RequestStatus, TransferRequest
from ..engine import N_, Choice, FlowError, Screen, State, Step
from . import agent_deposit, agent_register, agent_unlock, common


def commission_earned(ctx) -> str:
    total = db.session.execute(
        select(func.coalesce(func.sum(TransferRequest.commission), 0)).where(
            TransferRequest.credit_account_id == ctx.user.account_id,
            TransferRequest.kind == RequestKind.WITHDRAWAL.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
        )
    ).scalar_one()
    ctx.data["commission_text"] = common.money(int(total))
    return "ok"


COMMISSION = {
    "commission_pin": Screen(
        "PIN before the commission earned",
        N_("Enter your PIN to see your commission"),
        choices=(Choice(common.pin_format, "check_commission_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_commission_pin": common.pin_step("commission_earned", "commission_pin"),
    "commission_earned": Step(
        "add up commission on posted withdrawals", commission_earned, {"ok": "commission"}
    ),
    "commission": Screen("commission earned", N_("Commission earned: {commission_text}."), end=True),
}


def _one_flow(*parts: dict[str, State]) -> dict[str, State]:
    """The parts' states as one flow; a name given twice is a wiring bug, never an override."""
    flow: dict[str, State] = {}
    for part in parts:
        if twice := flow.keys() & part.keys():
            raise FlowError(f"agent states defined twice: {sorted(twice)}")
        flow.update(part)
    return flow


FLOW = _one_flow(agent_deposit.STATES, COMMISSION, agent_register.STATES, agent_unlock.STATES)

SAMPLE = {
    **agent_deposit.SAMPLE,
    "commission_text": WIDEST_AMOUNT,
    **agent_register.SAMPLE,
    **agent_unlock.SAMPLE,
}
