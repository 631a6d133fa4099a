"""A merchant's "Request payment": one customer's number, the amount, what it is for, a
confirm screen, the merchant's PIN. The customer gets an SMS and finds the request in My
approvals (``request_common.PaymentRequests``); it expires after
``TUMA_MERCHANT_REQUEST_SECONDS``.

The request's id is minted when the confirm screen is reached and kept in the session, so a
repeated final request finds it already recorded and asks nobody twice."""

from ...extensions import db
from ...payments import payment_requests as pr
from ...payments.submit import mint_request_id
from ..engine import N_, Choice, Screen, Step
from . import common, tail
from . import request_common as shared


def start(ctx) -> str:
    ctx.data.pop("payers", None)
    return "ok"


def mint(ctx) -> str:
    ctx.data.update(
        amount_text=common.money(ctx.data["amount"]),
        expiry_hours=-(-pr.lifetime(pr.Kind.MERCHANT) // 3600),
        group_id=mint_request_id(),
    )
    return "ok"


def record(ctx) -> str:
    """After the PIN: the request and the customer's SMS are recorded."""
    data = ctx.data
    if shared.over_cap(ctx, [data["payer_phone"]]):
        return "too_often"
    refused = shared.names_and_invites(ctx, [data["payer_phone"]])
    if refused:
        return refused
    pr.create(
        db.session,
        ctx.user,
        data["group_id"],
        pr.Kind.MERCHANT,
        [(data["payer_phone"], data["amount"])],
        data["reason"],
    )
    return "ok"


FLOW = {
    "start": Step("a merchant's request: start afresh", start, {"ok": "phone"}),
    "phone": Screen(
        "the customer's phone number",
        N_("Request payment\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "check", save="payer_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "check": Step(
        "refuse yourself and numbers asked too often today",
        shared.check_payer,
        {"ok": "amount", **shared.payer_retries("phone")},
    ),
    "amount": Screen(
        "the amount to ask for",
        N_("Request from {payer_phone}\nEnter amount"),
        choices=(Choice(common.amount, "reason", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "reason": Screen(
        "what the payment is for",
        N_("What is it for? (up to 20 characters)"),
        choices=(Choice(shared.reason, "mint", save="reason"),),
        otherwise=shared.BAD_REASON,
    ),
    "mint": Step("mint the request's id", mint, {"ok": "confirm"}),
    **tail.money_tail(
        record,
        what="the request",
        confirm=N_(
            "Ask {payer_phone} to pay {amount_text} for {reason}? It expires in {expiry_hours} hours."
        ),
        ask=N_("Enter your PIN to send the request"),
        done=N_("Request sent to {payer_phone}. You will get an SMS when they pay or decline."),
        cancelled=shared.CANCELLED,
        exits=shared.SUBMIT_EXITS,
    ),
    **shared.endings(),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["check"] = common.mobile_only("payer_phone", "phone", FLOW["check"])

SAMPLE = {**shared.SAMPLE, "expiry_hours": 999}
