"""A customer's "Request money": up to ``pr.MAX_PAYERS`` (10) numbers, an amount each or a
total split evenly, what it is for, a confirm screen, the customer's PIN. Each payer gets an
SMS and finds the request in My approvals (``request_common.PaymentRequests``); it expires
after ``TUMA_PERSONAL_REQUEST_SECONDS``.

The group id is minted when the confirm screen is reached and kept in the session, so a
repeated final request finds the group already recorded and asks nobody twice. At most
``pr.MAX_PAYERS`` numbers, whichever way the number screen is reached (going back, a resumed
session)."""

from ...extensions import db
from ...money import WIDEST_AMOUNT, widest
from ...payments import payment_requests as pr
from ...payments.submit import mint_request_id
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common, fraud_checks, tail
from . import request_common as shared


def finish(text: str) -> str | None:
    return "#" if text.strip() == "#" else None


def start(ctx) -> str:
    ctx.data["payers"] = []
    ctx.data["payer_next"] = 1
    return "ok"


def add_payer(ctx) -> str:
    payers = ctx.data.setdefault("payers", [])
    if len(payers) >= pr.MAX_PAYERS:  # back at the number screen with the list full
        ctx.data.update(payer_count=len(payers), payer_max=pr.MAX_PAYERS)
        return "too_many"
    outcome = shared.check_payer(ctx)
    if outcome != "ok":
        return outcome
    # Each number asked will show its holder's name in My requests: refuse early, before the
    # customer types the rest, when the look-ups would be refused when recording.
    if not fraud_checks.lookups_allowed(ctx, len(payers) + 1):
        return "throttled"
    payers.append(ctx.data["payer_phone"])
    ctx.data["payer_next"] = len(payers) + 1
    ctx.data["payer_count"] = len(payers)
    return "full" if len(payers) >= pr.MAX_PAYERS else "more"


def finish_payers(ctx) -> str:
    count = len(ctx.data.get("payers") or [])
    ctx.data["payer_count"] = count
    return "ok" if count else "none"


def each(ctx) -> str:
    ctx.data["shares"] = [ctx.data["amount"]] * ctx.data["payer_count"]
    return "ok"


def split_total(ctx) -> str:
    ctx.data["shares"] = pr.split(ctx.data["total"], ctx.data["payer_count"])
    return "ok"


def mint(ctx) -> str:
    shares = ctx.data["shares"]
    first, rest = shares[0], shares[1:]
    if rest and rest[0] != first:
        share = f"{common.money(first)} + {len(rest)} x {common.money(rest[0])}"
    else:
        share = f"{len(shares)} x {common.money(first)}"
    ctx.data.update(
        total_text=common.money(sum(shares)),
        share_text=share,
        expiry_days=-(-pr.lifetime(pr.Kind.PERSONAL) // 86_400),
        group_id=mint_request_id(),
    )
    return "ok"


def record(ctx) -> str:
    """After the PIN: the requests and each payer's SMS are recorded."""
    data = ctx.data
    payers, shares = data.get("payers") or [], data.get("shares") or []
    if not 1 <= len(payers) <= pr.MAX_PAYERS or len(shares) != len(payers):
        # Not reachable through the screens; should a session ever carry such a list, start
        # the numbers again rather than fail.
        start(ctx)
        return "restart"
    if shared.over_cap(ctx, payers):
        return "too_often"
    refused = shared.names_and_invites(ctx, payers)
    if refused:
        return refused
    pr.create(
        db.session,
        ctx.user,
        data["group_id"],
        pr.Kind.PERSONAL,
        list(zip(data["payers"], data["shares"], strict=True)),
        data["reason"],
    )
    return "ok"


FLOW = {
    "start": Step("request money: start afresh", start, {"ok": "number"}),
    "number": Screen(
        "the next payer's number, or # when done",
        N_("Request money\nEnter number {payer_next}, or # to finish"),
        choices=(Choice(finish, "finish"), Choice(common.phone_number, "add", save="payer_phone")),
        otherwise=N_("Not a valid phone number."),
    ),
    "add": Step(
        "add the number (up to 10); refuse yourself, repeats and numbers asked too often",
        add_payer,
        {
            "more": "number",
            "full": "how",
            "too_many": Retry(
                "number", N_("You have entered {payer_max} numbers, the most. Enter # to finish.")
            ),
            "throttled": "fraud.throttled",
            **shared.payer_retries("number"),
        },
    ),
    "finish": Step(
        "at least one number",
        finish_payers,
        {"ok": "how", "none": Retry("number", N_("Enter at least one number."))},
    ),
    "how": Screen(
        "an amount each, or a total to split",
        N_("Numbers entered: {payer_count}"),
        options=(Option(N_("Amount each"), "each"), Option(N_("Total to split evenly"), "total")),
    ),
    "each": Screen(
        "the amount each one owes",
        N_("Enter the amount each person owes"),
        choices=(Choice(common.amount, "each_set", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "each_set": Step("the same amount for everyone", each, {"ok": "reason"}),
    "total": Screen(
        "the total to split evenly",
        N_("Enter the total to split among {payer_count}"),
        choices=(Choice(common.amount, "split", save="total"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "split": Step("split evenly, the remainder on the first", split_total, {"ok": "reason"}),
    "reason": Screen(
        "what the money is for",
        N_("What is it for? (up to 20 characters)"),
        choices=(Choice(shared.reason, "mint", save="reason"),),
        otherwise=shared.BAD_REASON,
    ),
    "mint": Step("show the shares and mint the group's id", mint, {"ok": "confirm"}),
    **tail.money_tail(
        record,
        what="the requests",
        confirm=N_("Request {total_text} for {reason}: {share_text}. Expires in {expiry_days} days."),
        ask=N_("Enter your PIN to send the requests"),
        done=N_("Requests sent: {payer_count}. You will get an SMS as each one pays or declines."),
        cancelled=shared.CANCELLED,
        exits={"restart": Retry("number", N_("Please enter the numbers again.")), **shared.SUBMIT_EXITS},
    ),
    **shared.endings(),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["add"] = common.mobile_only("payer_phone", "number", FLOW["add"])

SAMPLE = {
    **shared.SAMPLE,
    "payer_next": 10,
    "payer_count": 10,
    "payer_max": 10,
    "payers": ["+" + "9" * 15] * 10,
    "total": 1_000_000_000,
    "shares": [100_000_000] * 10,
    "total_text": WIDEST_AMOUNT,
    "share_text": widest(1_000_000_01) + " + 9 x " + widest(1_000_000_00),
    "expiry_days": 99,
}
