"""Withdraw cash at an agent, started by the customer: the agent's number, the amount, a
confirm screen with the agent's registered name and the fee, the customer's PIN. The agent's
commission is quoted with the fee and posted as a linked leg (``payments.legs``)."""

from ...extensions import db
from ...money import widest
from ...payments.models import RequestKind
from ...payments.submit import mint_request_id
from ...tariffs import commission, quote, withdrawal_max, withdrawal_min
from ...users import Role, find_by_phone
from ..engine import N_, Choice, Retry, Screen, Step
from ..pin_guard import is_operator_locked
from . import common, fraud_checks, tail


def find_agent(ctx) -> str:
    phone = ctx.data["agent_phone"]
    if phone == ctx.user.phone:
        return "self"
    agent = find_by_phone(db.session, phone)
    if agent is None or agent.role != Role.AGENT.value:
        return "not_agent"
    if is_operator_locked(agent):  # the worker refuses it too, whenever it was recorded
        return "locked"
    ctx.data["agent_name"] = common.shown_name(agent)
    ctx.data["agent_account"] = agent.account_id
    return "ok"


def quote_withdrawal(ctx) -> str:
    amount = ctx.data["amount"]
    if not withdrawal_min() <= amount <= withdrawal_max():
        ctx.data.update(min_text=common.money(withdrawal_min()), max_text=common.money(withdrawal_max()))
        return "out_of_range"
    kind = RequestKind.WITHDRAWAL.value
    fee = quote(kind, amount)
    ctx.data.update(
        fee=fee,
        commission=commission(kind, amount),
        amount_text=common.money(amount),
        fee_text=common.money(fee),
        transfer_id=mint_request_id(),
    )
    return "ok"


def record(ctx) -> str:
    """After the PIN: the SIM-swap gate, then the withdrawal is recorded."""
    return fraud_checks.guarded(
        lambda c: common.record_payment(
            c,
            kind=RequestKind.WITHDRAWAL.value,
            debit_account_id=common.payer_account_id(c),
            credit_account_id=c.data["agent_account"],
            commission=c.data["commission"],
        )
    )(ctx)


FLOW = {
    "agent": Screen(
        "the agent's phone number",
        N_("Withdraw cash\nEnter the agent's phone number"),
        choices=(Choice(common.phone_number, "find", save="agent_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find": Step(
        "look up the agent",
        find_agent,
        {
            "ok": "amount",
            "self": Retry("agent", N_("Enter the agent's number, not yours.")),
            "not_agent": Retry("agent", N_("{agent_phone} is not a Tuma agent.")),
            "locked": Retry("agent", N_("This agent cannot take withdrawals now.")),
        },
    ),
    "amount": Screen(
        "the amount to withdraw",
        N_("Withdraw from {agent_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "quote": Step(
        "quote the fee and the agent's commission, mint the transfer id",
        quote_withdrawal,
        {
            "ok": "confirm",
            "out_of_range": Retry("amount", N_("You can withdraw from {min_text} to {max_text}.")),
        },
    ),
    **tail.money_tail(
        record,
        what="the withdrawal",
        confirm=N_("Withdraw {amount_text} from agent {agent_name} {agent_phone}?\nFee: {fee_text}"),
        resume=N_("Continue withdrawing {amount_text} from agent {agent_name}?"),
        ask=N_("Enter your PIN to withdraw {amount_text} from {agent_name}"),
        done=N_("Withdrawing {amount_text} from {agent_name}. Take your cash when you receive the SMS."),
        short=N_(
            "Not enough money to withdraw {amount_text} plus fee {fee_text}. Your balance is {balance_text}."
        ),
        exits=fraud_checks.EXITS,
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["find"] = common.mobile_only("agent_phone", "agent", FLOW["find"])
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(FLOW["quote"], "amount", kind="withdrawal")


SAMPLE = {
    "agent_phone": "+" + "9" * 15,
    "agent_name": "W" * common.SHOWN_NAME_LIMIT,
    "agent_account": 1,
    "commission": 12_400,
    "min_text": widest(lambda p: p.withdrawal_min),
    "max_text": widest(lambda p: p.withdrawal_bands[-1][0]),
}
