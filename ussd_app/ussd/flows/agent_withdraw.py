"""Withdraw cash, started by the agent: the customer's number, the amount, a confirm screen
with the customer's registered name and the fee, the agent's PIN. The customer then approves
(or declines) in My approvals with their own PIN; approved, it is a withdrawal like the one
the customer starts (``withdraw.py``): same kind, fee and commission legs.

The approval id is minted at the confirm screen, so a repeated request never asks twice.
Its My approvals provider (``AgentWithdrawals``) is registered by ``flows.init_app``.
"""

from ... import limits
from ...extensions import db
from ...i18n import t
from ...payments import agent_withdrawals
from ...users import find_by_phone, holders
from .. import approvals
from ..engine import N_, Choice, Retry, Screen, Step
from . import common, fraud_checks, tail
from .agent_deposit import find_depositor
from .withdraw import quote_withdrawal


def record(ctx) -> str:
    """After the agent's PIN: the request waits for the customer's approval."""
    customer = find_by_phone(db.session, ctx.data["customer_phone"])
    if customer is None:
        return "error"
    agent_withdrawals.ask(
        db.session,
        approval_id=ctx.data["transfer_id"],
        agent=ctx.user,
        customer=customer,
        amount=ctx.data["amount"],
        fee=ctx.data["fee"],
        commission=ctx.data["commission"],
    )
    fraud_checks.name_used(ctx, ctx.data["transfer_id"])
    return "ok"


FLOW = {
    "customer": Screen(
        "the customer's phone number, for a withdrawal they will approve",
        N_("Withdraw for a customer\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "find", save="customer_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find": Step(
        "look up the customer",
        find_depositor,
        {
            "ok": "amount",
            "self": Retry("customer", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("customer", N_("{customer_phone} is not registered with Tuma.")),
            "not_customer": Retry("customer", N_("{customer_phone} is not a customer account.")),
            "throttled": "fraud.throttled",
        },
    ),
    "amount": Screen(
        "the amount the customer withdraws",
        N_("Withdraw for {customer_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "quote": Step(
        "quote the fee and the agent's commission, mint the approval id",
        quote_withdrawal,
        {
            "ok": "confirm",
            "out_of_range": Retry("amount", N_("You can withdraw from {min_text} to {max_text}.")),
        },
    ),
    **tail.money_tail(
        record,
        what="the request for the customer's approval",
        confirm=N_("Withdraw {amount_text} for {customer_name} {customer_phone}?\nFee: {fee_text}"),
        resume=N_("Continue the withdrawal of {amount_text} for {customer_name}?"),
        ask=N_("Enter your PIN to ask {customer_name} to approve"),
        done=N_("Sent to {customer_name} to approve in My approvals. Pay out cash only after the SMS."),
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["find"] = common.mobile_only("customer_phone", "customer", FLOW["find"])
# The customer's limits are not said to the agent (common.within_limits): the customer is
# told them before their own PIN in My approvals, and the worker's check is the final word.


SAMPLE: dict = {}


class AgentWithdrawals:
    """My approvals: a withdrawal an agent asked for, waiting for this customer's PIN."""

    name = "withdrawal"

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        found = []
        waiting = agent_withdrawals.pending_for(session, user)
        agents = holders(session, (row.agent_account_id for row in waiting))
        for row in waiting:
            agent = agents.get(row.agent_account_id)
            summary = t(
                user.language,
                N_("Withdraw {amount} at agent {name}, fee {fee}"),
                amount=common.money(row.amount),
                name=agent.name if agent else "",
                fee=common.money(row.fee),
            )
            found.append(approvals.PendingApproval(row.id, summary, spends=row.amount + row.fee))
        return found

    def before_approving(self, session, user, key: str):
        """The customer's own limits, before the PIN."""
        row = session.get(agent_withdrawals.WithdrawalApproval, key)
        if row is None or row.customer_account_id != user.account_id:
            return None
        return limits.before_pin(
            session,
            "withdrawal",
            row.amount,
            row.fee,
            payer_account_id=user.account_id,
            payer_tier=limits.tier_of(user),
        )

    def approve(self, session, user, key: str) -> bool:
        outcome = agent_withdrawals.approve(session, user, key)
        if outcome == "short":
            # Decided all the same (recorded as failed, both told by SMS that nothing was
            # withdrawn), and the screen says so too: "Approved." was shown at the counter.
            row = session.get(agent_withdrawals.WithdrawalApproval, key)
            spendable = agent_withdrawals.spendable_for(session, user, key)
            raise approvals.Short(row.amount + row.fee, spendable)
        return outcome != "gone"

    def decline(self, session, user, key: str) -> bool:
        return agent_withdrawals.decline(session, user, key)
