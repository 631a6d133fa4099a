"""Tip or donate: a customer gives a creator or cause a small amount (``payments/tips.py``).

```
code       "Enter the cause's code"   5-7 digits -> find       | else retry
find       a cause's code             -> amount | a till, unknown, self, locked: retry code
amount     "Tip {cause_name}"         whole, from 1 -> quote (fee, limits said here)
quote      the fee (free up to the free band), the transfer id minted -> confirm | confirm_fee
confirm    name, amount, free         -> pin (the shared money tail)
submit     PIN, SIM-swap gate, record -> done (END with the tip's code; no SMS for a small tip)
                                       | receipt (END; a larger tip's SMS follows)
```

Only a cause takes tips here: a merchant's till is refused with the way to pay it (Buy goods),
so a customer never tips a shop by mistake nor gets a receipt without one."""

from ...extensions import db
from ...payments.models import RequestKind, transaction_code
from ...payments.submit import mint_request_id
from ...payments.tips import silent
from ...tariffs import in_force
from ...users import Role, find_by_till
from ..engine import N_, Choice, Retry, Screen, Step
from ..pin_guard import is_operator_locked
from . import common, fraud_checks, pay, tail

KIND = RequestKind.TIP.value


def find_cause(ctx) -> str:
    found = find_by_till(db.session, ctx.data["cause_code"])
    if found is None:
        return "unknown"
    if found.role != Role.CAUSE.value:
        return "not_cause"  # a merchant's till: paid by Buy goods, never tipped by mistake
    if found.account_id == ctx.user.account_id:
        return "self"
    if is_operator_locked(found):  # the worker refuses it too, whenever it was recorded
        return "locked"
    ctx.data.update(cause_name=common.shown_name(found), cause_account=found.account_id)
    return "ok"


def quote_tip(ctx) -> str:
    """The fee from the tariff in force (a tip up to the free band is free) and the transfer id,
    minted once for this confirm; its code is what the END screen shows."""
    tariff = in_force()
    try:
        fee = tariff.fee(KIND, ctx.data["amount"])
    except ValueError:  # an operator's tariff with no entry for tips: not priced, not taken
        return "unpriced"
    transfer_id = mint_request_id()
    ctx.data.update(
        fee=fee,
        amount_text=common.money(ctx.data["amount"]),
        fee_text=common.money(fee),
        transfer_id=transfer_id,
        tip_code=transaction_code(transfer_id),
    )
    return "fee" if fee else "free"


def record(ctx) -> str:
    """After the PIN: the SIM-swap gate, then the tip is recorded; "ok" for a tip that sends no
    SMS (its END screen is its receipt), "receipt" for one whose SMS follows."""

    def tip(c) -> str:
        outcome = common.record_payment(
            c,
            kind=KIND,
            debit_account_id=common.payer_account_id(c),
            credit_account_id=c.data["cause_account"],
        )
        if outcome == "ok" and not silent(KIND, c.data["amount"]):
            return "receipt"
        return outcome

    return fraud_checks.guarded(tip)(ctx)


FLOW = {
    "code": Screen(
        "the code of the creator or cause to tip",
        N_("Tip or donate\nEnter the cause's code"),
        choices=(
            Choice(pay.business_number, "find", save="cause_code"),
            Choice(common.phone_number, "person"),  # a person's number: not a cause
        ),
        otherwise=N_("A cause's code is 5 to 7 digits."),
    ),
    "person": Step(
        "a phone number typed for a cause's code",
        lambda ctx: "person",
        {"person": Retry("code", N_("Tips go to a cause's code. To send to a person, use Send money."))},
    ),
    "find": Step(
        "look up the cause (only a cause takes tips)",
        find_cause,
        {
            "ok": "amount",
            "unknown": Retry("code", N_("No cause has code {cause_code} on Tuma.")),
            "not_cause": Retry(
                "code", N_("{cause_code} is a business till, not a cause. Pay it with Buy goods.")
            ),
            "self": Retry("code", N_("You cannot tip yourself.")),
            "locked": Retry("code", N_("This cause cannot take tips now.")),
        },
    ),
    "amount": Screen(
        "the amount to give, whole, from 1",
        N_("Tip {cause_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote", save="amount"),),
        otherwise=N_("Enter a whole amount, like 20."),
    ),
    "quote": Step(
        "quote the fee (free up to the free band) and mint the transfer id",
        quote_tip,
        {"free": "confirm", "fee": "confirm_fee", "unpriced": "unpriced"},
    ),
    "unpriced": Screen(
        "tips are not priced in the tariff in force",
        N_("Tips cannot be taken right now. Nothing was sent."),
        end=True,
    ),
    "confirm_fee": tail.confirm_screen(
        "cause, amount and fee",
        N_("Tip {amount_text} to {cause_name} ({cause_code})?\nFee: {fee_text}"),
        resume=N_("Continue tipping {amount_text} to {cause_name}?"),
    ),
    **tail.money_tail(
        record,
        what="the tip",
        confirm=N_("Tip {amount_text} to {cause_name} ({cause_code})?\nFree: no fee."),
        resume=N_("Continue tipping {amount_text} to {cause_name}?"),
        ask=N_("Enter your PIN to tip {amount_text} to {cause_name}"),
        done=N_(
            "Tipping {amount_text} to {cause_name}. Code {tip_code}. No SMS for small tips: see My account."
        ),  # noqa: E501
        short=N_("Not enough money to tip {amount_text}. Your balance is {balance_text}."),
        exits={"receipt": "receipt", **fraud_checks.EXITS},
    ),
    "receipt": Screen(
        "a larger tip recorded: its SMS follows",
        N_(
            "Tipping {amount_text} to {cause_name}. Code {tip_code}. You will receive an SMS confirmation shortly."  # noqa: E501
        ),
        end=True,
    ),
}
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(FLOW["quote"], {"free": "amount", "fee": "amount"}, kind=KIND)

SAMPLE = {
    "cause_code": "9" * 7,
    "cause_name": "W" * common.SHOWN_NAME_LIMIT,
    "cause_account": 1,
    "tip_code": "ABCDEFGH23",
}
