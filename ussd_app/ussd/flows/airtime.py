"""Buy airtime, for this phone or another number: the amount, a confirm screen, the PIN. The
money is held and a worker job asks Africa's Talking for the airtime (``payments/airtime.py``);
posted when it is sent, voided with an SMS when it is not."""

from ...extensions import db
from ...payments import airtime
from ...payments.submit import mint_request_id
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common


def for_self(ctx) -> str:
    ctx.data["airtime_phone"] = ctx.user.phone
    return "ok"


def quote(ctx) -> str:
    amount = ctx.data["amount"]
    if not airtime.AIRTIME_MIN <= amount <= airtime.AIRTIME_MAX:
        ctx.data.update(
            min_text=common.money(airtime.AIRTIME_MIN), max_text=common.money(airtime.AIRTIME_MAX)
        )
        return "out_of_range"
    ctx.data.update(amount_text=common.money(amount), transfer_id=mint_request_id())
    return "ok"


def submit(ctx) -> str:
    def run(c) -> str:
        from ...payments.submit import announce

        account = c.user.account
        db.session.refresh(account)
        if account.available < c.data["amount"]:
            c.data["balance_text"] = common.money(account.available)
            return "short"
        airtime.record(
            db.session,
            request_id=c.data["transfer_id"],
            account_id=c.user.account_id,
            phone=c.data["airtime_phone"],
            amount=c.data["amount"],
        )
        c.after_commit.append(lambda: announce(c.data["transfer_id"]))
        return "ok"

    return common.pin_then(ctx, run)


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
    "confirm": Screen(
        "confirm number and amount",
        N_("Buy {amount_text} of airtime for {airtime_phone}?"),
        options=(Option(N_("Confirm"), "pin"), Option(N_("Cancel"), "cancelled")),
        resume=N_("Continue buying {amount_text} of airtime for {airtime_phone}?"),
    ),
    "pin": Screen(
        "the PIN that authorises the purchase",
        N_("Enter your PIN to buy {amount_text} of airtime"),
        choices=(Choice(common.pin_format, "submit"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "submit": Step(
        "check the PIN, then hold the money and queue the purchase",
        submit,
        common.pin_exits("pin", ok="done", short="short"),
    ),
    "done": Screen(
        "the purchase is queued",
        N_("Buying {amount_text} of airtime for {airtime_phone}. You will receive an SMS."),
        end=True,
    ),
    "short": Screen(
        "not enough money",
        N_("Not enough money to buy {amount_text} of airtime. Your balance is {balance_text}."),
        end=True,
    ),
    "cancelled": Screen("the customer cancelled", N_("Cancelled. Nothing was sent."), end=True),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["check_phone"] = common.mobile_only(
    "airtime_phone", "phone", Step("only they can get airtime", lambda ctx: "ok", {"ok": "amount"})
)
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(FLOW["quote"], "amount", kind="airtime")


SAMPLE = {"airtime_phone": "+" + "9" * 15}
