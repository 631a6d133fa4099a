"""The flows, one module each, and the engine that runs them all."""

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
    pay,
    registration,
    requests,
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
    "requests": requests,  # payment requests; also their My approvals provider
    "fraud": fraud,
    "agent_withdraw": agent_withdraw,
    "reversal": reversal,
    "airtime": airtime,
}

# Not a flow: the escrow providers of My approvals, registered on import.
assert escrow.DeliveryConfirmations  # nosec B101  # marks the import used; nothing relies on it
# ``name_shown`` (fraud_checks.name_shown) records a name the person saw: going back keeps it.
engine = Engine({name: module.FLOW for name, module in MODULES.items()}, lasting=("name_shown",))

HOME_UNREGISTERED = "registration.language"
HOME_CUSTOMER = "home.customer"
HOME_BUSINESS = "home.business"
LOCKED = "common.locked"
