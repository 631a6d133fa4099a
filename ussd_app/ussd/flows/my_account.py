"""My account: balance and mini statement (after the PIN), change PIN, language."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import or_, select

from ... import country, notices, pins
from ...extensions import db
from ...i18n import t
from ...ledger.models import Transfer
from ...money import WIDEST_AMOUNT, widest
from ...payments import kinds
from ...payments.models import HoldState, RequestKind, RequestStatus, TransferRequest
from ...phones import masked
from ...users import holders
from .. import gsm7
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common
from .registration import EASY_PIN

STATEMENT_SIZE = 5


def show_balance(ctx) -> str:
    ctx.data["balance_text"] = common.money(common.wallet(ctx).available)
    return "ok"


def statement_lines(session, user, lang: str) -> list[str]:
    """The last movements of ``user``'s available balance, newest first, one short line each:
    "21/11 JX4K2M9QPA -KES 1,000.00 Juma Otieno" (fees are counted in the amount).

    A hold (payments/holds.py) is one line: its payer's money left when it was held, so the
    line stays where the hold is, "(held)" while it is, and names who finally got it; the
    posting that resolves it is not a second debit. What came back (a void, or the part a
    balance limit returned) is a "+" line "(returned)". Its payee sees "(held)" while it is
    held, then the posting's line; a void moved nothing of theirs and has no line."""
    account_id = user.account_id
    rows = session.execute(
        select(Transfer.user_data, Transfer.created_at)
        .where(or_(Transfer.debit_account_id == account_id, Transfer.credit_account_id == account_id))
        .where(Transfer.user_data.is_not(None))
        .order_by(Transfer.created_at.desc(), Transfer.id.desc())
        .limit(STATEMENT_SIZE * 8)
    ).all()
    newest: dict[str, int] = {}
    for request_id, created_at in rows:
        newest.setdefault(request_id, created_at)
    requests = {
        r.id: r
        for r in session.execute(
            select(TransferRequest).where(TransferRequest.id.in_(list(newest)))
        ).scalars()
    }
    # Each hold and the (one, posted) request that resolved it, whichever of them is listed.
    hold_ids = {r.pending_request_id for r in requests.values() if r.pending_request_id} | {
        r.id for r in requests.values() if r.hold_state is not None
    }
    holds = {
        r.id: r
        for r in session.execute(select(TransferRequest).where(TransferRequest.id.in_(hold_ids))).scalars()
    }
    resolved = {
        r.pending_request_id: r
        for r in session.execute(
            select(TransferRequest).where(
                TransferRequest.pending_request_id.in_(hold_ids),
                TransferRequest.status == RequestStatus.ACCEPTED.value,
            )
        ).scalars()
    }
    everyone = [*requests.values(), *holds.values(), *resolved.values()]
    others = {r.debit_account_id for r in everyone} | {r.credit_account_id for r in everyone}
    people = holders(session, others)
    tz = ZoneInfo(current_app.config["TIMEZONE"])

    def name(request, account: int) -> str:
        other = people.get(account)
        if other is not None and account == request.credit_account_id and not request.payee_named:
            return masked(other.phone)  # a payout whose name look-up was not granted (api/payouts.py)
        if other is not None:
            return gsm7.shorten(other.name, 16)
        if request.kind in NUMBER_KINDS and request.reference:  # the number topped up or invited
            return request.reference
        return t(lang, "Tuma")

    lines = []
    for request_id in newest:
        request = requests.get(request_id)  # nosec B113  # a dict of transfer requests, not HTTP
        if request is None:
            continue
        line = _line(request, account_id, holds, resolved, name)
        if line is None:
            continue
        sign, amount, who, marker = line
        when = datetime.fromtimestamp(newest[request_id] / 1_000_000, UTC).astimezone(tz)
        suffix = " " + t(lang, marker) if marker else ""
        lines.append(f"{when:%d/%m} {request.code} {sign}{common.money(amount)} {who}{suffix}")
        if len(lines) == STATEMENT_SIZE:
            break
    return lines


# Holds whose payee is a house account: the line names the number instead.
NUMBER_KINDS = frozenset({RequestKind.SEND_UNREGISTERED.value, RequestKind.AIRTIME.value})
# Every kind that posts a hold (the kinds table's), so a hold posted in part, as an allowance's
# settlement is, shows only what came back as returned.
POSTING_KINDS = kinds.POSTING_KINDS
STILL_PENDING = (HoldState.PENDING.value, HoldState.DISPUTED.value, HoldState.SENDING.value)


def _line(request, account_id: int, holds: dict, resolved: dict, name):
    """(sign, amount, who, marker) of ``request``'s line for ``account_id``, or None."""
    if request.hold_state is not None:  # a hold
        resolution = resolved.get(request.id)
        if request.debit_account_id == account_id:
            # What left, once; named after who finally got it (a newcomer, for a send held
            # for their number).
            payee = request.credit_account_id
            if resolution is not None and resolution.kind in POSTING_KINDS and resolution.amount:
                payee = resolution.credit_account_id
            marker = N_("(held)") if request.hold_state in STILL_PENDING else None
            return "-", request.amount + request.fee, name(request, payee), marker
        if request.hold_state in STILL_PENDING:  # its payee: not theirs yet
            return "+", request.amount, name(request, request.debit_account_id), N_("(held)")
        return None  # resolved: the resolution's line says what arrived, if anything
    hold = holds.get(request.pending_request_id) if request.pending_request_id else None
    if hold is not None:  # a post or void of a hold
        posted = request.amount if request.kind in POSTING_KINDS else 0
        if hold.debit_account_id == account_id:  # the hold's payer: only what came back
            back = hold.amount - posted
            if back <= 0:
                return None
            payee = request.credit_account_id if posted else hold.credit_account_id
            return "+", back, name(hold, payee), N_("(returned)")
        if hold.credit_account_id == account_id and not posted:
            return None  # a void of a hold for this payee: nothing of theirs moved
    outgoing = request.debit_account_id == account_id
    # The payer's fee adds to what went out; a merchant's own fee comes off what came in.
    amount = request.amount + request.fee if outgoing else request.amount - (request.payee_fee or 0)
    return (
        ("-" if outgoing else "+"),
        amount,
        name(request, request.credit_account_id if outgoing else request.debit_account_id),
        None,
    )


def mini_statement(ctx) -> str:
    lines = statement_lines(db.session, ctx.user, ctx.lang)
    if not lines:
        ctx.data["statement_text"] = t(ctx.lang, "No transactions yet.")
        return "ok"
    notices.mini_statement(db.session, ctx.user, ctx.lang, lines)
    # The screen shows as many lines as fit; the SMS carries them all.
    footer = t(ctx.lang, "Full statement sent by SMS.")
    shown: list[str] = []
    for line in lines:
        if not gsm7.fits("\n".join([*shown, line, footer])):
            break
        shown.append(line)
    ctx.data["statement_text"] = "\n".join([*shown, footer])
    return "ok"


def hold_new_pin(ctx) -> str:
    """Keep a hash of the new PIN (never the PIN) until it is typed again."""
    if pins.verify_pin(ctx.user.pin_hash, ctx.secret):
        return "same"
    if pins.is_easy(ctx.secret, ctx.phone):
        return "easy"
    ctx.data["_new_pin_hash"] = pins.hash_pin(ctx.secret)
    return "ok"


def save_new_pin(ctx) -> str:
    held = ctx.data.pop("_new_pin_hash", None)
    if not held or not pins.verify_pin(held, ctx.secret):
        return "mismatch"
    ctx.user.pin_hash = held
    notices.pin_changed(db.session, ctx.user)
    return "ok"


def offer_languages(ctx) -> str:
    """The language menu of the country's languages (one only: nothing else is offered)."""
    ctx.data["language_menu"] = country.language_menu()
    return "ok"


def set_language(ctx) -> str:
    ctx.user.language = ctx.data.pop("new_language")
    ctx.lang = ctx.user.language
    return "ok"


FLOW = {
    "menu": Screen(
        "my account menu",
        N_("My account"),
        resume=N_("Continue in My account?"),
        options=(
            Option(N_("Balance"), "balance_pin"),
            Option(N_("Mini statement"), "statement_pin"),
            Option(N_("Change PIN"), "old_pin"),
            Option(N_("Language"), "offer_languages"),
            Option(N_("Reverse a transaction"), "reversal.code"),
        ),
    ),
    "balance_pin": Screen(
        "PIN before the balance",
        N_("Enter your PIN to see your balance"),
        choices=(Choice(common.pin_format, "check_balance_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_balance_pin": common.pin_step("show_balance", "balance_pin"),
    "show_balance": Step("read the wallet's available balance", show_balance, {"ok": "balance"}),
    "balance": Screen("the balance", N_("Your balance is {balance_text}."), end=True),
    "statement_pin": Screen(
        "PIN before the mini statement",
        N_("Enter your PIN to see your mini statement"),
        choices=(Choice(common.pin_format, "check_statement_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_statement_pin": common.pin_step("make_statement", "statement_pin"),
    "make_statement": Step(
        "the last 5 transactions, on screen and by SMS", mini_statement, {"ok": "statement"}
    ),
    "statement": Screen("the mini statement", "{statement_text}", end=True),
    "old_pin": Screen(
        "the current PIN, before changing it",
        N_("Change PIN\nEnter your current PIN"),
        choices=(Choice(common.pin_format, "check_old_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "check_old_pin": common.pin_step("new_pin", "old_pin"),
    "new_pin": Screen(
        "the new PIN",
        N_("Enter your new 4-digit PIN"),
        choices=(Choice(common.pin_format, "hold_new_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "hold_new_pin": Step(
        "keep a hash of the new PIN until it is confirmed",
        hold_new_pin,
        {
            "ok": "confirm_pin",
            "same": Retry("new_pin", N_("The new PIN must differ from the old one.")),
            "easy": Retry("new_pin", EASY_PIN),
        },
    ),
    "confirm_pin": Screen(
        "the new PIN again",
        N_("Enter your new PIN again"),
        choices=(Choice(common.pin_format, "save_new_pin"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "save_new_pin": Step(
        "set the new PIN if both entries match",
        save_new_pin,
        {"ok": "pin_changed", "mismatch": Retry("new_pin", N_("The PINs did not match. Try again."))},
    ),
    "pin_changed": Screen("the PIN was changed", N_("Your PIN has been changed."), end=True),
    "offer_languages": Step("the country's languages, numbered", offer_languages, {"ok": "language"}),
    "language": Screen(
        "choose the language of menus and SMS",
        N_("Choose language\n{language_menu}"),
        choices=(Choice(common.language, "set_language", save="new_language"),),
    ),
    "set_language": Step("store the chosen language", set_language, {"ok": "language_set"}),
    "language_set": Screen("the language was set", N_("Language set to English."), end=True),
}

SAMPLE = {
    "language_menu": "1. English\n2. Kiswahili",
    "balance_text": WIDEST_AMOUNT,
    "statement_text": "\n".join(["21/11 JX4K2M9QPA -" + widest(10_000_108_00) + " " + "W" * 14 + ".."] * 2)
    + "\nFull statement sent by SMS.",
}
