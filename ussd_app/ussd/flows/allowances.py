"""Allowances on USSD (issue 18 item 1): a merchant may take many small charges up to a limit
per period, held from the customer's wallet once a period and settled as one posting and one SMS
(``payments/allowances.py`` owns all of that; these screens only ask and show).

- My approvals: an allowance a merchant asked for (through the API) waits for the customer's
  PIN; the summary says who, how much a period and the most a charge (``Allowances`` below).
- Start an allowance: till number -> the merchant's name -> limit per period -> day, week or
  month -> confirm (charges are free; the merchant pays the fee) -> PIN -> recorded; the worker
  holds the first period's limit and makes it active.
- My allowances: what is left of each; one allowance's limit, what is left, the period's end,
  its charges (five a screen, newest first) and cancel with the PIN (settled at once).
"""

from ... import limits
from ...extensions import db
from ...i18n import t
from ...messages import when
from ...money import WIDEST_AMOUNT
from ...payments import allowances as al
from ...payments.models import RequestKind
from ...users import BusinessKind, find_business, find_by_till
from .. import approvals, gsm7
from ..engine import N_, Choice, Option, Retry, Screen, Step
from ..render import singular
from . import common, fraud_checks, pay, tail

LIST_NAME_LIMIT = 16  # septets of a merchant's name on a line of My allowances
LIST_SIZE = 20  # allowances listed (the engine pages them)
CHARGES_PER_SCREEN = 5
# Septets of one charge line: five lines, "98. More" and the short reason fit one screen.
CHARGE_LINE_LIMIT = 27
NOT_A_CHOICE = N_("Invalid.")  # the charges' screens' reason: their lines leave no room for more
SUMMARY_LIMIT = 60  # a line of My approvals (my_approvals.SUMMARY_LIMIT): the name gives way
HOLD_KIND = RequestKind.ALLOWANCE.value  # a period's hold: what the customer's limits count
DESCRIPTION_ROOM = 12  # septets at least, for the merchant's description on the item screen

# How often, as the confirm screen, My approvals and My allowances say it.
PER_PERIOD = {
    al.Period.DAY.value: N_("a day"),
    al.Period.WEEK.value: N_("a week"),
    al.Period.MONTH.value: N_("a month"),
}


def _per(lang: str, period: str) -> str:
    return t(lang, PER_PERIOD[period]) if period in PER_PERIOD else period


def _moment(moment) -> str:
    """'01/12/26 23:59', in the service's time zone."""
    date, time = when(moment)
    return f"{date} {time}"


# -- My approvals: what a merchant asked for -------------------------------------------------

SUMMARY = N_("Allow {name} {limit} {per_period}, max {most} each")
DETAILS = N_(
    "Allow {name} to charge up to {limit} {per_period}, at most {most} a charge? The limit is held each period."  # noqa: E501
)


def _name_gives_way(lang: str, message: str, budget: int, name: str, **fields) -> str:
    """``message`` filled in within ``budget`` septets: the figures are what the PIN agrees to,
    so when the text is too long the merchant's name is cut, never them."""
    room = budget - (gsm7.length(t(lang, message, name="", **fields)) or budget)
    return t(lang, message, name=gsm7.shorten(name, max(room, 6)), **fields)


ENDS = N_("Ends {date}")  # the allowance's own end (the merchant's ends_at), when it has one
# The same terms with the allowance's own end: as short as the worst case needs (a 6-letter
# name, KES 1,000,000.00 a month, in Kiswahili: 133 of DETAILS_LIMIT's 136).
DETAILS_UNTIL = N_(
    "Allow {name} to charge up to {limit} {per_period} until {date}, at most {most} a charge? The limit is held each period."  # noqa: E501
)


def _ends(lang: str, ends_at) -> str:
    return t(lang, ENDS, date=when(ends_at)[0]) if ends_at is not None else ""


def asked(
    lang: str, name: str, limit: int, most: int, period: str, description: str = "", ends_at=None
) -> tuple[str, str]:
    """What My approvals shows of an allowance a merchant asked for: its line in the list (at
    most ``SUMMARY_LIMIT`` septets) and its own screen before the PIN (the name in full when
    it fits): the merchant, the limit per period, the period and the most a charge; then what
    the merchant says it is for, in the room left. Its end, if it has one, is a term the PIN
    agrees to: it is in the sentence with the figures (the name gives way for it)."""
    fields = dict(limit=common.money(limit), most=common.money(most), per_period=_per(lang, period))
    if ends_at is not None:
        details = _name_gives_way(
            lang, DETAILS_UNTIL, approvals.DETAILS_LIMIT, name, date=when(ends_at)[0], **fields
        )
    else:
        details = _name_gives_way(lang, DETAILS, approvals.DETAILS_LIMIT, name, **fields)
    room = approvals.DETAILS_LIMIT - (gsm7.length(details) or approvals.DETAILS_LIMIT) - 1
    if description.strip() and room >= DESCRIPTION_ROOM:
        details += "\n" + gsm7.shorten(" ".join(description.split()), room)
    return _name_gives_way(lang, SUMMARY, SUMMARY_LIMIT, name, **fields), details


class Allowances:
    """My approvals' provider for allowances a merchant asked for: approving (PIN checked by
    My approvals) records the first period's hold; the worker makes the allowance active."""

    name = "allowance"
    # No SMS now: the customer hears once a period, when it settles (or if it cannot be held).
    approved_text = N_(
        "Approved. The allowance is active once the money is held. You will get one SMS per settlement."
    )

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        found = []
        for allowance in al.awaiting(session, user):
            line, details = asked(
                user.language,
                al.merchant_name(session, allowance),
                allowance.limit_amount,
                allowance.max_charge,
                allowance.period,
                allowance.description or "",
                allowance.ends_at,
            )
            # Held from the wallet each period: the SIM-swap gate's figure.
            found.append(approvals.PendingApproval(allowance.id, line, allowance.limit_amount, details))
        return found

    def before_approving(self, session, user, key: str):
        """The customer's own limits on the period's hold, before the PIN."""
        allowance = session.get(al.Allowance, key)
        if allowance is None or allowance.customer_phone != user.phone:
            return None
        return limits.before_pin(
            session,
            HOLD_KIND,
            allowance.limit_amount,
            0,
            payer_account_id=user.account_id,
            payer_tier=limits.tier_of(user),
        )

    def approve(self, session, user, key: str) -> bool:
        return al.approve(session, user, key)

    def decline(self, session, user, key: str) -> bool:
        return al.decline(session, user, key)


# -- Start an allowance ----------------------------------------------------------------------


def find_till(ctx) -> str:
    """The till typed: a merchant's, not locked (``pay.find_till``, the same look-up as Buy
    goods); a number that is someone's but not a merchant's till says so."""
    found = pay.find_till(ctx)
    if found == "unknown" and find_by_till(db.session, ctx.data["business_number"]) is not None:
        return "not_till"
    return found


def check_limit(ctx) -> str:
    """The limit typed, in words for the next screens; the customer's own limits follow
    (``common.within_limits``: the whole limit is held each period)."""
    ctx.data["allowance_limit_text"] = common.money(ctx.data["amount"])
    return "ok"


def _period(period: str):
    def run(ctx) -> str:
        ctx.data.update(
            allowance_period=period,
            allowance_per=_per(ctx.lang, period),
            # Minted here and kept in the session: a repeated final request (or a resumed one)
            # finds the allowance recorded instead of starting a second (views.MINTED_IDS).
            allowance_id=al.new_id(),
        )
        return "ok"

    return run


def start(ctx) -> str:
    """After the PIN: the SIM-swap gate (the limit is held from the wallet), the balance, then
    the allowance is recorded with its first hold (the worker makes it active)."""
    # What the caller may spend: their requests still queued counted (``common.available``).
    spendable = common.available(ctx)
    # A retried hop whose first run started it (its limit perhaps held since): al.start's
    # replay answers, never "not enough money" (as common.replayed, for an allowance's id).
    if spendable < ctx.data["amount"] and db.session.get(al.Allowance, ctx.data["allowance_id"]) is None:
        ctx.data["balance_text"] = common.spendable_text(spendable)
        return "short"
    merchant = find_business(db.session, ctx.data["business_number"], BusinessKind.TILL)
    if merchant is None or merchant.account_id != ctx.data["merchant_account"]:
        return "gone"
    try:
        al.start(
            db.session,
            ctx.user,
            merchant,
            limit=ctx.data["amount"],
            period=ctx.data["allowance_period"],
            allowance_id=ctx.data["allowance_id"],
        )
    except al.AllowanceError:
        # The screens let no such terms through (a bug), or the id is taken by another
        # allowance (another customer's, or this one's other terms): said as ours, nothing
        # started; never "active" for terms nobody recorded.
        return "error"
    return "ok"


# -- My allowances ---------------------------------------------------------------------------

# A line of My allowances, by state (an active one says what is left of this period).
LEFT = N_("{name}: {left} left")
STATUS = {
    al.State.APPROVING.value: N_("{name}: starting"),
    al.State.PAUSED.value: N_("{name}: paused"),
}


def _starting(allowance) -> bool:
    """Its first hold is not made yet (later periods' holds show as running: it goes on)."""
    return allowance.state == al.State.APPROVING.value and allowance.hold_no <= 1


def _line_of(allowance) -> str:
    if _starting(allowance):
        return STATUS[al.State.APPROVING.value]
    return STATUS[al.State.PAUSED.value] if allowance.state == al.State.PAUSED.value else LEFT


def load_mine(ctx) -> str:
    mine = al.of_customer(db.session, ctx.user)[:LIST_SIZE]
    ctx.data["allowances"] = [
        [
            allowance.id,
            t(
                ctx.lang,
                _line_of(allowance),
                name=gsm7.shorten(al.merchant_name(db.session, allowance), LIST_NAME_LIMIT),
                left=common.money(al.left(allowance)),
            ),
        ]
        for allowance in mine
    ]
    return "some" if mine else "none"


def _mine(ctx):
    """The allowance picked, if it is still this customer's and still running."""
    allowance = db.session.get(al.Allowance, ctx.data.get("allowance") or "", populate_existing=True)
    if allowance is None or allowance.customer_phone != ctx.user.phone:
        return None
    return allowance if allowance.state in al.LIVE else None


def load_one(ctx) -> str:
    allowance = _mine(ctx)
    if allowance is None:
        return "gone"
    if _starting(allowance):
        status = t(ctx.lang, N_("Starting once the money is held."))
    elif allowance.state == al.State.PAUSED.value:
        status = t(ctx.lang, N_("Paused: not enough money to hold the limit."))
    else:
        status = t(
            ctx.lang,
            N_("Until {end}: 1 charge")
            if allowance.charge_count == 1
            else N_("Until {end}: {count} charges"),
            end=_moment(allowance.period_ends_at),
            count=allowance.charge_count,
        )
    name = gsm7.shorten(al.merchant_name(db.session, allowance), common.SHOWN_NAME_LIMIT)
    ctx.data.update(
        allowance_name=name,
        allowance_head=t(
            ctx.lang,
            N_("{name}\n{limit} {per_period}, {left} left\n{status}"),
            name=name,
            limit=common.money(allowance.limit_amount),
            per_period=_per(ctx.lang, allowance.period),
            left=common.money(al.left(allowance)),
            status=status,
        )
        + ("\n" + _ends(ctx.lang, allowance.ends_at) if allowance.ends_at is not None else ""),
    )
    return "ok"


def _charge_line(charge) -> str:
    date, time = when(charge.created_at)
    line = f"{date[:5]} {time} {common.money(charge.amount)} {charge.reference or ''}"
    return gsm7.shorten(line.strip(), CHARGE_LINE_LIMIT)


def _charges_page(ctx, offset: int) -> str:
    charges = al.recent_charges(
        db.session, ctx.data["allowance"], offset=offset, limit=CHARGES_PER_SCREEN + 1
    )
    if not charges and offset == 0:
        return "none"
    more = len(charges) > CHARGES_PER_SCREEN
    lines = [_charge_line(c) for c in charges[:CHARGES_PER_SCREEN]]
    if more:
        lines.append(t(ctx.lang, "98. More"))
    ctx.data.update(charges_offset=offset, charges_text="\n".join(lines))
    return "more" if more else "last"


def first_charges(ctx) -> str:
    return "gone" if _mine(ctx) is None else _charges_page(ctx, 0)


def next_charges(ctx) -> str:
    outcome = _charges_page(ctx, int(ctx.data.get("charges_offset") or 0) + CHARGES_PER_SCREEN)
    return "last" if outcome == "none" else outcome


def more(text: str) -> str | None:
    return text if text == "98" else None


def cancel(ctx) -> str:
    """After the PIN: settled now for what was charged this period (one posting, one SMS, the
    domain's), no next period."""
    allowance = _mine(ctx)
    if allowance is None:
        return "gone"
    if not al.cancel(db.session, ctx.user, allowance.id):
        return "gone"
    # What is being settled, as recorded (not the tab read before: a charge may have come in
    # since, or the merchant's own settlement may be posting it): the settlement the customer
    # has not been told of yet, this cancel's or the merchant's, is what the SMS will say.
    settlement = al.last_settlement(db.session, allowance.id)
    owed = db.session.get(al.Allowance, allowance.id, populate_existing=True)
    if owed is not None and owed.tab_amount > 0:
        # A settlement the worker refused (the merchant locked by Tuma): its charges are owed
        # again on the hold, which cancelling does not release; they are paid (one SMS) when
        # a later attempt posts. Never "nothing was charged, the money is yours again".
        amount, charges = owed.tab_amount, owed.tab_count
    elif settlement is None or settlement.told_at is not None or settlement.amount == 0:
        return "nothing"
    else:
        amount, charges = settlement.amount, settlement.charges
    ctx.data.update(allowance_charged_text=common.money(amount), allowance_count=charges)
    return "ok"


SETTLED = N_(
    "Allowance to {allowance_name} cancelled. Settled now: {allowance_charged_text} for {allowance_count} charges. You will get an SMS."  # noqa: E501
)
singular(
    SETTLED,
    "allowance_count",
    N_(
        "Allowance to {allowance_name} cancelled. Settled now: {allowance_charged_text} for 1 charge. You will get an SMS."  # noqa: E501
    ),
)

FLOW = {
    "menu": Screen(
        "allowances: start one, or see mine",
        N_("Allowances"),
        options=(Option(N_("Start an allowance"), "till"), Option(N_("My allowances"), "mine")),
    ),
    # -- start one
    "till": Screen(
        "the till of the merchant the allowance is for",
        N_("Start an allowance\nEnter till number"),
        choices=(Choice(pay.business_number, "find_till", save="business_number"),),
        otherwise=N_("A till number is 5 to 7 digits."),
    ),
    "find_till": Step(
        "look up the till (as Buy goods does)",
        find_till,
        {
            "ok": "limit",
            "unknown": Retry("till", N_("Till {business_number} is not on Tuma.")),
            "not_till": Retry("till", N_("{business_number} is not a merchant's till.")),
            "self": Retry("till", N_("You cannot pay yourself.")),
            "locked": Retry("till", N_("This business cannot take payments now.")),
        },
    ),
    "limit": Screen(
        "the most the merchant may charge a period (held from the wallet each period)",
        N_("Allowance to {merchant_name}\nEnter the limit per period"),
        choices=(Choice(common.amount, "check_limit", save="amount"),),
        otherwise=N_("Enter a whole amount, like 500."),
    ),
    "check_limit": Step("the limit in words", check_limit, {"ok": "period"}),
    "period": Screen(
        "how often the limit starts again",
        N_("How often does the limit of {allowance_limit_text} start again?"),
        options=(
            Option(N_("Daily"), "daily"),
            Option(N_("Weekly"), "weekly"),
            Option(N_("Monthly"), "monthly"),
        ),
    ),
    "daily": Step("a day's allowance", _period(al.Period.DAY.value), {"ok": "confirm"}),
    "weekly": Step("a week's allowance", _period(al.Period.WEEK.value), {"ok": "confirm"}),
    "monthly": Step("a month's allowance", _period(al.Period.MONTH.value), {"ok": "confirm"}),
    **tail.money_tail(
        fraud_checks.guarded(start),
        what="the allowance",
        confirm=N_(
            "Allow {merchant_name} ({business_number}) up to {allowance_limit_text} {allowance_per}? Charges are free; the merchant pays the fee."  # noqa: E501
        ),
        resume=N_("Continue starting an allowance to {merchant_name}?"),
        ask=N_("Enter your PIN to allow {merchant_name} up to {allowance_limit_text} {allowance_per}"),
        done=N_(
            "Allowance to {merchant_name} active once the money is held. You will get one SMS per settlement."
        ),
        short=N_("Not enough money to hold {allowance_limit_text}. Your balance is {balance_text}."),
        exits={"gone": "till_gone", **fraud_checks.EXITS},
    ),
    "till_gone": Screen(
        "the till changed hands or closed while the customer typed",
        N_("This business cannot take payments now."),
        end=True,
    ),
    # -- my allowances
    "mine": Step("the customer's running allowances", load_mine, {"some": "list", "none": "none"}),
    "list": Screen(
        "running allowances, with what is left of each",
        N_("My allowances"),
        items="allowances",
        pick=("one", "allowance"),
    ),
    "none": Screen("nothing running", N_("You have no allowances."), end=True),
    "one": Step("one allowance's figures", load_one, {"ok": "show", "gone": "gone"}),
    "show": Screen(
        "one allowance: limit, what is left, the period's end; its charges or cancel",
        "{allowance_head}",
        options=(Option(N_("Latest charges"), "charges"), Option(N_("Cancel allowance"), "cancel_confirm")),
    ),
    "charges": Step(
        "the newest charges",
        first_charges,
        {"more": "charges_page", "last": "charges_last", "none": "no_charges", "gone": "gone"},
    ),
    "charges_page": Screen(
        "five charges (time, amount, the merchant's reference); 98 for older ones",
        "{charges_text}",
        choices=(Choice(more, "charges_next"),),
        otherwise=NOT_A_CHOICE,
    ),
    "charges_next": Step(
        "the next five charges", next_charges, {"more": "charges_page", "last": "charges_last"}
    ),
    "charges_last": Screen("the oldest charges", "{charges_text}", otherwise=NOT_A_CHOICE),
    "no_charges": Screen("no charges yet", N_("No charges yet.")),
    **tail.money_tail(
        cancel,
        what="cancelling the allowance",
        confirm=N_("Cancel your allowance to {allowance_name}? What it charged this period is settled now."),
        resume=N_("Continue cancelling your allowance to {allowance_name}?"),
        ask=N_("Enter your PIN to cancel your allowance to {allowance_name}"),
        done=SETTLED,
        cancelled=N_("Nothing changed. Your allowance goes on."),
        exits={"gone": "gone", "nothing": "cancel_nothing"},
        names=tail.Names(
            confirm="cancel_confirm", pin="cancel_pin", submit="cancel", done="cancel_done", cancelled="kept"
        ),
    ),
    "cancel_nothing": Screen(
        "cancelled with nothing charged this period: the hold is released",
        N_("Allowance to {allowance_name} cancelled. Nothing was charged; any money held is yours again."),
        end=True,
    ),
    "gone": Screen(
        "the allowance ended meanwhile", N_("This allowance has ended. Check your SMS."), end=True
    ),
}
# Limits said before the PIN, not after it (issue 15 item 16): the period's hold counts.
FLOW["check_limit"] = common.within_limits(FLOW["check_limit"], "limit", kind=HOLD_KIND)


_WORST = WIDEST_AMOUNT
SAMPLE = {
    "allowance_limit_text": _WORST,
    "allowance_period": "month",
    "allowance_per": "kwa mwezi",  # the longest, in either language
    "allowance_id": "al_" + "0" * 22,
    "allowances": [["al_" + "0" * 22, "W" * LIST_NAME_LIMIT + ": " + _WORST + " left"]] * 12,
    "allowance": "al_" + "0" * 22,
    "allowance_name": "W" * common.SHOWN_NAME_LIMIT,
    "allowance_head": "W" * common.SHOWN_NAME_LIMIT
    + f"\n{_WORST} a month, {_WORST} left\nUntil 31/12/26 23:59: 9999 charges",
    "charges_offset": 0,
    # Five lines and a last one as long as "98. Zaidi" (not "98" itself: the screen walk would
    # take it for the engine's paging, which these screens do not use).
    "charges_text": "\n".join(["W" * CHARGE_LINE_LIMIT] * CHARGES_PER_SCREEN + ["W" * 10]),
    "allowance_charged_text": _WORST,
    "allowance_count": 9999,
    "balance_text": _WORST,
}
