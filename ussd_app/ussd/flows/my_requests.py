"""My requests: the requester's open payment requests (``request_payment``,
``request_money``), who has paid and who has not; remind the unpaid (once per payer per day)
or cancel them, all of a request or one payer's."""

from ...extensions import db
from ...i18n import t
from ...money import WIDEST_AMOUNT
from ...payments import payment_requests as pr
from ...users import find_by_phone
from .. import gsm7
from ..engine import N_, Option, Screen, Step
from . import common, fraud_checks

LINE_NAME_LIMIT = 16

STATES = {
    pr.State.OPEN: N_("{who}: not paid"),
    pr.State.PAYING: N_("{who}: paying"),
    pr.State.PAID: N_("{who}: paid"),
    pr.State.DECLINED: N_("{who}: declined"),
    pr.State.EXPIRED: N_("{who}: expired"),
    pr.State.CANCELLED: N_("{who}: cancelled"),
}


def _who(session, request: pr.PaymentRequest) -> str:
    """The payer's registered name, or their number: not on Tuma, or asked through the API
    beyond the owner's name look-ups and not paid yet (``pr.payer_name_shown``)."""
    if not pr.payer_name_shown(request):
        return request.payer_phone
    user = find_by_phone(session, request.payer_phone)
    return gsm7.shorten(user.name, LINE_NAME_LIMIT) if user else request.payer_phone


def load_mine(ctx) -> str:
    groups = pr.open_groups(db.session, ctx.user)
    ctx.data["my_requests"] = [
        [
            g[0].group_id,
            t(
                ctx.lang,
                N_("{amount} {reason}: {paid}/{count} paid"),
                amount=common.money(sum(r.amount for r in g)),
                reason=g[0].reason,
                paid=sum(r.state == pr.State.PAID for r in g),
                count=len(g),
            ),
        ]
        for g in groups[:20]
    ]
    return "some" if groups else "none"


def load_group(ctx) -> str:
    rows = pr.group(db.session, ctx.data.get("my_group") or "")
    if not rows or rows[0].requester_account_id != ctx.user.account_id:
        return "gone"
    ctx.data["group_head"] = t(
        ctx.lang,
        N_("{reason}: {paid}/{count} paid"),
        reason=rows[0].reason,
        paid=sum(r.state == pr.State.PAID for r in rows),
        count=len(rows),
    )
    ctx.data["group_payers"] = [
        [r.id, t(ctx.lang, STATES[pr.State(r.state)], who=_who(db.session, r))] for r in rows
    ]
    return "ok"


def load_payer(ctx) -> str:
    request = pr.owned(db.session, ctx.user, ctx.data.get("my_request") or "")
    if request is None:
        return "gone"
    ctx.data["payer_line"] = t(
        ctx.lang,
        N_("{who}: {amount} for {reason}"),
        who=_who(db.session, request),
        amount=common.money(request.amount),
        reason=request.reason,
    )
    return "ok"


def _unpaid(ctx) -> list[str]:
    return [r.id for r in pr.group(db.session, ctx.data["my_group"]) if r.state == pr.State.OPEN]


def _remind(ctx, payment_request_id: str) -> bool:
    """A reminder to a number still not on Tuma is another invitation SMS: it takes one of
    today's invitations (none left: not reminded)."""
    request = pr.owned(db.session, ctx.user, payment_request_id)
    stranger = request is not None and find_by_phone(db.session, request.payer_phone) is None
    if stranger and not fraud_checks.invites_allowed(ctx, 1):
        return False
    reminded = pr.remind(db.session, ctx.user, payment_request_id)
    if stranger and not reminded:
        fraud_checks.give_back_invites(ctx, 1)
    return reminded


def remind_all(ctx) -> str:
    ctx.data["reminded"] = sum(_remind(ctx, rid) for rid in _unpaid(ctx))
    return "ok"


def remind_one(ctx) -> str:
    ctx.data["reminded"] = int(_remind(ctx, ctx.data["my_request"]))
    return "ok"


def cancel_all(ctx) -> str:
    ctx.data["cancelled"] = sum(pr.cancel(db.session, ctx.user, rid) for rid in _unpaid(ctx))
    fraud_checks.note_cancels(ctx, ctx.data["cancelled"])  # asked, shown the names, called off
    return "ok"


def cancel_one(ctx) -> str:
    ctx.data["cancelled"] = int(pr.cancel(db.session, ctx.user, ctx.data["my_request"]))
    fraud_checks.note_cancels(ctx, ctx.data["cancelled"])
    return "ok"


FLOW = {
    "start": Step("the requester's open requests", load_mine, {"some": "list", "none": "none"}),
    "list": Screen(
        "open requests, with how many have paid",
        N_("My requests"),
        items="my_requests",
        pick=("group", "my_group"),
    ),
    "none": Screen("nothing open", N_("You have no open requests."), end=True),
    "group": Step("who has paid and who has not", load_group, {"ok": "group_show", "gone": "gone"}),
    "group_show": Screen(
        "one request: remind or cancel the unpaid, or pick a payer",
        "{group_head}",
        options=(Option(N_("Remind unpaid"), "remind_all"), Option(N_("Cancel unpaid"), "cancel_ask")),
        items="group_payers",
        pick=("payer", "my_request"),
    ),
    "payer": Step("one payer's request", load_payer, {"ok": "payer_show", "gone": "gone"}),
    "payer_show": Screen(
        "one payer: remind or cancel",
        "{payer_line}",
        options=(Option(N_("Remind"), "remind_one"), Option(N_("Cancel request"), "cancel_one")),
    ),
    "remind_all": Step("remind every unpaid payer, once a day each", remind_all, {"ok": "reminded"}),
    "remind_one": Step("remind this payer, once a day", remind_one, {"ok": "reminded"}),
    "reminded": Screen(
        "reminders sent",
        N_("Reminders sent: {reminded}. Each person gets at most one a day."),
        end=True,
    ),
    "cancel_ask": Screen(
        "confirm cancelling the unpaid requests",
        N_("Cancel the unpaid requests? Paid ones stay paid."),
        options=(Option(N_("Yes, cancel"), "cancel_all"), Option(N_("No"), "kept")),
    ),
    "cancel_all": Step("cancel every unpaid request of the group", cancel_all, {"ok": "cancel_done"}),
    "cancel_one": Step("cancel this payer's request", cancel_one, {"ok": "cancel_done"}),
    "cancel_done": Screen("cancelled", N_("Requests cancelled: {cancelled}."), end=True),
    "kept": Screen("nothing cancelled", N_("Nothing was cancelled."), end=True),
    "gone": Screen("the request went meanwhile", N_("This request is no longer open."), end=True),
}

SAMPLE = {
    "reason": "W" * pr.REASON_LIMIT,
    "my_requests": [["0" * 32, WIDEST_AMOUNT + " " + "W" * 20 + ": 10/10 paid"]] * 12,
    "my_group": "0" * 32,
    "group_head": "W" * 20 + ": 10/10 paid",
    "group_payers": [["0" * 32 + ".10", "+" + "9" * 15 + ": cancelled"]] * 10,
    "my_request": "0" * 32 + ".10",
    "payer_line": "W" * LINE_NAME_LIMIT + ": " + WIDEST_AMOUNT + " for " + "W" * 20,
    "reminded": 10,
    "cancelled": 10,
}
