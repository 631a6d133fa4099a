"""What several flows share: input guards (pure: text in, value or None out), the PIN step,
and the screens every flow may end on."""

import re

import phonenumbers
from flask import current_app

from ... import country, limits, phones, pins
from ...extensions import db
from ...ledger import Account
from ...messages import money  # noqa: F401  (the flows' common.money: the one house format)
from ...money import WIDEST_AMOUNT, InvalidAmount, parse_major
from ...users import Role
from ..engine import N_, Retry, Screen, Step
from ..gsm7 import shorten
from ..pin_guard import check_locked_row, check_pin, is_operator_locked, tries_left
from ..render import singular

NAME_LIMIT = 20  # septets of a name as typed at registration
SHOWN_NAME_LIMIT = 24  # septets of a full name on a confirm screen
_NAME = re.compile(r"[A-Za-z][A-Za-z'\-]{0,19}")

# Every flow's wrong-PIN reason says "1 try left", not "1 tries left" (the engine picks it).
singular(N_("Wrong PIN. {tries_left} tries left."), "tries_left", N_("Wrong PIN. {tries_left} try left."))


# -- guards ----------------------------------------------------------------------------------


def pin_format(text: str) -> str | None:
    return text if pins.is_valid_pin(text) else None


def phone_number(text: str) -> str | None:
    try:
        return phones.normalize(text.strip())
    except phones.InvalidPhone:
        return None


# Why a real number was refused: only mobiles of the service's own country (``COUNTRY``) can
# be customers, so only they receive money, invitations or airtime (phones.normalize_mobile).
NOT_MOBILE = N_("Only mobile numbers starting +{country_code} can be used.")


def mobile_only(key: str, screen: str, step: Step) -> Step:
    """``step``, after checking that the number saved under ``key`` (typed on ``screen``) is a
    mobile number of the service's own country; any other valid number (foreign, landline,
    toll-free) re-shows ``screen`` with NOT_MOBILE. The guard ``phone_number`` lets every valid
    number through so that this step can say why it is refused."""

    def run(ctx) -> str:
        try:
            ctx.data[key] = phones.normalize_mobile(ctx.data[key])
        except phones.InvalidPhone:
            region = current_app.config["COUNTRY"]
            ctx.data["country_code"] = str(phonenumbers.country_code_for_region(region))
            return "not_mobile"
        return step.run(ctx)

    return Step(step.about, run, {**step.exits, "not_mobile": Retry(screen, NOT_MOBILE)})


# Limits said before the PIN (limits.before_pin), on the amount screen: the limit and what is
# left. The payer's own only (``within_limits`` says why).
OVER_YOURS = {
    limits.Result.TRANSACTION: N_("Over your limit of {limit_text} per transaction."),
    limits.Result.DAILY: N_("Over your daily limit of {limit_text}: {left_text} left today, fees included."),
    # Not how much room is left: that would tell the payer what the receiver holds.
    limits.Result.BALANCE: N_("Over the receiver's balance limit of {limit_text}."),
}


def within_limits(step: Step, retry_at, *, kind) -> Step:
    """``step`` (which quotes ``amount`` and ``fee``), then the caller's own limits that can be
    known before the PIN (``limits.before_pin``) for a request of ``kind`` (or ``kind(ctx)``):
    when one is broken, the amount screen ``retry_at`` is shown again saying the limit and
    what is left. ``retry_at`` maps each outcome of ``step`` that leads on to its amount screen
    (a plain name stands for {"ok": name}). Only the caller's own limits: another person's
    balance room or spending is theirs alone (an agent's screen must not tell a customer's
    balance, even as a yes/no that a search on amounts would turn into the figure), so the
    worker's check, the final word, refuses those and tells both by SMS."""
    screens = retry_at if isinstance(retry_at, dict) else {"ok": retry_at}

    def run(ctx) -> str:
        outcome = step.run(ctx)
        if outcome not in screens:
            return outcome
        known = ctx.account_id is not None  # the caller's facts: wallet, role and tier
        refusal = limits.before_pin(
            db.session,
            kind(ctx) if callable(kind) else kind,
            ctx.data["amount"],
            ctx.data.get("fee", 0),
            payer_account_id=ctx.account_id if known else ctx.user.account_id,
            payer_tier=(ctx.tier if ctx.role == Role.CUSTOMER.value else None) if known else limits.READ,
        )
        if refusal is None:
            return outcome
        ctx.data.update(limit_text=money(refusal.limit), left_text=money(refusal.left))
        return f"{refusal.result}@{outcome}"

    exits = dict(step.exits)
    for outcome, screen in screens.items():
        exits.update({f"{r}@{outcome}": Retry(screen, message) for r, message in OVER_YOURS.items()})
    return Step(step.about, run, exits)


def amount(text: str) -> int | None:
    # Digits only: parse_major also takes "1,000", but "1,0,0" typed on a keypad is a mistake.
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return parse_major(text)
    except InvalidAmount:
        return None


def name(text: str) -> str | None:
    text = text.strip()
    if not _NAME.fullmatch(text):
        return None
    return text[0].upper() + text[1:]


def language(text: str) -> str | None:
    """The language numbered ``text`` in the country's language menu (``country.language_menu``)."""
    numbered = {str(n): lang for n, lang in enumerate(country.menu_languages(), start=1)}
    return numbered.get(text)  # exactly as the menu shows it: "01" or "1.0" is no choice


# -- helpers for steps -----------------------------------------------------------------------


def service_code() -> str:
    return current_app.config["SERVICE_CODE"]


def shown_name(user) -> str:
    return shorten(user.name, SHOWN_NAME_LIMIT)


def typed_pin(ctx) -> str:
    """The PIN just typed (``ctx.secret``), checked with the lock-out (``pin_guard``): "ok",
    "wrong" (``tries_left`` set for the reason shown) or "locked". Every flow checks a PIN
    here, through ``pin_step`` or ``pin_then``."""
    # The caller's row locked and read once, as a plain row (``ctx.locked``); the common case (a
    # right PIN, no lock, no wrong tries) writes nothing and loads no object (ctx.user stays
    # unloaded until a flow asks). Anything else is decided on the row loaded (already locked:
    # check_pin) with what argon2 said of the PIN.
    row = ctx.lock_user_row()
    if row is not None:
        result, verified = check_locked_row(row, ctx.secret)
        if result is not None:
            ctx.data["tries_left"] = tries_left(row)
            return result.value
        ctx.load_user_locked()
        result = check_pin(db.session, ctx.user, ctx.secret, locked=True, verified=verified)
    else:  # the row loaded already (then locked here), or the number moved
        locked = ctx.load_user_locked()
        result = check_pin(db.session, ctx.user, ctx.secret, locked=locked)
    ctx.data["tries_left"] = tries_left(ctx.user)
    return result.value


def pin_step(then: str, retry_at: str) -> Step:
    """Check the PIN just typed on ``retry_at``; a wrong one re-asks there, saying how many
    tries are left; the last wrong one locks the account and ends the session."""
    return Step(
        "check the PIN, counting wrong ones",
        typed_pin,
        {
            "ok": then,
            "wrong": Retry(retry_at, N_("Wrong PIN. {tries_left} tries left.")),
            "locked": "common.locked",
        },
    )


def wallet(ctx):
    """The caller's wallet, read fresh now: one statement (loading the relationship, then
    refreshing it, took two). Every balance a flow shows or checks is read here (or by
    ``available``, its one figure without the object), after the PIN check where there is one
    (a read taken with the row lock may have waited for it while a worker posted:
    tests/test_attack_pin_hop.py)."""
    return db.session.get(Account, payer_account_id(ctx), populate_existing=True)


def payer_account_id(ctx) -> int:
    """The caller's wallet: the one on the row the PIN check locked (``ctx.locked``), else the
    loaded row's."""
    return ctx.locked.account_id if ctx.locked is not None and not ctx.user_loaded else ctx.user.account_id


def available(ctx) -> int:
    """What the caller may spend, read now (``submit.spendable_statement``: the available
    balance less the requests still queued, this hop's own left out) by one plain statement on
    the hop's transaction (no object). After the PIN check, as ``wallet`` says."""
    from ...payments.submit import spendable

    return spendable(db.session, payer_account_id(ctx), ctx.data.get("transfer_id") or "")


def spendable_text(spendable: int) -> str:
    """What a short screen's "Your balance is ..." says: what may be spent, never below zero
    (requests recorded without this check, a standing order's run or an approved payment
    request, may queue more than the balance: "-KES 2,110.00" read as a debt)."""
    return money(max(spendable, 0))


def replayed(ctx) -> bool:
    """Whether the request this PIN hop records (``transfer_id``) is recorded already: by a
    first run of the same hop whose answer never reached the phone (it failed after its commit,
    or its session was not saved), sent again by the gateway or the person. Its money may have
    gone since, so the balance says nothing of it then: the record's replay answers (nothing
    new, the same "ok"; another order under the id, "error"), never "not enough money" for a
    send that went. Asked only when the balance is short: the common hop never asks."""
    from ...payments.models import TransferRequest

    return db.session.get(TransferRequest, ctx.data["transfer_id"]) is not None


def record_payment(ctx, *, kind: str, debit_account_id: int, credit_account_id: int, **fields) -> str:
    """After the PIN: check the payer can cover amount + fee, record the request under the id
    minted at the confirm screen (its commit announces it). "ok", "short" or "error". On
    PostgreSQL the balance's read and the insert are one statement
    (``submit.record_covered_row``), after the PIN check's row lock, as ``wallet`` says."""
    from ...payments.submit import ConflictingRequest, record_covered_row, record_request_row

    data = ctx.data
    order = dict(
        request_id=data["transfer_id"],
        kind=kind,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=data["amount"],
        fee=data.get("fee", 0),
        **fields,
    )
    # The request's session itself, not the scoped proxy: the record, its doorbell and its
    # trace id each looked the proxy's session up (a few calls each).
    session = db.session()
    try:
        recorded, spendable = record_covered_row(
            session, payer_account_id(ctx), data["amount"] + data.get("fee", 0), **order
        )
        if recorded is None:  # short: nothing written
            if not replayed(ctx):
                data["balance_text"] = spendable_text(spendable)
                return "short"
            record_request_row(session, **order)  # the replay's answer: the same order, or another
    except ConflictingRequest:
        return "error"
    return "ok"


def pin_then(ctx, then) -> str:
    """Check the PIN just typed (counting wrong ones), then run ``then(ctx)``."""
    outcome = typed_pin(ctx)
    return then(ctx) if outcome == "ok" else outcome


def pin_exits(at: str, **more) -> dict:
    """The exits of a step that checks the PIN typed on ``at``, plus ``more``."""
    return {
        "wrong": Retry(at, N_("Wrong PIN. {tries_left} tries left.")),
        "locked": "common.locked",
        "error": "common.error",
        **more,
    }


def which_lock(ctx) -> str:
    """An operator's lock is lifted only by customer care, never by an agent: say which."""
    # The caller's facts say it (locked_until) unless the hop has the row: a PIN check that
    # just locked it, or no facts.
    holder = ctx.user if ctx.user_loaded or ctx.caller is None else ctx.caller
    if holder is not None and is_operator_locked(holder):
        return "by_tuma"
    # An agent unlocks only a customer's PIN (agent_lookup): a business is sent to customer care.
    return "pin" if holder is None or holder.role == Role.CUSTOMER.value else "business"


FLOW = {
    # Where every locked account lands (the home of a locked caller, a PIN check that locks).
    "locked": Step(
        "which lock: wrong PINs (a customer's, a business's) or Tuma's",
        which_lock,
        {"pin": "pin_locked", "business": "business_pin_locked", "by_tuma": "by_tuma"},
    ),
    "pin_locked": Screen(
        "the account's PIN is locked after wrong tries (an agent may unlock it)",
        N_("Your PIN is locked after too many wrong tries. Ask an agent or customer care to unlock it."),
        end=True,
    ),
    "business_pin_locked": Screen(
        "an agent's or merchant's PIN is locked after wrong tries (only customer care unlocks it)",
        N_("Your PIN is locked after too many wrong tries. Call customer care to unlock it."),
        end=True,
    ),
    "by_tuma": Screen(
        "the account is locked by an operator (only customer care unlocks it)",
        N_("Your Tuma account is locked by Tuma. Please call customer care."),
        end=True,
    ),
    "error": Screen(
        "something failed on our side",
        N_("Sorry, something went wrong. Nothing was sent. Please try again later."),
        end=True,
    ),
}

SAMPLE = {
    "tries_left": 2,
    "country_code": "9999",
    "limit_text": WIDEST_AMOUNT,
    "left_text": WIDEST_AMOUNT,
}
