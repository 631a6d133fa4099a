"""My approvals: what other modules left waiting for this customer's PIN (payment requests,
agent-started withdrawals, reversal requests), approved or declined after the PIN. The
providers live in ``ussd_app.ussd.approvals``; this flow only lists and asks."""

from ...extensions import db
from ...i18n import t
from .. import approvals, gsm7
from ..engine import N_, Option, Retry, Screen, Step
from . import common, fraud_checks, tail

SUMMARY_LIMIT = 60  # septets of one line in the list


def load(ctx) -> str:
    items = approvals.pending_for(db.session, ctx.user)
    ctx.data["approvals"] = [[ref, gsm7.shorten(item.summary, SUMMARY_LIMIT)] for ref, item in items]
    # What approving each would move out of this wallet, for the SIM-swap gate.
    ctx.data["approval_spends"] = {ref: item.spends for ref, item in items}
    # What each priced line was priced at (a payment request's fee): approving charges that,
    # not the tariff in force after the PIN (prices shown before the PIN are what is charged).
    ctx.data["approval_quotes"] = {ref: item.quote for ref, item in items if item.quote is not None}
    # The item screens that say more than their line of the list (approvals.PendingApproval).
    ctx.data["approval_details"] = {
        ref: gsm7.shorten(item.details, approvals.DETAILS_LIMIT) for ref, item in items if item.details
    }
    return "some" if items else "none"


def chosen(ctx) -> str:
    summaries = dict((ref, summary) for ref, summary in ctx.data.get("approvals") or [])
    ref = ctx.data.get("approval")
    details = (ctx.data.get("approval_details") or {}).get(ref)
    ctx.data["approval_summary"] = details or summaries.get(ref, "")
    ctx.data["amount"] = (ctx.data.get("approval_spends") or {}).get(ref, 0)
    return "report" if approvals.declining_reports_a_problem(ref) else "ok"


def _quote(ctx) -> dict | None:
    """What the chosen item was priced at on the list (``approvals.PendingApproval.quote``)."""
    return (ctx.data.get("approval_quotes") or {}).get(ctx.data.get("approval"))


def _decide(ctx, approve: bool) -> str:
    """After the PIN: carry out the decision through the provider."""
    # Approving moves this customer's money: above the threshold, not with a freshly swapped
    # SIM (fraud_checks; small amounts never ask). Declining moves nothing: never gated.
    if approve and ctx.data.get("amount"):
        refused = fraud_checks.sim_swap_gate(ctx)
        if refused:
            return refused
    try:
        if not approvals.decide(
            db.session,
            ctx.user,
            ctx.data.get("approval", ""),
            approve=approve,
            quote=_quote(ctx) if approve else None,
        ):
            return "gone"
    except approvals.Short as short:  # nothing written
        ctx.data.update(
            amount_text=common.money(short.needed), balance_text=common.spendable_text(short.spendable)
        )
        return "short"
    # A transfer request or SMS the decision recorded rings its workers at commit (queues.py).
    own = approvals.approved_text(ctx.data.get("approval", "")) if approve else None
    if own:
        ctx.data["approved_text"] = t(ctx.lang, own)
        return "told"
    return "ok"


def check_limits(ctx) -> str:
    """Before the PIN: would approving break one of this customer's limits? Say so here."""
    refusal = approvals.before_approving(
        db.session, ctx.user, ctx.data.get("approval", ""), quote=_quote(ctx)
    )
    if refusal is None:
        return "ok"
    ctx.data.update(limit_text=common.money(refusal.limit), left_text=common.money(refusal.left))
    return refusal.result


def approve(ctx) -> str:
    return _decide(ctx, True)


def decline(ctx) -> str:
    return _decide(ctx, False)


FLOW = {
    "load": Step("collect what waits, from every provider", load, {"some": "list", "none": "empty"}),
    "list": Screen(
        "what waits for this customer's PIN",
        N_("Waiting for your approval:"),
        items="approvals",
        pick=("chosen", "approval"),
    ),
    "chosen": Step("remember which item was picked", chosen, {"ok": "item", "report": "item_report"}),
    "empty": Screen("nothing waits", N_("Nothing is waiting for your approval."), end=True),
    "item": Screen(
        "one item: approve or decline",
        "{approval_summary}",
        options=(Option(N_("Approve"), "check_limits"), Option(N_("Decline"), "decline_pin")),
    ),
    "check_limits": Step(
        "before the PIN, the limits approving would break (issue 15 item 16)",
        check_limits,
        {
            "ok": "approve_pin",
            **{result: Retry("item", words) for result, words in common.OVER_YOURS.items()},
        },
    ),
    # Declining a protected purchase's delivery is a dispute: say so, never a bare "Decline".
    "item_report": Screen(
        "one item whose refusal is a report for Tuma to decide: approve or report a problem",
        "{approval_summary}",
        options=(Option(N_("Approve"), "approve_pin"), Option(N_("Report a problem"), "report_pin")),
    ),
    **tail.money_tail(
        decline,
        what="the report of a problem",
        ask=N_("Enter your PIN to report a problem. The money stays held until Tuma decides"),
        done=N_("Problem reported. The money stays held until Tuma decides. You will get an SMS."),
        cancelled=None,
        exits={"gone": "gone"},
        names=tail.Names(pin="report_pin", submit="report", done="reported"),
    ),
    **tail.money_tail(
        approve,
        what="the approval",
        ask=N_("Enter your PIN to approve"),
        done=N_("Approved. You will receive an SMS confirmation."),
        short=N_("Not enough money to pay {amount_text}. Your balance is {balance_text}."),
        cancelled=None,
        exits={"gone": "gone", "told": "approved_own", **fraud_checks.EXITS},
        names=tail.Names(pin="approve_pin", submit="approve", done="approved"),
    ),
    "approved_own": Screen(
        "approved; the provider says what follows (approvals.approved_text)", "{approved_text}", end=True
    ),
    **tail.money_tail(
        decline,
        what="the decline",
        ask=N_("Enter your PIN to decline"),
        done=N_("Declined."),
        cancelled=None,
        exits={"gone": "gone"},
        names=tail.Names(pin="decline_pin", submit="decline", done="declined"),
    ),
    "gone": Screen("the item went meanwhile", N_("This is no longer waiting for you."), end=True),
}

SAMPLE = {
    "approvals": [[f"p:{i}", "W" * SUMMARY_LIMIT] for i in range(7)],
    "approval_spends": {f"p:{i}": 100_00 for i in range(7)},
    "approval_quotes": {},
    "approval": "p:0",
    "approval_details": {"p:0": "W" * approvals.DETAILS_LIMIT},
    "approval_summary": "W" * approvals.DETAILS_LIMIT,
    "approved_text": "W" * 120,
}
