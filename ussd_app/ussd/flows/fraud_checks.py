"""Fraud controls in the menus (``ussd_app/fraud.py`` decides; this wires it into the flows):
the SIM-swap gate before a transfer is recorded, and the name look-up throttle.

SIM swap. Every flow that moves a customer's money (send money, send to an unregistered
number, withdraw cash, buy goods, pay bill, protected purchase) asks ``sim_swap_gate`` after
the PIN is verified and before the request is recorded:

- after the PIN, because the insight is a paid query to Africa's Talking: only a customer who
  proved they know the PIN can make us ask (walking to the confirm screen and cancelling over
  and over costs nothing), and a thief with a swapped SIM learns nothing before the PIN guard;
- right before ``record_request``, because that is the moment of commitment: no cached "ok"
  from a screen ago, and a blocked transfer leaves nothing behind (no request, no job, no SMS).
  The wait is bounded by ``SIM_SWAP_TIMEOUT_SECONDS`` (2 s by default), well inside a USSD hop.

Transfers at or below ``SIM_SWAP_THRESHOLD_MAJOR`` never ask, so a slow or failing gateway
never blocks everyday payments. Above it a swap within the window ends the session telling the
customer to visit an agent with their ID; no usable answer in time ("unknown") refuses the
large transfer for now and asks them to try again in a few minutes: for a transfer that large,
failing closed costs a retry, failing open could cost a victim their savings. Nothing is
recorded in either case.

Name look-ups. Every screen that shows a holder's registered name is a look-up: send money's
recipient, an agent's customer (deposit, withdraw for a customer, unlock), and the payers of a
payment request (My requests shows their names once it is recorded), and the agent's "is this
number registered?" when registering a customer. Each is counted, or refused with how long to
wait, in one atomic step (``lookup_allowed``, ``take_lookups``: ``fraud.look_up_names``, the one
copy of the rule), before anything of the number is told. Leaving a flow that showed a name
without recording anything counts as a cancel however it is left (Cancel, ``0``, ``00``, a
dropped session): ``lookup_allowed(shows=...)`` counts the cancel in the same step as the
look-up, and ``name_used`` takes it back when the request is recorded. A payment request's
payers, whose names are shown only once it is recorded, are counted after the PIN and given
back if the hop does not commit (``take_lookups``).

Invitations. Sending to a number not on Tuma and asking one for money send it an SMS invitation;
``fraud.take_invites`` caps them per sender per day (``INVITES_PER_DAY``) after the PIN, right
before recording; send money also says so before the amount when none are left.
"""

import functools
import math

from flask import current_app

from ... import fraud
from ...extensions import db
from ...queues import undo_unless_committed
from ...users import Role
from ..engine import N_, Screen

# Exits to add to a step that calls ``sim_swap_gate`` (see ``guarded``).
EXITS = {"sim_swap": "fraud.sim_swap", "sim_swap_unknown": "fraud.sim_swap_unknown"}


def sim_swap_gate(ctx, amount: int | None = None) -> str | None:
    """None when the customer's SIM lets them move ``amount`` (default ``ctx.data["amount"]``)
    now, else the outcome to leave by ("sim_swap" or "sim_swap_unknown", see ``EXITS``)."""
    phone, amount = ctx.phone, ctx.data["amount"] if amount is None else amount
    if fraud.may_ask(amount):
        # The insight is a network call of up to SIM_SWAP_TIMEOUT_SECONDS: end the hop's
        # transaction first (the PIN check is final either way), so no database lock (SQLite's
        # write lock, the user's row) is held while Africa's Talking answers.
        db.session.commit()
    verdict = fraud.check_sim_swap(phone, amount)
    if verdict == fraud.SimSwap.BLOCKED:
        return "sim_swap"
    if verdict == fraud.SimSwap.UNKNOWN:
        return "sim_swap_unknown"
    return None


def guarded(record, amount=None):
    """``record(ctx)`` behind the SIM-swap gate: for ``common.pin_then``. ``amount(ctx)``, when
    given, is what the gate weighs instead of ``ctx.data["amount"]`` (a standing order: all
    its payments)."""

    def run(ctx) -> str:
        return sim_swap_gate(ctx, amount(ctx) if amount else None) or record(ctx)

    return run


def _limit(ctx) -> int:
    config = current_app.config
    business = ctx.role in (Role.AGENT.value, Role.MERCHANT.value)
    return config["NAME_LOOKUP_LIMIT_BUSINESS" if business else "NAME_LOOKUP_LIMIT"]


def _refused(ctx, wait: int) -> bool:
    if wait > 0:
        ctx.data["wait_minutes"] = max(1, math.ceil(wait / 60))
        return True
    return False


def lookups_allowed(ctx, count: int = 1) -> bool:
    """Whether the user may look ``count`` names up now (nothing counted: for a screen that
    shows no name yet). When not, ``wait_minutes`` says how long to wait (for
    ``fraud.throttled``)."""
    return not _refused(ctx, fraud.lookup_delay_or_block(ctx.phone, count, _limit(ctx)))


def take_lookups(ctx, count: int) -> bool:
    """Whether the user may look ``count`` names up now (a payment request's payers); counted
    when they may, in the same atomic step (``fraud.look_up_names``). The names are shown
    once the request is recorded: a hop whose transaction does not commit (the record failed)
    gives them back; one that commits keeps them, recorded or refused (the refusal, too, tells
    who is not on Tuma)."""
    if _refused(ctx, fraud.look_up_names(ctx.phone, count, _limit(ctx))):
        return False
    undo_unless_committed(db.session, functools.partial(fraud.give_back_look_ups, ctx.phone, count))
    return True


def lookup_allowed(ctx, shows: str | None = None) -> bool:
    """Whether the user may look a name up now; counts the look-up when they may, in one
    atomic step (``fraud.look_up_name``). ``shows``: the number whose registered name the
    look-up will show (read before, shown only when allowed): a cancel until this flow records
    its request (``name_used``), counted in the same step. A name shown before in this flow for
    another number was left: its cancel stays counted; the same number again (back, then the
    same number) is one cancel, not two."""
    cancel = shows is not None and ctx.data.get("name_shown") != shows
    if _refused(ctx, fraud.look_up_name(ctx.phone, _limit(ctx), cancel=cancel)):
        return False
    if shows is not None:
        ctx.data["name_shown"] = shows
    return True


def note_cancels(ctx, count: int) -> None:
    """Count ``count`` asks called off after their names were shown (My requests, Cancel)."""
    if count:
        fraud.note_cancel_at_name(ctx.phone, count)


def name_used(ctx, token: str) -> None:
    """The flow that showed a name recorded its request ``token``: not a cancel after all (once
    the hop's transaction commits: a rolled back record leaves the cancel counted)."""
    if ctx.data.pop("name_shown", None):
        fraud.note_name_used(ctx.phone, token, db.session)


def note_cancel(ctx) -> None:
    """Cancel chosen at a screen that showed a name: counted already when it was shown
    (``lookup_allowed``); the flag goes, so nothing can take the cancel back."""
    if not ctx.data.pop("name_shown", None):
        fraud.note_cancel_at_name(ctx.phone)


def invites_allowed(ctx, count: int) -> bool:
    """Take ``count`` of the user's invitations for today; when over the cap, none, and
    ``invites_per_day`` is set for ``fraud.invites``."""
    if fraud.take_invites(ctx.phone, count):
        return True
    ctx.data["invites_per_day"] = current_app.config["INVITES_PER_DAY"]
    return False


def invites_left(ctx) -> bool:
    """Whether the user may invite another number today (nothing taken); when not,
    ``invites_per_day`` is set for ``fraud.invites``."""
    if fraud.invites_left(ctx.phone) > 0:
        return True
    ctx.data["invites_per_day"] = current_app.config["INVITES_PER_DAY"]
    return False


def give_back_invites(ctx, count: int) -> None:
    fraud.give_back_invites(ctx.phone, count)


FLOW = {
    "sim_swap": Screen(
        "a recent SIM swap blocks large transfers: nothing was sent",
        N_(
            "For your safety this transfer is blocked: your SIM card was changed recently. Nothing was sent. Visit a Tuma agent with your ID."  # noqa: E501
        ),
        end=True,
    ),
    "sim_swap_unknown": Screen(
        "the SIM-swap check did not answer in time: the large transfer is refused for now",
        N_("We could not complete a security check. Nothing was sent. Please try again in a few minutes."),
        end=True,
    ),
    "throttled": Screen(
        "too many name look-ups: wait before the next",
        N_("Too many look-ups. Try again in {wait_minutes} min."),
        end=True,
    ),
    "invites": Screen(
        "the sender invited as many numbers not on Tuma as a day allows",
        N_("You can invite {invites_per_day} numbers not on Tuma a day. Nothing was sent. Try tomorrow."),
        end=True,
    ),
}

SAMPLE = {"wait_minutes": 60, "invites_per_day": 999}
