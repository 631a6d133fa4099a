"""The tail every flow that moves money (send money, buy goods and pay bill, withdraw, airtime,
My approvals, an agent's deposit and withdrawal; also both payment-request flows) ends in:
confirm → PIN → submit → done, short or cancelled. A flow gives what is its own (the texts,
what it records once the PIN is right, where else its submit may lead) and ``money_tail``
builds the states:

```
confirm    "{the flow's question}"     1 -> pin | 2 -> cancelled (or the flow's cancel step)
pin        [secret] "{the flow's ask}" 4 digits -> submit
submit     the PIN (common.typed_pin), then the flow's ``record``:
           ok -> done | short -> short | wrong -> pin again, saying the tries left
           | locked -> common.locked | error -> common.error | the flow's own exits
done       END "{the flow's done}"
short      END "{the flow's short}"        (only for flows that can be short)
cancelled  END "Cancelled. Nothing was sent."
```

State names are the flow's (``Names``): a stored session or resume snapshot names them, so a
flow keeps the names it had. A flow with a confirm screen of its own (Buy goods' third option,
"Pay with protection", leads to a second tail) builds it with ``confirm_screen`` and leaves
``confirm`` out; so does My approvals, whose item screen asks approve or decline.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ..engine import N_, Choice, Option, Screen, State, Step
from . import common

CANCELLED = N_("Cancelled. Nothing was sent.")


@dataclass(frozen=True)
class Names:
    """The names of the tail's states in the flow."""

    confirm: str = "confirm"
    pin: str = "pin"
    submit: str = "submit"
    done: str = "done"
    short: str = "short"
    cancelled: str = "cancelled"


def confirm_screen(
    what: str,
    say: str,
    *,
    resume: str | None = None,
    pin: str = "pin",
    cancel: str = "cancelled",
    more: tuple[Option, ...] = (),
) -> Screen:
    """The screen before the PIN: ``say`` (who, how much, the fee), 1 Confirm, 2 Cancel, then
    ``more``. ``resume`` says what a dropped session would continue: without it the screen is
    never offered back (nobody continues a payment they cannot see)."""
    return Screen(
        f"confirm {what}",
        say,
        options=(Option(N_("Confirm"), pin), Option(N_("Cancel"), cancel), *more),
        resume=resume,
    )


def money_tail(
    record: Callable[..., str],
    *,
    what: str,
    ask: str,
    done: str,
    confirm: str | None = None,
    resume: str | None = None,
    cancel: str | None = None,
    short: str | None = None,
    cancelled: str | None = CANCELLED,
    exits: dict | None = None,
    names: Names = Names(),
) -> dict[str, State]:
    """The tail's states, by their ``names``.

    ``record(ctx)`` runs once the PIN is right and gives an outcome: "ok", "short" (the payer
    cannot cover it), "error", or one of ``exits`` (outcome -> state). ``what`` says what the
    PIN authorises, for the states' descriptions. The texts are message ids: ``ask`` on the PIN
    screen, ``done`` at the end; ``confirm`` (with ``resume``; Cancel leads to ``cancel``, by
    default the cancelled screen) when the tail has its confirm screen; ``short`` when the flow
    can be short; ``cancelled`` when the tail has the cancelled screen (None: the flow has its
    own, or cannot be cancelled here)."""
    outcomes = {"ok": names.done, **common.pin_exits(names.pin)}
    if short is not None:
        outcomes["short"] = names.short
    outcomes.update(exits or {})
    states: dict[str, State] = {}
    if confirm is not None:
        states[names.confirm] = confirm_screen(
            what, confirm, resume=resume, pin=names.pin, cancel=cancel or names.cancelled
        )
    states[names.pin] = Screen(
        f"the PIN that authorises {what}",
        ask,
        choices=(Choice(common.pin_format, names.submit),),
        otherwise=N_("A PIN is 4 digits."),
        secret=True,
    )
    states[names.submit] = Step(
        f"check the PIN, then carry out {what}",
        lambda ctx: common.pin_then(ctx, record),
        outcomes,
    )
    states[names.done] = Screen(f"{what}: carried out or under way", done, end=True)
    if short is not None:
        states[names.short] = Screen("not enough money for amount and fee", short, end=True)
    if cancelled is not None:
        states[names.cancelled] = Screen("cancelled before the PIN", cancelled, end=True)
    return states
