"""Fraud controls in the menus (``ussd_app/fraud.py`` decides; this wires it into the flows):
the SIM-swap gate before a transfer is recorded, and the name look-up throttle of send money.

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

Name look-ups. Send money shows the recipient's registered name. Each look-up is counted, and
so is a cancel at the confirm screen that showed it; when ``fraud.lookup_delay_or_block`` says
to wait, the look-up is refused with how long to wait, before the name is read.
"""

import math

from ... import fraud
from ...extensions import db
from ..engine import N_, Screen

# Exits to add to a step that calls ``sim_swap_gate`` (see ``guarded``).
EXITS = {"sim_swap": "fraud.sim_swap", "sim_swap_unknown": "fraud.sim_swap_unknown"}


def sim_swap_gate(ctx) -> str | None:
    """None when the customer's SIM lets them move ``ctx.data["amount"]`` now, else the
    outcome to leave by ("sim_swap" or "sim_swap_unknown", see ``EXITS``)."""
    phone, amount = ctx.user.phone, ctx.data["amount"]
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


def guarded(record):
    """``record(ctx)`` behind the SIM-swap gate: for ``common.pin_then``."""

    def run(ctx) -> str:
        return sim_swap_gate(ctx) or record(ctx)

    return run


def lookup_allowed(ctx) -> bool:
    """Whether the customer may look a name up now; counts the look-up when they may.
    When not, ``wait_minutes`` says how long to wait (for ``fraud.throttled``)."""
    wait = fraud.lookup_delay_or_block(ctx.user.phone)
    if wait > 0:
        ctx.data["wait_minutes"] = max(1, math.ceil(wait / 60))
        return False
    fraud.note_name_lookup(ctx.user.phone)
    return True


def note_cancel(ctx) -> None:
    fraud.note_cancel_at_name(ctx.user.phone)


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
}

SAMPLE = {"wait_minutes": 60}
