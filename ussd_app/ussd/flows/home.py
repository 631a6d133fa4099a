"""The root menus. Agents and merchants get their own menus in a later issue; until then they
see the account and approvals items only (sending from e-float or a till is not P2P)."""

from ..engine import N_, Option, Screen

FLOW = {
    "customer": Screen(
        "main menu of a customer",
        N_("Tuma"),
        options=(
            Option(N_("Send money"), "send_money.recipient"),
            Option(N_("My account"), "my_account.menu"),
            Option(N_("My approvals"), "my_approvals.load"),
        ),
    ),
    "business": Screen(
        "main menu of an agent or merchant, until their own menus come",
        N_("Tuma (agent and merchant menus are coming soon)"),
        options=(
            Option(N_("My account"), "my_account.menu"),
            Option(N_("My approvals"), "my_approvals.load"),
        ),
    ),
}

SAMPLE: dict = {}
