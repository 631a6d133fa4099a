"""Send money to another customer: number, amount, confirm (name, amount, fee), PIN.

The transfer id is minted when the confirm screen is reached and kept in the session, so the
request recorded after the PIN always carries it: a repeated or resumed final request finds
the one already recorded and nothing is sent twice.
"""

from flask import current_app

from ...extensions import db
from ...money import WIDEST_AMOUNT, widest
from ...payments.holds import suspense_account_id
from ...payments.models import RequestKind, TransferRequest
from ...payments.submit import ConflictingRequest, mint_request_id, record_request_row
from ...tariffs import quote
from ...users import Role, holder_by_phone
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common, fraud_checks, tail


def find_recipient(ctx) -> str:
    phone = ctx.data["recipient_phone"]
    if phone == ctx.phone:  # the caller's own number (ctx.phone is the holder's, in E.164)
        return "self"
    # Every look-up tells the caller whether a number is on Tuma and whose it is: counted,
    # and refused while the number is slowed down for harvesting names (fraud_checks). The
    # row is read first (nothing of it is shown when refused), so that a name about to be
    # shown is counted as a cancel in the same atomic step as the look-up (``shows``: a
    # cancel until the send is recorded, however the flow is left).
    recipient = holder_by_phone(db.session, phone)
    shows = recipient is not None and recipient.role == Role.CUSTOMER.value
    if not fraud_checks.lookup_allowed(ctx, shows=phone if shows else None):
        return "throttled"
    ctx.data.pop("unregistered", None)
    if recipient is None:
        if not fraud_checks.invites_left(ctx):  # the money would wait for an invitation
            return "invites"
        days = current_app.config["SUSPENSE_HOLD_SECONDS"] // 86_400
        ctx.data.update(recipient_name=phone, hold_days=days)
        return "unknown"
    if not shows:
        return "not_customer"
    ctx.data["recipient_name"] = common.shown_name(recipient)
    ctx.data["recipient_account"] = recipient.account_id
    return "ok"


def send_unregistered(ctx) -> str:
    """The sender chose to send to a number that is not on Tuma: it is held in suspense."""
    ctx.data["unregistered"] = True
    return "ok"


def quote_and_mint(ctx) -> str:
    amount = ctx.data["amount"]
    fee = quote(RequestKind.SEND.value, amount)
    ctx.data.update(
        fee=fee,
        amount_text=common.money(amount),
        fee_text=common.money(fee),
        transfer_id=mint_request_id(),
        # A number not on Tuma has no name: the confirm screen shows the number once.
        recipient_shown=(
            ctx.data["recipient_phone"]
            if ctx.data.get("unregistered")
            else f"{ctx.data['recipient_name']} {ctx.data['recipient_phone']}"
        ),
    )
    return "ok"


def cancel_at_name(ctx) -> str:
    if not ctx.data.get("unregistered"):  # a registered name was on the screen
        fraud_checks.note_cancel(ctx)
    return "ok"


def send(ctx) -> str:
    """After the PIN: the SIM-swap gate, the balance, then the request is recorded."""
    refused = fraud_checks.sim_swap_gate(ctx)  # after the PIN, before recording: see there
    if refused:
        return refused
    data = ctx.data
    if not data.get("unregistered"):
        # The balance checked and the request recorded (one statement on PostgreSQL).
        outcome = common.record_payment(
            ctx,
            kind=RequestKind.SEND.value,
            debit_account_id=common.payer_account_id(ctx),
            credit_account_id=data["recipient_account"],
        )
        if outcome == "ok":
            fraud_checks.name_used(ctx, data["transfer_id"])
        return outcome
    # To a number not on Tuma: an invitation is counted between the balance and the record
    # (never for a short balance, nor for a replay), so these stay two statements.
    spendable = common.available(ctx)
    if spendable < data["amount"] + data["fee"] and not common.replayed(ctx):
        data["balance_text"] = common.spendable_text(spendable)
        return "short"
    invite = db.session.get(TransferRequest, data["transfer_id"]) is None
    if invite and not fraud_checks.invites_allowed(ctx, 1):
        return "invites"
    try:
        # Held in suspense until the number registers, refunded when it falls due (holds.py).
        record_request_row(
            db.session,
            request_id=data["transfer_id"],
            kind=RequestKind.SEND_UNREGISTERED.value,
            debit_account_id=common.payer_account_id(ctx),
            credit_account_id=suspense_account_id(db.session),
            amount=data["amount"],
            fee=data["fee"],
            reference=data["recipient_phone"],
            hold_seconds=current_app.config["SUSPENSE_HOLD_SECONDS"],
        )
    except ConflictingRequest:
        fraud_checks.give_back_invites(ctx, int(invite))
        return "error"
    return "ok"


FLOW = {
    "recipient": Screen(
        "the recipient's phone number",
        N_("Send money\nEnter the recipient's phone number"),
        choices=(Choice(common.phone_number, "find", save="recipient_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "find": Step(
        "look up the recipient; refuse yourself and numbers without a customer account",
        find_recipient,
        {
            "ok": "amount",
            "self": Retry("recipient", N_("You cannot send money to yourself.")),
            "unknown": "unregistered",
            "not_customer": Retry("recipient", N_("{recipient_phone} cannot receive money here.")),
            "throttled": "fraud.throttled",
            "invites": "fraud.invites",
        },
    ),
    "unregistered": Screen(
        "the number is not on Tuma: offer to hold the money for them",
        N_(
            "{recipient_phone} is not on Tuma. Send anyway? They get an SMS to register; if not in {hold_days} days it comes back."  # noqa: E501
        ),
        options=(Option(N_("Send anyway"), "send_unregistered"), Option(N_("Cancel"), "cancelled")),
    ),
    "send_unregistered": Step("remember to hold it in suspense", send_unregistered, {"ok": "amount"}),
    "amount": Screen(
        "the amount to send",
        N_("Send to {recipient_name}\nEnter amount"),
        choices=(Choice(common.amount, "quote", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
        resume=N_("Continue sending money to {recipient_name}?"),
    ),
    "quote": Step("quote the fee and mint the transfer id", quote_and_mint, {"ok": "confirm"}),
    "cancel_at_name": Step(
        "count a cancel at the screen that showed a name (name harvesting, fraud_checks)",
        cancel_at_name,
        {"ok": "cancelled"},
    ),
    **tail.money_tail(
        send,
        what="the transfer",
        confirm=N_("Send {amount_text} to {recipient_shown}?\nFee: {fee_text}"),
        resume=N_("Continue sending {amount_text} to {recipient_name}?"),
        cancel="cancel_at_name",
        ask=N_("Enter your PIN to send {amount_text} to {recipient_name}"),
        done=N_("Sending {amount_text} to {recipient_name}. You will receive an SMS confirmation shortly."),
        short=N_(
            "Not enough money to send {amount_text} plus fee {fee_text}. Your balance is {balance_text}."
        ),
        exits={"invites": "fraud.invites", **fraud_checks.EXITS},
    ),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["find"] = common.mobile_only("recipient_phone", "recipient", FLOW["find"])
# Limits said before the PIN, not after it (issue 15 item 16).
FLOW["quote"] = common.within_limits(FLOW["quote"], "amount", kind="send")


SAMPLE = {
    "recipient_phone": "+" + "9" * 15,  # E.164 allows up to 15 digits
    "recipient_name": "W" * common.SHOWN_NAME_LIMIT,
    "recipient_shown": "W" * common.SHOWN_NAME_LIMIT + " +" + "9" * 15,
    "recipient_account": 1,
    "amount": 1_000_000_000,
    "fee": 10_800,
    "amount_text": WIDEST_AMOUNT,
    "fee_text": widest(lambda p: p.send_bands[-1][1]),
    "balance_text": WIDEST_AMOUNT,
    "transfer_id": "0" * 32,
    "hold_days": 30,
}
