"""The customer an agent serves, found by the number the agent typed: never the agent's own
number, never a business. Shared by the agent's deposit, unlock and verify-ID screens (and the
withdrawal an agent starts, through ``agent_deposit.find_depositor``)."""

from ...extensions import db
from ...users import Role, find_by_phone
from . import fraud_checks


def customer(ctx, key: str) -> tuple[str, object]:
    """(outcome, user) for the number saved under ``key``: "ok" with the customer, or "self",
    "unknown" or "not_customer" with None."""
    phone = ctx.data[key]
    if phone == ctx.user.phone:
        return "self", None
    user = find_by_phone(db.session, phone)
    if user is None:
        return "unknown", None
    if user.role != Role.CUSTOMER.value:
        return "not_customer", None
    return "ok", user


def look_up(ctx, key: str) -> tuple[str, object]:
    """``customer``, counted as a name look-up (throttled: ``fraud_checks``): the answer tells
    the agent whether the number is on Tuma and whose it is. The row is read first (nothing of
    it is told when refused), so that the customer's name about to be shown is counted as a
    cancel (until the flow records its request) in the same atomic step as the look-up."""
    outcome, user = customer(ctx, key)
    if outcome == "self":
        return outcome, user
    if not fraud_checks.lookup_allowed(ctx, shows=ctx.data[key] if user is not None else None):
        return "throttled", None
    return outcome, user
