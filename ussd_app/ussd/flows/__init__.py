"""The flows, one module each, and the engine that runs them all."""

from ... import country
from .. import approvals
from ..engine import Engine
from . import (
    agent,
    agent_withdraw,
    airtime,
    allowances,
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
    standing_orders,
    tips,
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
    "tips": tips,  # tip or donate to a creator or cause
    "standing_orders": standing_orders,  # issue 18: pay on a schedule, the PIN once
    "allowances": allowances,  # its My approvals provider is there too
}

# What waits for a customer's PIN in My approvals (``ussd/approvals.py``), one provider each;
# registered by ``init_app``, never as a side effect of importing a flow.
APPROVAL_PROVIDERS = (
    request_common.PaymentRequests,  # payment requests, from both asking flows
    escrow.DeliveryConfirmations,  # protected purchases: confirm delivery or dispute
    agent_withdraw.AgentWithdrawals,  # a withdrawal an agent started
    reversal.ReversalApprovals,  # a sender asks this recipient to return a send
    allowances.Allowances,  # a merchant asks to charge up to a limit a period
)
# ``name_shown`` (fraud_checks.lookup_allowed) records a name the person saw: going back keeps it.
engine = Engine({name: module.FLOW for name, module in MODULES.items()}, lasting=("name_shown",))

HOME_UNREGISTERED = "registration.language"  # where the country offers more than one language
HOME_UNREGISTERED_ONE_LANGUAGE = "registration.first_name"
HOME_CUSTOMER = "home.customer"
HOME_BUSINESS = "home.business"
LOCKED = "common.locked"


def home_unregistered() -> str:
    """Where a number not registered starts: choosing a language, unless the country offers
    only one (``country.languages``): then its first name, in that language."""
    return HOME_UNREGISTERED if len(country.languages()) > 1 else HOME_UNREGISTERED_ONE_LANGUAGE


def init_app(app) -> None:
    """Register My approvals' providers (idempotent: one per name)."""
    for provider in APPROVAL_PROVIDERS:
        approvals.register(provider())
