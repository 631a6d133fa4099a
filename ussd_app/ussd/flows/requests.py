"""Payment requests: a merchant's "Request payment" (one customer), a customer's "Request
money" (up to 10 numbers, an amount each or a total split evenly), and "My requests" to see
who paid, remind and cancel. Payers see the requests in My approvals (the provider below) and
pay them with their PIN: an ordinary transfer (ussd_app/payments/payment_requests.py).

The group id is minted when the confirm screen is reached and kept in the session, so a
repeated final request finds the group already recorded and asks nobody twice.

Asking is behind the requester's PIN, like every other act that reaches other people: once
recorded, My requests shows each payer's registered name, so every number asked is a name
look-up (counted and throttled, ``fraud_checks``), and each number not on Tuma gets an SMS
invitation (capped per sender per day, ``fraud.take_invites``). At most ``pr.MAX_PAYERS``
numbers, whichever way the number screen is reached (going back, a resumed session)."""

import re

from flask import current_app

from ... import limits
from ...extensions import db
from ...i18n import t
from ...payments import payment_requests as pr
from ...payments.submit import mint_request_id
from ...users import find_by_phone
from .. import approvals, gsm7
from ..engine import N_, Choice, Option, Retry, Screen, Step
from . import common, fraud_checks

_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,'&/\-]*")
LINE_NAME_LIMIT = 16

STATES = {
    pr.State.OPEN: N_("{who}: not paid"),
    pr.State.PAYING: N_("{who}: paying"),
    pr.State.PAID: N_("{who}: paid"),
    pr.State.DECLINED: N_("{who}: declined"),
    pr.State.EXPIRED: N_("{who}: expired"),
    pr.State.CANCELLED: N_("{who}: cancelled"),
}


# -- guards ----------------------------------------------------------------------------------


def reason(text: str) -> str | None:
    text = " ".join(text.split())
    if not text or len(text) > pr.REASON_LIMIT or not text.isascii() or not _REASON.fullmatch(text):
        return None
    return text if gsm7.fits(text, pr.REASON_LIMIT) else None


def finish(text: str) -> str | None:
    return "#" if text.strip() == "#" else None


# -- steps -----------------------------------------------------------------------------------


def _days(kind: pr.Kind) -> int:
    return -(-pr.lifetime(kind) // 86_400)


def _hours(kind: pr.Kind) -> int:
    return -(-pr.lifetime(kind) // 3600)


def check_payer(ctx) -> str:
    """The number typed on a request screen: not yours, not asked too often today."""
    phone = ctx.data["payer_phone"]
    if phone == ctx.user.phone:
        return "self"
    if phone in (ctx.data.get("payers") or []):
        return "twice"
    if not pr.may_ask(db.session, ctx.user, phone):
        ctx.data["per_day"] = current_app.config["REQUESTS_PER_PAYER_PER_DAY"]
        return "too_often"
    return "ok"


def merchant_start(ctx) -> str:
    ctx.data.pop("payers", None)
    return "ok"


def merchant_mint(ctx) -> str:
    ctx.data.update(
        amount_text=common.money(ctx.data["amount"]),
        expiry_hours=_hours(pr.Kind.MERCHANT),
        group_id=mint_request_id(),
    )
    return "ok"


def merchant_submit(ctx) -> str:
    def create(c) -> str:
        data = c.data
        if _over_cap(c, [data["payer_phone"]]):
            return "too_often"
        refused = _names_and_invites(c, [data["payer_phone"]])
        if refused:
            return refused
        pr.create(
            db.session,
            c.user,
            data["group_id"],
            pr.Kind.MERCHANT,
            [(data["payer_phone"], data["amount"])],
            data["reason"],
        )
        return "ok"

    return common.pin_then(ctx, create)


def customer_start(ctx) -> str:
    ctx.data["payers"] = []
    ctx.data["payer_next"] = 1
    return "ok"


def add_payer(ctx) -> str:
    payers = ctx.data.setdefault("payers", [])
    if len(payers) >= pr.MAX_PAYERS:  # back at the number screen with the list full
        ctx.data.update(payer_count=len(payers), payer_max=pr.MAX_PAYERS)
        return "too_many"
    outcome = check_payer(ctx)
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


def customer_mint(ctx) -> str:
    shares = ctx.data["shares"]
    first, rest = shares[0], shares[1:]
    if rest and rest[0] != first:
        share = f"{common.money(first)} + {len(rest)} x {common.money(rest[0])}"
    else:
        share = f"{len(shares)} x {common.money(first)}"
    ctx.data.update(
        total_text=common.money(sum(shares)),
        share_text=share,
        expiry_days=_days(pr.Kind.PERSONAL),
        group_id=mint_request_id(),
    )
    return "ok"


def _over_cap(ctx, phones: list[str]) -> bool:
    """Counted again when recording (the cap holds across sessions), unless this session's
    group is already recorded (a repeated final request)."""
    if pr.group(db.session, ctx.data["group_id"]):
        return False
    for phone in phones:
        if not pr.may_ask(db.session, ctx.user, phone):
            ctx.data["payer_phone"] = phone
            ctx.data["per_day"] = current_app.config["REQUESTS_PER_PAYER_PER_DAY"]
            return True
    return False


def _names_and_invites(ctx, phones: list[str]) -> str | None:
    """Before recording a new group (after the PIN): every number asked is a name look-up,
    refused while throttled; every number not on Tuma takes one of today's invitations. None
    when the group may be recorded (the look-ups and invitations are then counted)."""
    if pr.group(db.session, ctx.data["group_id"]):  # a repeated final request: counted before
        return None
    if not fraud_checks.lookups_allowed(ctx, len(phones)):
        return "throttled"
    # Counted even if the invitations are refused: the refusal, too, tells who is not on Tuma.
    fraud_checks.note_lookups(ctx, len(phones))
    strangers = sum(find_by_phone(db.session, phone) is None for phone in phones)
    if not fraud_checks.invites_allowed(ctx, strangers):
        return "invites"
    return None


def customer_submit(ctx) -> str:
    return common.pin_then(ctx, _customer_record)


def _customer_record(ctx) -> str:
    data = ctx.data
    payers, shares = data.get("payers") or [], data.get("shares") or []
    if not 1 <= len(payers) <= pr.MAX_PAYERS or len(shares) != len(payers):
        # Not reachable through the screens; should a session ever carry such a list, start
        # the numbers again rather than fail.
        customer_start(ctx)
        return "restart"
    if _over_cap(ctx, payers):
        return "too_often"
    refused = _names_and_invites(ctx, payers)
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


def _who(session, phone: str) -> str:
    user = find_by_phone(session, phone)
    return gsm7.shorten(user.name, LINE_NAME_LIMIT) if user else phone


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
        [r.id, t(ctx.lang, STATES[pr.State(r.state)], who=_who(db.session, r.payer_phone))] for r in rows
    ]
    return "ok"


def load_payer(ctx) -> str:
    request = pr.owned(db.session, ctx.user, ctx.data.get("my_request") or "")
    if request is None:
        return "gone"
    ctx.data["payer_line"] = t(
        ctx.lang,
        N_("{who}: {amount} for {reason}"),
        who=_who(db.session, request.payer_phone),
        amount=common.money(request.amount),
        reason=request.reason,
    )
    return "ok"


def _unpaid(ctx) -> list[str]:
    return [r.id for r in pr.group(db.session, ctx.data["my_group"]) if r.state == pr.State.OPEN]


def _remind(ctx, request_id: str) -> bool:
    """A reminder to a number still not on Tuma is another invitation SMS: it takes one of
    today's invitations (none left: not reminded)."""
    request = pr.owned(db.session, ctx.user, request_id)
    stranger = request is not None and find_by_phone(db.session, request.payer_phone) is None
    if stranger and not fraud_checks.invites_allowed(ctx, 1):
        return False
    reminded = pr.remind(db.session, ctx.user, request_id)
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


# -- My approvals: the payer's side ---------------------------------------------------------


class PaymentRequests:
    name = "request"

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        found = []
        for request in pr.waiting_for(session, user):
            requester = pr._requester(session, request)
            cost = pr.fee(session, request)
            summary = t(
                user.language,
                N_("Pay {amount} (fee {fee}) to {name}: {reason}")
                if cost
                else N_("Pay {amount} to {name}: {reason}"),
                amount=common.money(request.amount),
                fee=common.money(cost),
                name=requester.name if requester else "",
                reason=request.reason,
            )
            found.append(approvals.PendingApproval(request.id, summary, spends=request.amount + cost))
        return found

    def approve(self, session, user, key: str) -> bool:
        return pr.pay(session, user, key) is not None

    def before_approving(self, session, user, key: str):
        """The payer's own limits, before the PIN (not the requester's balance: private)."""
        request = session.get(pr.PaymentRequest, key)
        requester = pr._requester(session, request) if request is not None else None
        if requester is None or request.payer_phone != user.phone:
            return None
        kind = pr._payment(request, requester)[0].value
        return limits.before_pin(
            session, kind, request.amount, pr.fee(session, request), payer_account_id=user.account_id
        )

    def decline(self, session, user, key: str) -> bool:
        return pr.decline(session, user, key)


approvals.register(PaymentRequests())


_TOO_OFTEN = N_("You have asked {payer_phone} {per_day} times today. Try tomorrow.")
_PAYER_EXITS = {
    "self": N_("You cannot ask yourself."),
    "twice": N_("{payer_phone} is already on this request."),
    "too_often": _TOO_OFTEN,
}
_BAD_REASON = N_("Use 1 to 20 letters, digits or spaces.")

FLOW = {
    # -- a merchant asks one customer ------------------------------------------------------
    "merchant": Step("a merchant's request: start afresh", merchant_start, {"ok": "m_phone"}),
    "m_phone": Screen(
        "the customer's phone number",
        N_("Request payment\nEnter the customer's phone number"),
        choices=(Choice(common.phone_number, "m_check", save="payer_phone"),),
        otherwise=N_("Not a valid phone number."),
    ),
    "m_check": Step(
        "refuse yourself and numbers asked too often today",
        check_payer,
        {"ok": "m_amount", **{k: Retry("m_phone", v) for k, v in _PAYER_EXITS.items()}},
    ),
    "m_amount": Screen(
        "the amount to ask for",
        N_("Request from {payer_phone}\nEnter amount"),
        choices=(Choice(common.amount, "m_reason", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "m_reason": Screen(
        "what the payment is for",
        N_("What is it for? (up to 20 characters)"),
        choices=(Choice(reason, "m_mint", save="reason"),),
        otherwise=_BAD_REASON,
    ),
    "m_mint": Step("mint the request's id", merchant_mint, {"ok": "m_confirm"}),
    "m_confirm": Screen(
        "confirm customer, amount and reason",
        N_("Ask {payer_phone} to pay {amount_text} for {reason}? It expires in {expiry_hours} hours."),
        options=(Option(N_("Confirm"), "m_pin"), Option(N_("Cancel"), "cancelled")),
    ),
    "m_pin": Screen(
        "the PIN that authorises the request",
        N_("Enter your PIN to send the request"),
        choices=(Choice(common.pin_format, "m_submit"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "m_submit": Step(
        "check the PIN, then record the request and the customer's SMS",
        merchant_submit,
        common.pin_exits(
            "m_pin", ok="m_done", too_often="too_often", throttled="fraud.throttled", invites="fraud.invites"
        ),
    ),
    "m_done": Screen(
        "the request is sent",
        N_("Request sent to {payer_phone}. You will get an SMS when they pay or decline."),
        end=True,
    ),
    # -- a customer asks one or several people ---------------------------------------------
    "customer": Step("request money: start afresh", customer_start, {"ok": "c_number"}),
    "c_number": Screen(
        "the next payer's number, or # when done",
        N_("Request money\nEnter number {payer_next}, or # to finish"),
        choices=(Choice(finish, "c_finish"), Choice(common.phone_number, "c_add", save="payer_phone")),
        otherwise=N_("Not a valid phone number."),
    ),
    "c_add": Step(
        "add the number (up to 10); refuse yourself, repeats and numbers asked too often",
        add_payer,
        {
            "more": "c_number",
            "full": "c_how",
            "too_many": Retry(
                "c_number", N_("You have entered {payer_max} numbers, the most. Enter # to finish.")
            ),
            "throttled": "fraud.throttled",
            **{k: Retry("c_number", v) for k, v in _PAYER_EXITS.items()},
        },
    ),
    "c_finish": Step(
        "at least one number",
        finish_payers,
        {"ok": "c_how", "none": Retry("c_number", N_("Enter at least one number."))},
    ),
    "c_how": Screen(
        "an amount each, or a total to split",
        N_("Numbers entered: {payer_count}"),
        options=(Option(N_("Amount each"), "c_each"), Option(N_("Total to split evenly"), "c_total")),
    ),
    "c_each": Screen(
        "the amount each one owes",
        N_("Enter the amount each person owes"),
        choices=(Choice(common.amount, "c_each_set", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "c_each_set": Step("the same amount for everyone", each, {"ok": "c_reason"}),
    "c_total": Screen(
        "the total to split evenly",
        N_("Enter the total to split among {payer_count}"),
        choices=(Choice(common.amount, "c_split", save="total"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "c_split": Step("split evenly, the remainder on the first", split_total, {"ok": "c_reason"}),
    "c_reason": Screen(
        "what the money is for",
        N_("What is it for? (up to 20 characters)"),
        choices=(Choice(reason, "c_mint", save="reason"),),
        otherwise=_BAD_REASON,
    ),
    "c_mint": Step("show the shares and mint the group's id", customer_mint, {"ok": "c_confirm"}),
    "c_confirm": Screen(
        "confirm who is asked, how much and why",
        N_("Request {total_text} for {reason}: {share_text}. Expires in {expiry_days} days."),
        options=(Option(N_("Confirm"), "c_pin"), Option(N_("Cancel"), "cancelled")),
    ),
    "c_pin": Screen(
        "the PIN that authorises the requests",
        N_("Enter your PIN to send the requests"),
        choices=(Choice(common.pin_format, "c_submit"),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    ),
    "c_submit": Step(
        "check the PIN, then record the requests and each payer's SMS",
        customer_submit,
        common.pin_exits(
            "c_pin",
            ok="c_done",
            too_often="too_often",
            throttled="fraud.throttled",
            invites="fraud.invites",
            restart=Retry("c_number", N_("Please enter the numbers again.")),
        ),
    ),
    "c_done": Screen(
        "the requests are sent",
        N_("Requests sent: {payer_count}. You will get an SMS as each one pays or declines."),
        end=True,
    ),
    # -- my requests -----------------------------------------------------------------------
    "mine": Step("the requester's open requests", load_mine, {"some": "mine_list", "none": "mine_none"}),
    "mine_list": Screen(
        "open requests, with how many have paid",
        N_("My requests"),
        items="my_requests",
        pick=("group", "my_group"),
    ),
    "mine_none": Screen("nothing open", N_("You have no open requests."), end=True),
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
    "too_often": Screen("a payer was asked too often today, in another session", _TOO_OFTEN, end=True),
    "cancelled": Screen("the requester cancelled", N_("Cancelled. Nobody was asked."), end=True),
}

# Only mobile numbers of our own country can be customers (issue 15 item 9).
FLOW["m_check"] = common.mobile_only("payer_phone", "m_phone", FLOW["m_check"])
FLOW["c_add"] = common.mobile_only("payer_phone", "c_number", FLOW["c_add"])

SAMPLE = {
    "payer_phone": "+" + "9" * 15,
    "payer_next": 10,
    "payer_count": 10,
    "payer_max": 10,
    "payers": ["+" + "9" * 15] * 10,
    "per_day": 99,
    "reason": "W" * pr.REASON_LIMIT,
    "total": 1_000_000_000,
    "shares": [100_000_000] * 10,
    "total_text": "KES 10,000,000.00",
    "share_text": "KES 1,000,000.01 + 9 x KES 1,000,000.00",
    "expiry_hours": 999,
    "expiry_days": 99,
    "group_id": "0" * 32,
    "my_requests": [["0" * 32, "KES 10,000,000.00 " + "W" * 20 + ": 10/10 paid"]] * 12,
    "my_group": "0" * 32,
    "group_head": "W" * 20 + ": 10/10 paid",
    "group_payers": [["0" * 32 + ".10", "+" + "9" * 15 + ": cancelled"]] * 10,
    "my_request": "0" * 32 + ".10",
    "payer_line": "W" * LINE_NAME_LIMIT + ": KES 10,000,000.00 for " + "W" * 20,
    "reminded": 10,
    "cancelled": 10,
}
