"""An agent's deposit (cash-in) for a customer: the customer's number, the amount, a confirm
screen with the customer's registered name, the agent's PIN; the transfer id is minted at the
confirm screen, as for sending money. Part of the agent's flow (``agent.py``): the states are
``agent.<name>``."""

from ...payments.models import RequestKind
from ..engine import N_, Choice, Retry, Screen, Step
from . import common, fraud_checks, tail
from .agent_lookup import look_up


def find_depositor(ctx) -> str:
    outcome, user = look_up(ctx, "customer_phone")
    if user is not None:
        ctx.data["customer_name"] = common.shown_name(user)
        ctx.data["customer_account"] = user.account_id
    return outcome


def quote_deposit(ctx) -> str:
    from ...payments.submit import mint_request_id

    ctx.data.update(fee=0, amount_text=common.money(ctx.data["amount"]), transfer_id=mint_request_id())
    return "ok"


def record_deposit(ctx) -> str:
    """After the agent's PIN: the deposit is recorded (the agent's float must cover it)."""
    outcome = common.record_payment(
        ctx,
        kind=RequestKind.DEPOSIT.value,
        debit_account_id=common.payer_account_id(ctx),
        credit_account_id=ctx.data["customer_account"],
    )
    if outcome == "ok":
        fraud_checks.name_used(ctx, ctx.data["transfer_id"])
    return outcome


STATES = {
    "deposit": Screen(
        "the customer's phone number, for a cash deposit",
        N_("Deposit\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "find_depositor", save="customer_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find_depositor": Step(
        "look up the customer",
        find_depositor,
        {
            "ok": "deposit_amount",
            "self": Retry("deposit", N_("Enter the customer's number, not yours.")),
            "unknown": Retry("deposit", N_("{customer_phone} is not registered with Tuma.")),
            "not_customer": Retry("deposit", N_("{customer_phone} is not a customer account.")),
            "throttled": "fraud.throttled",
        },
    ),
    "deposit_amount": Screen(
        "the amount deposited",
        N_("Deposit to {customer_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote_deposit", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "quote_deposit": Step("mint the transfer id", quote_deposit, {"ok": "deposit_confirm"}),
    # Also the agent flow's "cancelled" screen, where every confirm screen's Cancel leads.
    **tail.money_tail(
        record_deposit,
        what="the deposit",
        confirm=N_("Deposit {amount_text} to {customer_name} {customer_phone}?"),
        resume=N_("Continue depositing {amount_text} to {customer_name}?"),
        ask=N_("Enter your PIN to deposit {amount_text} to {customer_name}"),
        done=N_("Depositing {amount_text} to {customer_name}. You will both receive an SMS shortly."),
        short=N_("Not enough float to deposit {amount_text}. Your float balance is {balance_text}."),
        names=tail.Names(
            confirm="deposit_confirm",
            pin="deposit_pin",
            submit="submit_deposit",
            done="deposit_done",
            short="float_short",
        ),
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
STATES["find_depositor"] = common.mobile_only("customer_phone", "deposit", STATES["find_depositor"])
# No limit of the customer's is said before the agent's PIN: their balance room is theirs
# alone (common.within_limits). The worker refuses a deposit over it and SMSes both.

SAMPLE = {
    "customer_phone": "+" + "9" * 15,
    "customer_name": "W" * common.SHOWN_NAME_LIMIT,
    "customer_account": 1,
}
