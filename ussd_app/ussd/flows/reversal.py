"""Reverse a transaction (My account): the sender types the code of a send made by mistake,
sees who received it, and confirms with their PIN; the recipient's funds for it are held and
the recipient is asked in My approvals (``payments/reversals.py``).

Its My approvals provider (``ReversalApprovals``) is registered by ``flows.init_app``; the
back office's decision source for reversals is wired by the back office itself
(``admin/decisions.py``).
"""

from datetime import UTC
from zoneinfo import ZoneInfo

from flask import current_app

from ...extensions import db
from ...i18n import t
from ...payments import holds, reversals
from ...payments.models import RequestKind, typed_code
from ...payments.submit import mint_request_id
from ...users import find_by_account
from .. import approvals
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common


def transaction_code(text: str) -> str | None:
    return typed_code(text)  # 0, 1 and 8 typed for O, I and B are read as those letters


def _explain(ctx, found) -> None:
    if found is None:
        return
    ctx.data["amount_text"] = common.money(found.send.amount)
    if found.recipient is not None:
        ctx.data.update(
            recipient_name=common.shown_name(found.recipient), recipient_phone=found.recipient.phone
        )
    when = found.send.executed_at or found.send.created_at
    local = when.replace(tzinfo=UTC).astimezone(ZoneInfo(current_app.config["TIMEZONE"]))
    ctx.data["sent_date"] = local.strftime("%d/%m %H:%M")
    ctx.data["window_hours"] = current_app.config["REVERSAL_WINDOW_SECONDS"] // 3600


def find(ctx) -> str:
    outcome, found = reversals.check(db.session, ctx.user, ctx.data["reverse_code"])
    _explain(ctx, found)
    if outcome == "ok":
        ctx.data["reversal_id"] = mint_request_id()
    return outcome


def submit(ctx) -> str:
    def run(c) -> str:
        outcome, _ = reversals.start(db.session, c.user, c.data["reverse_code"], c.data["reversal_id"])
        return outcome  # the hold, once committed, is announced to the workers (queues.py)

    return common.pin_then(ctx, run)


_REFUSALS = {
    reversals.UNKNOWN: Retry("code", N_("{reverse_code} is not a transaction you sent.")),
    reversals.NOT_SEND: "not_send",
    reversals.LATE: "late",
    reversals.OPEN_ALREADY: "open",
    reversals.DECIDED: "decided",
    reversals.SHORT: "short",
}

FLOW = {
    "code": Screen(
        "the code of the transaction to reverse",
        N_("Reverse a transaction\nEnter the transaction code from the SMS"),
        choices=(Choice(transaction_code, "find", save="reverse_code"),),
        otherwise=N_("A transaction code has 10 letters and digits."),
    ),
    "find": Step("find the send and check it may be reversed now", find, {"ok": "confirm", **_REFUSALS}),
    "confirm": Screen(
        "confirm the send to reverse",
        N_(
            "Reverse {amount_text} sent to {recipient_name} {recipient_phone} on {sent_date}? They must agree."  # noqa: E501
        ),
        options=(Option(N_("Confirm"), "pin"), Option(N_("Cancel"), "cancelled")),
    ),
    "pin": Screen(
        "the PIN that asks for the reversal",
        N_("Enter your PIN to reverse {reverse_code}"),
        choices=(Choice(common.pin_format, "submit"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "submit": Step(
        "check the PIN, then record the hold of the recipient's funds",
        submit,
        common.pin_exits("pin", ok="done", **{k: v for k, v in _REFUSALS.items() if k != reversals.UNKNOWN}),
    ),
    "done": Screen(
        "the reversal is asked for",
        N_("Reversal of {reverse_code} requested. {recipient_name} is asked to agree. You will get an SMS."),
        end=True,
    ),
    "not_send": Screen(
        "only a send to a person can be reversed",
        N_("{reverse_code} cannot be reversed here. Only money sent to a person can be."),
        end=True,
    ),
    "late": Screen(
        "the send is older than the window",
        N_(
            "{reverse_code} is more than {window_hours} hours old and cannot be reversed here. Call customer care."  # noqa: E501
        ),
        end=True,
    ),
    "open": Screen(
        "a reversal of it is open",
        N_("A reversal of {reverse_code} is already waiting for {recipient_name}."),
        end=True,
    ),
    "decided": Screen(
        "a reversal of it was decided", N_("A reversal of {reverse_code} was already decided."), end=True
    ),
    "short": Screen(
        "the recipient no longer has the money",
        N_(
            "{recipient_name} no longer has the {amount_text} you sent, so it cannot be reversed. Call customer care."  # noqa: E501
        ),
        end=True,
    ),
    "cancelled": Screen("the sender cancelled", N_("Cancelled. Nothing was sent."), end=True),
}

SAMPLE = {
    "reverse_code": "W" * 10,
    "recipient_name": "W" * common.SHOWN_NAME_LIMIT,
    "recipient_phone": "+" + "9" * 15,
    "sent_date": "21/11 23:59",
    "window_hours": 24,
    "reversal_id": "x",
}


class ReversalApprovals:
    """My approvals: a sender asks this customer to return money sent by mistake."""

    name = "reversal"

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        found = []
        for hold in holds.pending_holds(session, RequestKind.REVERSAL, debit_account_id=user.account_id):
            sender = find_by_account(session, hold.credit_account_id)
            summary = t(
                user.language,
                N_("{code}: return {amount} to {name}"),
                amount=common.money(hold.amount),
                name=sender.name if sender else "",
                code=hold.reference,
            )
            found.append(approvals.PendingApproval(hold.id, summary, spends=hold.amount))
        return found

    def _decide(self, session, user, key: str, agree: bool) -> bool:
        hold = reversals.owned_hold(session, user, key)
        return hold is not None and reversals.decide(session, hold, agree=agree) is not None

    def approve(self, session, user, key: str) -> bool:
        return self._decide(session, user, key, True)

    def decline(self, session, user, key: str) -> bool:
        return self._decide(session, user, key, False)
