"""The flows, one module each, and the engine that runs them all."""

from .. import approvals
from ..conversation import Conversation
from ..engine import Engine
from . import (
    agent,
    agent_withdraw,
    airtime,
    common,
    escrow,
    home,
    my_account,
    my_approvals,
    my_requests,
    pay,
    registration,
    request_common,
    request_money,
    request_payment,
    reversal,
    send_money,
    withdraw,
)
from . import fraud_checks as fraud

MODULES = {
    "common": common,
    "home": home,
    "registration": registration,
    "send_money": send_money,
    "my_account": my_account,
    "my_approvals": my_approvals,
    "withdraw": withdraw,
    "pay": pay,
    "agent": agent,
    # Payment requests (their My approvals provider is in ``request_common``).
    "request_payment": request_payment,
    "request_money": request_money,
    "my_requests": my_requests,
    "fraud": fraud,
    "agent_withdraw": agent_withdraw,
    "reversal": reversal,
    "airtime": airtime,
}

# What waits for a customer's PIN in My approvals (``ussd/approvals.py``), one provider each;
# registered by ``init_app``, never as a side effect of importing a flow.
APPROVAL_PROVIDERS = (
    request_common.PaymentRequests,  # payment requests, from both asking flows
    escrow.DeliveryConfirmations,  # protected purchases: confirm delivery or dispute
    agent_withdraw.AgentWithdrawals,  # a withdrawal an agent started
    reversal.ReversalApprovals,  # a sender asks this recipient to return a send
)
# States renamed since a session may have been stored (old -> new), for ``renamed`` and
# ``rename_states``. The three payment-request flows were one, "requests", told apart by
# prefixes, until issue 16: a session or resume snapshot stored under the old names carries on
# under the new ones. Only screens are listed: a session stands on a screen, never on a step,
# and one that ended on an end screen is never run again nor offered back.
RENAMED = {
    "requests.m_phone": "request_payment.phone",
    "requests.m_amount": "request_payment.amount",
    "requests.m_reason": "request_payment.reason",
    "requests.m_confirm": "request_payment.confirm",
    "requests.m_pin": "request_payment.pin",
    "requests.c_number": "request_money.number",
    "requests.c_how": "request_money.how",
    "requests.c_each": "request_money.each",
    "requests.c_total": "request_money.total",
    "requests.c_reason": "request_money.reason",
    "requests.c_confirm": "request_money.confirm",
    "requests.c_pin": "request_money.pin",
    "requests.mine_list": "my_requests.list",
    "requests.group_show": "my_requests.group_show",
    "requests.payer_show": "my_requests.payer_show",
    "requests.cancel_ask": "my_requests.cancel_ask",
}

# ``name_shown`` (fraud_checks.name_shown) records a name the person saw: going back keeps it.
engine = Engine({name: module.FLOW for name, module in MODULES.items()}, lasting=("name_shown",))

HOME_UNREGISTERED = "registration.language"
HOME_CUSTOMER = "home.customer"
HOME_BUSINESS = "home.business"
LOCKED = "common.locked"


def init_app(app) -> None:
    """Register My approvals' providers (idempotent: one per name)."""
    for provider in APPROVAL_PROVIDERS:
        approvals.register(provider())


def renamed(snapshot: dict | None) -> dict | None:
    """A resume ``snapshot`` with the states it names by their current names (``RENAMED``)."""
    if not snapshot:
        return snapshot
    state, history = snapshot.get("state"), snapshot.get("history") or []
    return {**snapshot, "state": RENAMED.get(state, state), "history": [RENAMED.get(n, n) for n in history]}


def rename_states(conversation: Conversation) -> None:
    """Name a stored conversation's states by their current names (``RENAMED``), in place."""
    conversation.state = RENAMED.get(conversation.state, conversation.state)
    conversation.history = [RENAMED.get(name, name) for name in conversation.history]
