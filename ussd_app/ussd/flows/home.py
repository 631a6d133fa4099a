"""The root menus, one per role. ``customer`` and ``business`` are where the web side starts
(by role); each is a step that picks the menu: a customer an agent registered, who has no PIN
yet, chooses one first; agents, merchants and causes get their own menus."""

from ...users import Role
from ..engine import N_, Option, Screen, Step


def _needs_pin(ctx) -> bool:
    """A registered caller without a PIN (an agent registered them) chooses one first. A PIN
    set is taken from the caller's facts (whether there is one, never the hash: a home hop
    reads no row) unless the hop has the row (a flow may have just set it); none set, from
    the row, which the PIN screen's greeting needs anyway."""
    facts = ctx.caller
    if not ctx.user_loaded and facts is not None and facts.has_pin:
        return False
    user = ctx.user
    if user is None or user.pin_hash:
        return False
    ctx.data["first_name"] = user.first_name
    return True


def customer_home(ctx) -> str:
    return "set_pin" if _needs_pin(ctx) else "menu"


def business_home(ctx) -> str:
    if _needs_pin(ctx):
        return "set_pin"
    if ctx.user_loaded or ctx.caller is None:
        role = ctx.user.role if ctx.user is not None else None
    else:
        role = ctx.role  # the caller's facts: the row is not read for a menu
    return {Role.AGENT.value: "agent", Role.CAUSE.value: "cause"}.get(role, "merchant")


FLOW = {
    "customer": Step(
        "a customer's start: the menu, or choosing a PIN first",
        customer_home,
        {"menu": "customer_menu", "set_pin": "registration.set_pin"},
    ),
    "customer_menu": Screen(
        "main menu of a customer",
        N_("Tuma"),
        options=(
            Option(N_("Send money"), "send_money.recipient"),
            Option(N_("My account"), "my_account.menu"),
            Option(N_("My approvals"), "my_approvals.load"),
            Option(N_("Withdraw cash"), "withdraw.agent"),
            Option(N_("Buy goods"), "pay.till"),
            Option(N_("Pay bill"), "pay.paybill"),
            Option(N_("Buy airtime"), "airtime.menu"),
            Option(N_("Request money"), "request_money.start"),
            Option(N_("My requests"), "my_requests.start"),
            Option(N_("Tip or donate"), "tips.code"),
            Option(N_("Standing orders"), "standing_orders.menu"),
            Option(N_("Allowances"), "allowances.menu"),
        ),
    ),
    "business": Step(
        "an agent's or merchant's start: their own menu",
        business_home,
        {"agent": "agent", "merchant": "merchant", "cause": "cause", "set_pin": "registration.set_pin"},
    ),
    "agent": Screen(
        "main menu of an agent",
        N_("Tuma Agent"),
        options=(
            Option(N_("Deposit"), "agent.deposit"),
            Option(N_("Float balance"), "my_account.balance_pin"),
            Option(N_("Commission"), "agent.commission_pin"),
            Option(N_("Last transactions"), "my_account.statement_pin"),
            Option(N_("Register customer"), "agent.register"),
            Option(N_("Unlock customer PIN"), "agent.unlock"),
            Option(N_("My account"), "my_account.menu"),
            Option(N_("My approvals"), "my_approvals.load"),
            Option(N_("Withdraw cash"), "agent_withdraw.customer"),
            Option(N_("Verify customer ID"), "agent.verify_id"),
        ),
    ),
    "merchant": Screen(
        "main menu of a merchant",
        N_("Tuma Business"),
        options=(
            Option(N_("Balance"), "my_account.balance_pin"),
            Option(N_("Statement"), "my_account.statement_pin"),
            Option(N_("My account"), "my_account.menu"),
            Option(N_("My approvals"), "my_approvals.load"),
            Option(N_("Request payment"), "request_payment.start"),
            Option(N_("My requests"), "my_requests.start"),
        ),
    ),
    # A creator or cause (payments/tips.py): tips arrive without an SMS each, so what it has is
    # read here, and its daily digest SMS says what came in the day before.
    "cause": Screen(
        "main menu of a creator or cause that takes tips",
        N_("Tuma Cause"),
        options=(
            Option(N_("Balance"), "my_account.balance_pin"),
            Option(N_("Statement"), "my_account.statement_pin"),
            Option(N_("My account"), "my_account.menu"),
        ),
    ),
}

SAMPLE: dict = {}
