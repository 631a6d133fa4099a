"""The flows, one module each, and the engine that runs them all."""

from ..engine import Engine
from . import agent, common, escrow, home, my_account, my_approvals, pay, registration, send_money, withdraw

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
}

# Not a flow: the escrow providers of My approvals, registered on import.
assert escrow.DeliveryConfirmations  # nosec B101  # marks the import used; nothing relies on it
engine = Engine({name: module.FLOW for name, module in MODULES.items()})

HOME_UNREGISTERED = "registration.language"
HOME_CUSTOMER = "home.customer"
HOME_BUSINESS = "home.business"
LOCKED = "common.locked"
