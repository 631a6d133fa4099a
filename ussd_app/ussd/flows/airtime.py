"""Buy airtime, for this phone or another number: the amount, a confirm screen, the PIN. The
money is held and a worker job asks Africa's Talking for the airtime (``payments/airtime.py``);
posted when it is sent, voided with an SMS when it is not."""

from ...extensions import db
from ...payments import airtime
from ...payments.submit import mint_request_id
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common, tail


def for_self(ctx) -> str:
    ctx.data["airtime_phone"] = ctx.user.phone
    return "ok"


def quote(ctx) -> str:
    amount = ctx.data["amount"]
    least, most = airtime.bounds()
    if not least <= amount <= most:
        ctx.data.update(min_text=common.money(least), max_text=common.money(most))
        return "out_of_range"
    ctx.data.update(amount_text=common.money(amount), transfer_id=mint_request_id())
    return "ok"


def record(ctx) -> str:
    """After the PIN: the money is held and the purchase queued. What the caller may spend
    counts their requests still queued (``common.available``), as a send's PIN hop does: else
    airtime bought behind a queued send was told "Buying" and refused by SMS."""
    spendable = common.available(ctx)
    if spendable < ctx.data["amount"] and not common.replayed(ctx):
        ctx.data["balance_text"] = common.spendable_text(spendable)
        return "short"
    airtime.record(
        db.session,
        request_id=ctx.data["transfer_id"],
        account_id=ctx.user.account_id,
        phone=ctx.data["airtime_phone"],
        amount=ctx.data["amount"],
    )
    return "ok"


FLOW = {
    "menu": Screen(
        "whose phone to top up",
        N_("Buy airtime"),
        options=(Option(N_("For my number"), "for_self"), Option(N_("For another number"), "phone")),
    ),
    "for_self": Step("top up this phone", for_self, {"ok": "amount"}),
    "phone": Screen(
        "the number to top up",
        N_("Enter the phone number to top up"),
        choices=(Choice(common.phone_number, "check_phone", save="airtime_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "amount": Screen(
        "the airtime amount",
        N_("Airtime for {airtime_phone}\nEnter amount"),
        choices=(Choice(common.amount, "quote", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "quote": Step(
        "check the amount, mint the request id",
        quote,
        {
            "ok": "confirm",
            "out_of_range": Retry("amount", N_("You can buy airtime from {min_text} to {max_text}.")),
        },
    ),
    **tail.money_tail(
        record,
        what="the airtime purchase",
        confirm=N_("Buy {amount_text} of airtime for {airtime_phone}?"),
        resume=N_("Continue buying {amount_text} of airtime for {airtime_phone}?"),
        ask=N_("Enter your PIN to buy {amount_text} of airtime"),
        done=N_("Buying {amount_text} of airtime for {airtime_phone}. You will receive an SMS."),
        short=N_("Not enough money to buy {amount_text} of airtime. Your balance is {balance_text}."),
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["check_phone"] = common.mobile_only(
    "airtime_phone", "phone", Step("only they can get airtime", lambda ctx: "ok", {"ok": "amount"})
)
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(FLOW["quote"], "amount", kind="airtime")


SAMPLE = {"airtime_phone": "+" + "9" * 15}
