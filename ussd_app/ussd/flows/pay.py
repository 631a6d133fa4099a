"""Pay a merchant: Buy goods (a till number) or Pay bill (a business number and an account
reference). The merchant's registered name is shown before the PIN; paying is free for the
customer. The merchant gets an SMS with the payer's name, number, amount and code."""

import re

from flask import current_app

from ...events import validation
from ...extensions import db
from ...payments.models import RequestKind
from ...payments.submit import mint_request_id
from ...tariffs import payee_fee, quote
from ...users import BusinessKind, find_business
from ..engine import N_, Choice, Option, Retry, Screen, Step
from ..pin_guard import is_operator_locked
from . import common, fraud_checks, tail

REFERENCE_LIMIT = 20
_NUMBER = re.compile(r"\d{5,7}")
_REFERENCE = re.compile(r"[A-Za-z0-9\-]{1,20}")


def business_number(text: str) -> str | None:
    text = text.strip()
    return text if text.isascii() and _NUMBER.fullmatch(text) else None


def account_reference(text: str) -> str | None:
    text = text.strip().upper()
    return text if text.isascii() and _REFERENCE.fullmatch(text) else None


def _find(ctx, kind: BusinessKind) -> str:
    merchant = find_business(db.session, ctx.data["business_number"], kind)
    if merchant is None:
        return "unknown"
    if merchant.account_id == ctx.user.account_id:
        return "self"
    if is_operator_locked(merchant):  # the worker refuses it too, whenever it was recorded
        return "locked"
    ctx.data.update(
        merchant_name=common.shown_name(merchant), merchant_account=merchant.account_id, pay_kind=kind.value
    )
    return "ok"


def find_till(ctx) -> str:
    return _find(ctx, BusinessKind.TILL)


def find_paybill(ctx) -> str:
    return _find(ctx, BusinessKind.PAYBILL)


def check_account(ctx) -> str:
    """Pay bill: a merchant that set a validation URL is asked whether it takes this account
    reference and amount (``events/validation.py``: 2 s, then the configured default). The
    hop's database transaction is ended first: nothing is held open while its server answers
    (on SQLite a transaction holds the write lock), and nothing has been written yet."""
    asked = validation.question(
        db.session,
        ctx.data["merchant_account"],
        business_number=ctx.data["business_number"],
        reference=ctx.data["account_reference"],
        amount=ctx.data["amount"],
        payer_phone=ctx.phone,
    )
    if asked is None:
        return "ok"
    db.session.commit()
    return "ok" if validation.ask(asked) == validation.ACCEPT else "refused"


def quote_payment(ctx) -> str:
    kind = RequestKind.BUY_GOODS if ctx.data["pay_kind"] == BusinessKind.TILL else RequestKind.PAY_BILL
    fee = quote(kind.value, ctx.data["amount"])
    ctx.data.update(
        request_kind=kind.value,
        fee=fee,
        # The merchant's share, quoted now (the tariff in force when the payer confirms).
        payee_fee=payee_fee(kind.value, ctx.data["amount"]),
        amount_text=common.money(ctx.data["amount"]),
        fee_text=common.money(fee),
        transfer_id=mint_request_id(),
    )
    return ctx.data["pay_kind"]


def choose_protection(ctx) -> str:
    """Buy goods with protection: the money is held for the merchant until the buyer confirms
    delivery (or the hold falls due); the buyer may dispute instead (payments/holds.py)."""
    ctx.data["request_kind"] = RequestKind.PROTECTED_PURCHASE.value
    return "ok"


def record(ctx) -> str:
    """After the PIN: the SIM-swap gate, then the payment (held, when protected) is recorded."""
    protected = ctx.data["request_kind"] == RequestKind.PROTECTED_PURCHASE.value
    hold = {"hold_seconds": current_app.config["PROTECTED_HOLD_SECONDS"]} if protected else {}
    return fraud_checks.guarded(
        lambda c: common.record_payment(
            c,
            kind=c.data["request_kind"],
            debit_account_id=common.payer_account_id(c),
            credit_account_id=c.data["merchant_account"],
            reference=c.data.get("account_reference"),
            payee_fee=c.data.get("payee_fee", 0),
            **hold,
        )
    )(ctx)


_AMOUNT = dict(
    choices=(Choice(common.amount, "quote", save="amount"),),
    otherwise=N_("Enter a whole amount, like 500."),
)

FLOW = {
    "till": Screen(
        "the merchant's till number",
        N_("Buy goods\nEnter till number"),
        choices=(Choice(business_number, "find_till", save="business_number"),),
        otherwise=N_("A till number is 5 to 7 digits."),
    ),
    "find_till": Step(
        "look up the till",
        find_till,
        {
            "ok": "till_amount",
            "unknown": Retry("till", N_("Till {business_number} is not on Tuma.")),
            "self": Retry("till", N_("You cannot pay yourself.")),
            "locked": Retry("till", N_("This business cannot take payments now.")),
        },
    ),
    "till_amount": Screen("the amount to pay", N_("Pay {merchant_name}\nEnter amount"), **_AMOUNT),
    "paybill": Screen(
        "the business number",
        N_("Pay bill\nEnter business number"),
        choices=(Choice(business_number, "find_paybill", save="business_number"),),
        otherwise=N_("A business number is 5 to 7 digits."),
    ),
    "find_paybill": Step(
        "look up the pay-bill number",
        find_paybill,
        {
            "ok": "reference",
            "unknown": Retry("paybill", N_("Business number {business_number} is not on Tuma.")),
            "self": Retry("paybill", N_("You cannot pay yourself.")),
            "locked": Retry("paybill", N_("This business cannot take payments now.")),
        },
    ),
    "reference": Screen(
        "the account the payment is for, at the business",
        N_("Pay {merchant_name}\nEnter account number"),
        choices=(Choice(account_reference, "bill_amount", save="account_reference"),),
        otherwise=N_("Use up to 20 letters or digits."),
    ),
    "bill_amount": Screen(
        "the amount to pay",
        N_("Account {account_reference}\nEnter amount"),
        choices=(Choice(common.amount, "check_account", save="amount"),),
        otherwise=_AMOUNT["otherwise"],
    ),
    "check_account": Step(
        "ask the business whether it takes this account (its validation URL, if it set one)",
        check_account,
        {
            "ok": "quote",
            "refused": Retry("reference", N_("{merchant_name} does not accept account {account_reference}.")),
        },
    ),
    "quote": Step(
        "quote the fee (none) and mint the transfer id",
        quote_payment,
        {"till": "till_confirm", "paybill": "confirm"},
    ),
    "till_confirm": tail.confirm_screen(
        "merchant, amount and fee; or pay with protection (held until delivery)",
        N_("Pay {amount_text} to {merchant_name} ({business_number})?\nFee: {fee_text}"),
        resume=N_("Continue paying {amount_text} to {merchant_name}?"),
        more=(Option(N_("Pay with protection"), "protect"),),
    ),
    "protect": Step("hold the payment until delivery", choose_protection, {"ok": "protected_pin"}),
    **tail.money_tail(
        record,
        what="the protected payment",
        ask=N_("Enter your PIN to pay {amount_text} to {merchant_name} with protection"),
        done=N_("Paying {amount_text} to {merchant_name}, held until you confirm delivery in My approvals."),
        cancelled=None,  # the plain payment's, below
        exits={"short": "short", **fraud_checks.EXITS},
        names=tail.Names(pin="protected_pin", submit="submit_protected", done="protected_done"),
    ),
    **tail.money_tail(
        record,
        what="the payment",
        confirm=N_(
            "Pay {amount_text} to {merchant_name} ({business_number}) for account {account_reference}?\nFee: {fee_text}"  # noqa: E501
        ),
        resume=N_("Continue paying {amount_text} to {merchant_name} for account {account_reference}?"),
        ask=N_("Enter your PIN to pay {amount_text} to {merchant_name}"),
        done=N_("Paying {amount_text} to {merchant_name}. You will receive an SMS confirmation shortly."),
        short=N_("Not enough money to pay {amount_text}. Your balance is {balance_text}."),
        exits=fraud_checks.EXITS,
    ),
}
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(
    FLOW["quote"],
    {"till": "till_amount", "paybill": "bill_amount"},
    kind=lambda ctx: ctx.data["request_kind"],
)


SAMPLE = {
    "business_number": "9" * 7,
    "merchant_name": "W" * common.SHOWN_NAME_LIMIT,
    "merchant_account": 1,
    "pay_kind": "till",
    "request_kind": "buy_goods",
    "account_reference": "W" * REFERENCE_LIMIT,
}
