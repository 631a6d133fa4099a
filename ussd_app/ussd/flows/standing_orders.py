"""Standing orders (``payments/standing_orders.py``): set one up to a person, a till or a pay
bill, with the PIN once; list them; pause, resume, or cancel one (with the PIN).

```
menu       1 New | 2 My standing orders
new        to 1 a person (number, name shown) | 2 a till | 3 a pay bill (+ account), name shown
amount     -> the fee per payment quoted, the per-payment limit said before the PIN
often      1 Daily | 2 Weekly | 3 Monthly
first      1 Today | 2 Tomorrow | 3 Enter a date (DDMMYYYY, never in the past)
ends       1 After a number of payments | 2 On a date
confirm    payee, amount, how often, first date, end, fee per payment -> PIN -> END
mine       the payer's running orders (paged) -> one: details, next date; pause; resume
           (confirm, PIN); cancel (confirm, PIN)
```

The order's id is minted when the confirm screen is reached and kept in the session, so a
repeated or resumed final request finds the order already recorded and sets up nothing twice.
"""

from datetime import date, timedelta

from flask import current_app

from ...extensions import db
from ...i18n import t
from ...limits import Result, tier_limits
from ...money import WIDEST_AMOUNT
from ...payments import standing_orders as so
from ...payments.models import RequestKind
from ...tariffs import quote
from ...users import Role, find_by_account, find_by_phone
from .. import gsm7
from ..engine import N_, Choice, Option, Retry, Screen, Step
from ..render import singular
from . import common, fraud_checks, pay, tail

LINE_NAME_LIMIT = 14  # septets of the payee's name on a line of the list

OFTEN = {
    so.Frequency.DAILY: N_("daily"),
    so.Frequency.WEEKLY: N_("weekly"),
    so.Frequency.MONTHLY: N_("monthly"),
}


def day_text(day: date) -> str:
    return day.strftime("%d/%m/%y")


def typed_date(text: str) -> str | None:
    """DDMMYYYY as typed on a keypad -> ISO date (kept in the session as text), else None."""
    text = text.strip()
    if not (len(text) == 8 and text.isascii() and text.isdigit()):
        return None
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2])).isoformat()
    except ValueError:
        return None


def payments_count(text: str) -> int | None:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        return None
    count = int(text)
    return count if 1 <= count <= so.MAX_RUNS else None


# -- the payee ------------------------------------------------------------------------------


def may_add(ctx) -> str:
    """A payer with as many orders running as allowed cancels one first; one who set up as
    many today waits for tomorrow (said before any look-up or PIN; ``so.create`` refuses it
    too)."""
    why = so.no_room(db.session, ctx.user)
    if why is None:
        return "ok"
    ctx.data["so_most"] = current_app.config["STANDING_ORDERS_PER_PAYER"]
    return "full" if why == "running" else "full_today"


def find_person(ctx) -> str:
    phone = ctx.data["so_phone"]
    if phone == ctx.user.phone:
        return "self"
    # A look-up shows whose number it is: counted like send money's (fraud_checks), the name
    # about to be shown counted as a cancel in the same atomic step (the row is read first;
    # nothing of it is told when refused).
    person = find_by_phone(db.session, phone)
    shows = person is not None and person.role == Role.CUSTOMER.value
    if not fraud_checks.lookup_allowed(ctx, shows=phone if shows else None):
        return "throttled"
    if person is None:
        return "unknown"
    if not shows:
        return "not_customer"
    ctx.data.update(
        so_kind=RequestKind.SEND.value,
        so_payee_account=person.account_id,
        so_payee_name=common.shown_name(person),
        so_payee=payee_shown(ctx.lang, RequestKind.SEND.value, common.shown_name(person), phone, None),
    )
    return "ok"


def payee_shown(lang: str, kind: str, name: str, number: str, reference: str | None) -> str:
    """The payee as the confirm screen and the details say it: a person's name and number, a
    till's name and number, a pay bill's name and the account paid (its number is on the
    screen before)."""
    if kind == RequestKind.PAY_BILL.value:
        return t(lang, N_("{name} account {reference}"), name=name, reference=reference or "")
    if kind == RequestKind.BUY_GOODS.value:
        return f"{name} ({number})"
    return f"{name} {number}"


def _business(find, kind: RequestKind):
    def run(ctx) -> str:
        outcome = find(ctx)
        if outcome == "ok":
            ctx.data.update(
                so_kind=kind.value,
                so_payee_account=ctx.data["merchant_account"],
                so_payee_name=ctx.data["merchant_name"],
                so_payee=payee_shown(
                    ctx.lang, kind.value, ctx.data["merchant_name"], ctx.data["business_number"], None
                ),
            )
        return outcome

    return run


def with_account(ctx) -> str:
    """Pay bill: the account the payments are for is part of what the payer confirms."""
    ctx.data["so_payee"] = payee_shown(
        ctx.lang, RequestKind.PAY_BILL.value, ctx.data["merchant_name"], "", ctx.data["account_reference"]
    )
    return "ok"


# -- amount, how often, when ----------------------------------------------------------------


def check_account(ctx) -> str:
    """Pay bill: a business that set a validation URL is asked, as for a bill paid by hand,
    whether it takes this account and amount (``pay.check_account``); the runs are not asked
    again."""
    return pay.check_account(ctx) if ctx.data["so_kind"] == RequestKind.PAY_BILL.value else "ok"


def quote_fee(ctx) -> str:
    """The fee each payment costs (the tariff in force), and the payer's per-payment limit said
    before the PIN (a day's limit is the worker's to apply on the day)."""
    amount, kind = ctx.data["amount"], ctx.data["so_kind"]
    per_payment = tier_limits(ctx.user.tier).per_transfer
    if amount > per_payment:
        ctx.data.update(limit_text=common.money(per_payment), left_text=common.money(per_payment))
        return "over"
    fee = quote(kind, amount)
    ctx.data.update(fee=fee, amount_text=common.money(amount), fee_text=common.money(fee))
    return "ok"


def _often(frequency: so.Frequency):
    def run(ctx) -> str:
        ctx.data["so_often"] = frequency.value
        return "ok"

    return run


def _first(days: int):
    def run(ctx) -> str:
        ctx.data["so_first"] = (so.local_date() + timedelta(days=days)).isoformat()
        return "ok"

    return run


def check_first(ctx) -> str:
    first = date.fromisoformat(ctx.data["so_first_typed"])
    today = so.local_date()
    if first < today:
        return "past"
    if first > today + timedelta(days=so.MAX_DAYS_AHEAD):
        return "far"
    ctx.data["so_first"] = first.isoformat()
    return "ok"


def check_until(ctx) -> str:
    until = date.fromisoformat(ctx.data["so_until_typed"])
    first = date.fromisoformat(ctx.data["so_first"])
    if until < first:
        ctx.data["so_first_text"] = day_text(first)
        return "before"
    if until > so.local_date() + timedelta(days=so.MAX_DAYS_AHEAD):
        return "far"
    ctx.data.pop("so_count", None)
    ctx.data["so_until"] = until.isoformat()
    return "ok"


def by_count(ctx) -> str:
    ctx.data.pop("so_until", None)
    return "ok"


def summary(ctx) -> str:
    """What the confirm screen says, and the order's id, minted once for this confirm."""
    data = ctx.data
    first = date.fromisoformat(data["so_first"])
    if data.get("so_count"):
        end = t(ctx.lang, N_("{count} payments"), count=data["so_count"])
    else:
        end = t(ctx.lang, N_("to {date}"), date=day_text(date.fromisoformat(data["so_until"])))
    data.update(
        so_often_text=t(ctx.lang, OFTEN[so.Frequency(data["so_often"])]),
        so_first_text=day_text(first),
        so_end_text=end,
        so_id=so.mint_order_id(),
    )
    return "ok"


def order_total(ctx) -> int:
    """All the order's payments: what the SIM-swap gate weighs (not one payment: whoever took
    over a number would set up payments just under the threshold, for months)."""
    data = ctx.data
    return so.total(
        data["so_often"],
        date.fromisoformat(data["so_first"]),
        data["amount"],
        ends_on=date.fromisoformat(data["so_until"]) if data.get("so_until") else None,
        runs_limit=data.get("so_count") or None,
    )


def record(ctx) -> str:
    """After the PIN: the SIM-swap gate (weighing all the order's payments), then the order."""
    data = ctx.data
    try:
        order = so.create(
            db.session,
            ctx.user,
            order_id=data["so_id"],
            kind=data["so_kind"],
            payee_account_id=data["so_payee_account"],
            amount=data["amount"],
            frequency=data["so_often"],
            first_date=date.fromisoformat(data["so_first"]),
            ends_on=date.fromisoformat(data["so_until"]) if data.get("so_until") else None,
            runs_limit=data.get("so_count") or None,
            reference=data.get("account_reference"),
        )
    except so.OrderError:
        return "error"
    fraud_checks.name_used(ctx, order.id)
    return "ok"


# -- my standing orders ---------------------------------------------------------------------


def _payee_line(lang: str, order: so.StandingOrder) -> tuple[str, str]:
    """(short name, as shown in full) of the order's payee, for the list and the details."""
    payee = find_by_account(db.session, order.payee_account_id)
    if payee is None:
        return "?", "?"
    number = payee.phone if order.kind == RequestKind.SEND.value else payee.till or ""
    full = payee_shown(lang, order.kind, common.shown_name(payee), number, order.reference)
    return gsm7.shorten(payee.name, LINE_NAME_LIMIT), full


def load_mine(ctx) -> str:
    orders = so.mine(db.session, ctx.user)
    ctx.data["so_orders"] = [
        [
            order.id,
            t(
                ctx.lang,
                N_("{amount} {often} {name}")
                if order.state == so.State.ACTIVE
                else N_("{amount} {name} (paused)"),
                amount=common.money(order.amount),
                often=t(ctx.lang, OFTEN[so.Frequency(order.frequency)]),
                name=_payee_line(ctx.lang, order)[0],
            ),
        ]
        for order in orders[:30]
    ]
    return "some" if orders else "none"


def load_order(ctx) -> str:
    order = so.owned(db.session, ctx.user, ctx.data.get("so_order") or "")
    if order is None or order.state not in (so.State.ACTIVE, so.State.PAUSED):
        return "gone"
    if order.runs_limit:
        end = t(ctx.lang, N_("Payments: {made} of {count}"), count=order.runs_limit, made=order.runs_made)
    else:
        end = t(ctx.lang, N_("Ends {date}"), date=day_text(order.ends_on))
    full = _payee_line(ctx.lang, order)[1]
    ctx.data["so_payee"] = full
    ctx.data["so_details"] = t(
        ctx.lang,
        N_("To {payee}\n{amount} {often}\nNext: {next}\n{end}"),
        payee=full,
        amount=common.money(order.amount),
        often=t(ctx.lang, OFTEN[so.Frequency(order.frequency)]),
        next=day_text(order.next_date) if order.next_date else "-",
        end=end,
    )
    return order.state


def pause(ctx) -> str:
    return "ok" if so.pause(db.session, ctx.user, ctx.data.get("so_order") or "") else "gone"


def resume(ctx) -> str:
    """After the PIN: payments start again from the schedule's next date."""
    order_id = ctx.data.get("so_order") or ""
    if not so.resume(db.session, ctx.user, order_id):
        return "gone"
    order = so.owned(db.session, ctx.user, order_id)
    if order.state != so.State.ACTIVE:  # its end date passed while it was paused
        return "ended"
    ctx.data["so_next_text"] = day_text(order.next_date)
    return "ok"


def cancel(ctx) -> str:
    """After the PIN: no more payments; the payee is told by SMS."""
    return "ok" if so.cancel(db.session, ctx.user, ctx.data.get("so_order") or "") else "gone"


FULL = N_("You have {so_most} standing orders running, the most allowed. Cancel one first.")
singular(FULL, "so_most", N_("You have 1 standing order running, the most allowed. Cancel it first."))
FULL_TODAY = N_("You have set up {so_most} standing orders today, the most allowed. Try again tomorrow.")
singular(
    FULL_TODAY, "so_most", N_("You have set up 1 standing order today, the most allowed. Try again tomorrow.")
)

_AMOUNT = N_("Enter a whole amount, like 500.")
_PAST = N_("That date is past. Enter today or later.")
_FAR = N_("That date is too far ahead.")
_DATE = N_("Enter the date as DDMMYYYY, like 01022027.")

FLOW = {
    "menu": Screen(
        "standing orders: set one up, or see mine",
        N_("Standing orders"),
        options=(Option(N_("New"), "may_add"), Option(N_("My standing orders"), "mine")),
    ),
    "may_add": Step(
        "room for one more order?", may_add, {"ok": "new", "full": "full", "full_today": "full_today"}
    ),
    "full": Screen(
        "as many orders running as a payer may have",
        FULL,
        end=True,
    ),
    "full_today": Screen("as many orders set up today as a payer may", FULL_TODAY, end=True),
    "new": Screen(
        "whom the new standing order pays",
        N_("New standing order\nPay:"),
        options=(
            Option(N_("A person"), "person"),
            Option(N_("A till"), "till"),
            Option(N_("A pay bill"), "paybill"),
        ),
    ),
    "person": Screen(
        "the phone number of the person to pay",
        N_("Enter the phone number to pay"),
        choices=(Choice(common.phone_number, "find_person", save="so_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find_person": Step(
        "look the person up; refuse yourself and numbers without a customer account",
        find_person,
        {
            "ok": "amount",
            "self": Retry("person", N_("You cannot pay yourself.")),
            "unknown": Retry("person", N_("{so_phone} is not on Tuma.")),
            "not_customer": Retry("person", N_("{so_phone} cannot receive money here.")),
            "throttled": "fraud.throttled",
        },
    ),
    "till": Screen(
        "the till number to pay",
        N_("Enter till number"),
        choices=(Choice(pay.business_number, "find_till", save="business_number"),),
        otherwise=N_("A till number is 5 to 7 digits."),
    ),
    "find_till": Step(
        "look the till up",
        _business(pay.find_till, RequestKind.BUY_GOODS),
        {
            "ok": "amount",
            "unknown": Retry("till", N_("Till {business_number} is not on Tuma.")),
            "self": Retry("till", N_("You cannot pay yourself.")),
            "locked": Retry("till", N_("This business cannot take payments now.")),
        },
    ),
    "paybill": Screen(
        "the business number to pay",
        N_("Enter business number"),
        choices=(Choice(pay.business_number, "find_paybill", save="business_number"),),
        otherwise=N_("A business number is 5 to 7 digits."),
    ),
    "find_paybill": Step(
        "look the pay-bill number up",
        _business(pay.find_paybill, RequestKind.PAY_BILL),
        {
            "ok": "reference",
            "unknown": Retry("paybill", N_("Business number {business_number} is not on Tuma.")),
            "self": Retry("paybill", N_("You cannot pay yourself.")),
            "locked": Retry("paybill", N_("This business cannot take payments now.")),
        },
    ),
    "reference": Screen(
        "the account the payments are for, at the business",
        N_("Pay {merchant_name}\nEnter account number"),
        choices=(Choice(pay.account_reference, "with_account", save="account_reference"),),
        otherwise=N_("Use up to 20 letters or digits."),
    ),
    "with_account": Step("name the account with the payee", with_account, {"ok": "amount"}),
    "amount": Screen(
        "the amount of each payment",
        N_("Pay {so_payee_name}\nEnter the amount of each payment"),
        choices=(Choice(common.amount, "check_account", save="amount"),),
        otherwise=_AMOUNT,
    ),
    "check_account": Step(
        "a pay bill: ask the business whether it takes this account (its validation URL, if set)",
        check_account,
        {
            "ok": "quote",
            "refused": Retry("reference", N_("{merchant_name} does not accept account {account_reference}.")),
        },
    ),
    "quote": Step(
        "quote the fee per payment; say the per-payment limit",
        quote_fee,
        {"ok": "often", "over": Retry("amount", common.OVER_YOURS[Result.TRANSACTION])},
    ),
    "often": Screen(
        "how often to pay",
        N_("How often?"),
        options=(
            Option(N_("Daily"), "daily"),
            Option(N_("Weekly"), "weekly"),
            Option(N_("Monthly"), "monthly"),
        ),
    ),
    "daily": Step("every day", _often(so.Frequency.DAILY), {"ok": "first"}),
    "weekly": Step("every week", _often(so.Frequency.WEEKLY), {"ok": "first"}),
    "monthly": Step(
        "every month (the last day of shorter months)", _often(so.Frequency.MONTHLY), {"ok": "first"}
    ),
    "first": Screen(
        "the date of the first payment",
        N_("First payment"),
        options=(
            Option(N_("Today"), "today"),
            Option(N_("Tomorrow"), "tomorrow"),
            Option(N_("Enter a date"), "first_date"),
        ),
    ),
    "today": Step("first payment today", _first(0), {"ok": "ends"}),
    "tomorrow": Step("first payment tomorrow", _first(1), {"ok": "ends"}),
    "first_date": Screen(
        "the first payment's date, typed",
        N_("Enter the first payment's date as DDMMYYYY"),
        choices=(Choice(typed_date, "check_first", save="so_first_typed"),),
        otherwise=_DATE,
    ),
    "check_first": Step(
        "never in the past",
        check_first,
        {"ok": "ends", "past": Retry("first_date", _PAST), "far": Retry("first_date", _FAR)},
    ),
    "ends": Screen(
        "when the payments end",
        N_("Ends"),
        options=(Option(N_("After a number of payments"), "count"), Option(N_("On a date"), "until")),
    ),
    "count": Screen(
        "how many payments",
        # Each date counts, paid or skipped for want of money: the order ends on the date it
        # said it would (docs/threat-model.md "Standing orders and the velocity rule").
        N_("How many payments? 1 to 999\nA date skipped for want of money counts as one."),
        choices=(Choice(payments_count, "by_count", save="so_count"),),
        otherwise=N_("Enter a number from 1 to 999."),
    ),
    "by_count": Step("end after that many payments", by_count, {"ok": "summary"}),
    "until": Screen(
        "the last date a payment may be made",
        N_("Enter the last date as DDMMYYYY"),
        choices=(Choice(typed_date, "check_until", save="so_until_typed"),),
        otherwise=_DATE,
    ),
    "check_until": Step(
        "not before the first payment",
        check_until,
        {
            "ok": "summary",
            "before": Retry("until", N_("The last date is before the first, {so_first_text}.")),
            "far": Retry("until", _FAR),
        },
    ),
    "summary": Step("what the confirm screen says; mint the order's id", summary, {"ok": "confirm"}),
    **tail.money_tail(
        fraud_checks.guarded(record, amount=order_total),
        what="the standing order",
        confirm=N_(
            "Pay {so_payee} {amount_text} {so_often_text} from {so_first_text}, {so_end_text}?\nFee each: {fee_text}"  # noqa: E501
        ),
        resume=N_("Continue the standing order of {amount_text} to {so_payee_name}?"),
        ask=N_("Enter your PIN to set up the standing order"),
        done=N_("Standing order set up. First payment on {so_first_text}. You will get an SMS."),
        cancelled=N_("Cancelled. No standing order was set up."),
        exits=fraud_checks.EXITS,
    ),
    # -- my standing orders --
    "mine": Step("the payer's running orders", load_mine, {"some": "list", "none": "none"}),
    "list": Screen(
        "running orders, newest last", N_("My standing orders"), items="so_orders", pick=("order", "so_order")
    ),
    "none": Screen("nothing running", N_("You have no standing orders."), end=True),
    "order": Step(
        "one order's details",
        load_order,
        {"active": "active", "paused": "paused", "gone": "gone"},
    ),
    "active": Screen(
        "a running order: pause or cancel",
        "{so_details}",
        options=(Option(N_("Pause"), "pause"), Option(N_("Cancel order"), "cancel_ask")),
    ),
    "paused": Screen(
        "a paused order: resume or cancel",
        "{so_details}",
        options=(Option(N_("Resume"), "resume_ask"), Option(N_("Cancel order"), "cancel_ask")),
    ),
    "pause": Step("pause it", pause, {"ok": "paused_done", "gone": "gone"}),
    "paused_done": Screen("paused", N_("Paused. No payments until you resume it."), end=True),
    # Resuming starts payments again: with the PIN, as setting one up (pausing stops money: no PIN).
    **tail.money_tail(
        resume,
        what="resuming the standing order",
        confirm=N_("Resume the standing order to {so_payee}? Payments start again."),
        ask=N_("Enter your PIN to resume the standing order"),
        done=N_("Resumed. Next payment on {so_next_text}."),
        cancel="kept",
        cancelled=None,
        exits={"ended": "ended", "gone": "gone"},
        names=tail.Names(confirm="resume_ask", pin="resume_pin", submit="resume_submit", done="resumed"),
    ),
    "ended": Screen(
        "its end date passed while paused", N_("Its last date has passed: the order has ended."), end=True
    ),
    **tail.money_tail(
        cancel,
        what="cancelling the standing order",
        confirm=N_("Cancel the standing order to {so_payee}? No more payments will be made."),
        ask=N_("Enter your PIN to cancel the standing order"),
        done=N_("Standing order cancelled. The payee is told by SMS."),
        cancelled=N_("Nothing was changed."),
        exits={"gone": "gone"},
        names=tail.Names(
            confirm="cancel_ask",
            pin="cancel_pin",
            submit="cancel_submit",
            done="cancelled_done",
            cancelled="kept",
        ),
    ),
    "gone": Screen("the order stopped meanwhile", N_("This standing order is no longer running."), end=True),
}
# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["find_person"] = common.mobile_only("so_phone", "person", FLOW["find_person"])


SAMPLE = {
    "so_phone": "+" + "9" * 15,
    "so_most": 999,
    "so_payee_name": "W" * common.SHOWN_NAME_LIMIT,
    # The longest way a payee is shown: a pay bill's name and account, in Kiswahili.
    "so_payee": "W" * common.SHOWN_NAME_LIMIT + " akaunti " + "W" * pay.REFERENCE_LIMIT,
    "so_often_text": "W" * 10,  # "kila mwezi"
    "so_first_text": "31/12/26",
    "so_end_text": "W" * 13,  # "hadi 31/12/26"
    "so_next_text": "31/12/26",
    "so_orders": [["so" + "0" * 22, WIDEST_AMOUNT + " kila mwezi " + "W" * LINE_NAME_LIMIT]] * 12,
    "so_order": "so" + "0" * 22,
    "so_details": "Kwa "
    + "W" * common.SHOWN_NAME_LIMIT
    + " akaunti "
    + "W" * pay.REFERENCE_LIMIT
    + "\n"
    + WIDEST_AMOUNT
    + " kila mwezi\nIjayo: 31/12/26\nMalipo: 999 kati ya 999",
}
