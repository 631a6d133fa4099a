"""What the payment-request flows share (``request_payment``: a merchant asks one customer;
``request_money``: a customer asks up to 10 people; ``my_requests``: the requester's list):
the reason guard, the checks on each number asked, the checks made again after the PIN, the
screens both asking flows may end on, and the payer's side in My approvals (the provider
below). Paying a request is an ordinary transfer (ussd_app/payments/payment_requests.py).

Asking is behind the requester's PIN, like every other act that reaches other people: once
recorded, My requests shows each payer's registered name, so every number asked is a name
look-up (counted and throttled, ``fraud_checks``), and each number not on Tuma gets an SMS
invitation (capped per sender per day, ``fraud.take_invites``)."""

import re

from flask import current_app

from ... import limits
from ...extensions import db
from ...i18n import t
from ...payments import payment_requests as pr
from ...payments.submit import spendable
from ...users import Role, find_by_phone, holder_by_phone
from .. import approvals, gsm7
from ..engine import N_, Retry, Screen
from . import common, fraud_checks

_REASON = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .,'&/\-]*")

TOO_OFTEN = N_("You have asked {payer_phone} {per_day} times today. Try tomorrow.")
PAYER_EXITS = {
    "self": N_("You cannot ask yourself."),
    "twice": N_("{payer_phone} is already on this request."),
    "too_often": TOO_OFTEN,
    "not_customer": N_("{payer_phone} cannot be asked to pay."),
}
BAD_REASON = N_("Use 1 to 20 letters, digits or spaces.")


# -- guards ----------------------------------------------------------------------------------


def reason(text: str) -> str | None:
    text = " ".join(text.split())
    if not text or len(text) > pr.REASON_LIMIT or not text.isascii() or not _REASON.fullmatch(text):
        return None
    return text if gsm7.fits(text, pr.REASON_LIMIT) else None


# -- steps -----------------------------------------------------------------------------------


def check_payer(ctx) -> str:
    """The number typed on a request screen: not yours, not an agent's or a business's (only
    customers pay requests, as the API's requests: an agent's e-float is for cash, a business
    pays out by its own means), not asked too often today."""
    phone = ctx.data["payer_phone"]
    if phone == ctx.user.phone:
        return "self"
    if phone in (ctx.data.get("payers") or []):
        return "twice"
    holder = holder_by_phone(db.session, phone)
    if holder is not None and holder.role != Role.CUSTOMER.value:
        return "not_customer"
    if not pr.may_ask(db.session, ctx.user, phone):
        ctx.data["per_day"] = current_app.config["REQUESTS_PER_PAYER_PER_DAY"]
        return "too_often"
    return "ok"


def payer_retries(screen: str) -> dict:
    """The exits of ``check_payer``'s refusals: ``screen`` again, saying why."""
    return {k: Retry(screen, v) for k, v in PAYER_EXITS.items()}


def over_cap(ctx, phones: list[str]) -> bool:
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


def names_and_invites(ctx, phones: list[str]) -> str | None:
    """Before recording a new group (after the PIN): every number asked is a name look-up,
    refused while throttled; every number not on Tuma takes one of today's invitations. None
    when the group may be recorded (the look-ups and invitations are then counted)."""
    if pr.group(db.session, ctx.data["group_id"]):  # a repeated final request: counted before
        return None
    # Checked and counted in one atomic step (two sessions cannot both take the last ones);
    # counted even if the invitations are refused: the refusal, too, tells who is not on Tuma.
    if not fraud_checks.take_lookups(ctx, len(phones)):
        return "throttled"
    strangers = sum(find_by_phone(db.session, phone) is None for phone in phones)
    if not fraud_checks.invites_allowed(ctx, strangers):
        return "invites"
    return None


# Where an asking flow's submit may end besides done (with the flow's own ``ok`` and more).
SUBMIT_EXITS = {"too_often": "too_often", "throttled": "fraud.throttled", "invites": "fraud.invites"}


CANCELLED = N_("Cancelled. Nobody was asked.")


def endings() -> dict:
    """The screen both asking flows may end on besides their tail's, one copy in each."""
    return {
        "too_often": Screen("a payer was asked too often today, in another session", TOO_OFTEN, end=True),
    }


SAMPLE = {
    "payer_phone": "+" + "9" * 15,
    "per_day": 99,
    "reason": "W" * pr.REASON_LIMIT,
    "group_id": "0" * 32,
}


# -- My approvals: the payer's side ---------------------------------------------------------


def _valid(quote) -> dict | None:
    """A quote kept in the session as ``pr.quote`` made it, else None (priced now)."""
    if not isinstance(quote, dict) or set(quote) != {"fee", "payee_fee", "tariff"}:
        return None
    fee, payee_fee, tariff = quote["fee"], quote["payee_fee"], quote["tariff"]
    whole = all(type(v) is int and v >= 0 for v in (fee, payee_fee))
    return quote if whole and (tariff is None or type(tariff) is int) else None


class PaymentRequests:
    name = "request"

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        if user.role != Role.CUSTOMER.value:
            return []  # only customers pay requests (check_payer), also one asked before that rule
        found = []
        for request in pr.waiting_for(session, user):
            requester = pr._requester(session, request)
            price = pr.quote(session, request)
            cost = price["fee"]
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
            # The price shown is the price paid: kept by My approvals, handed back to approve.
            found.append(
                approvals.PendingApproval(request.id, summary, spends=request.amount + cost, quote=price)
            )
        return found

    def approve(self, session, user, key: str, *, quote: dict | None = None) -> bool:
        """Pay it, when the customer may spend amount and fee now (the PIN hop's row lock
        holds their other hops back); ``approvals.Short`` (nothing written) when not. Only a
        customer pays one (an agent's e-float is for cash, a business pays out by its own
        means): anyone else's is gone."""
        if user.role != Role.CUSTOMER.value:
            return False
        request = session.get(pr.PaymentRequest, key, populate_existing=True)
        if request is not None and request.payer_phone == user.phone and request.state == pr.State.OPEN:
            needed = request.amount + (_valid(quote) or pr.quote(session, request))["fee"]
            left = spendable(session, user.account_id, pr.transfer_id(request))
            if left < needed:
                raise approvals.Short(needed, left)
        return pr.pay(session, user, key, quoted=_valid(quote)) is not None

    def before_approving(self, session, user, key: str, *, quote: dict | None = None):
        """The payer's own limits, before the PIN (not the requester's balance: private), on
        the fee the list showed."""
        request = session.get(pr.PaymentRequest, key)
        requester = pr._requester(session, request) if request is not None else None
        if requester is None or request.payer_phone != user.phone:
            return None
        kind = pr._payment(request, requester)[0].value
        shown = _valid(quote) or pr.quote(session, request)
        return limits.before_pin(
            session,
            kind,
            request.amount,
            shown["fee"],
            payer_account_id=user.account_id,
            payer_tier=limits.tier_of(user),
        )

    def decline(self, session, user, key: str) -> bool:
        return pr.decline(session, user, key)
