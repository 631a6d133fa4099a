"""Approvals: things that wait for a customer's PIN, from whichever module asked.

Payment requests, agent-started withdrawals and reversal requests (other issues) each plug in
an ``ApprovalProvider``; the "My approvals" flow lists what every provider has pending for
the customer and, after the PIN, calls the provider's ``approve`` or ``decline``. The menu
never knows what an approval does.
"""

from dataclasses import dataclass
from typing import Protocol

SEPARATOR = ":"


@dataclass(frozen=True)
class PendingApproval:
    key: str  # unique within its provider, no ":"
    summary: str  # one short line in the customer's language, e.g. "Pay KES 500 to Mama Mboga"
    # What approving sends out of (or releases from) this customer's wallet, minor units: large
    # amounts pass the SIM-swap gate first, as in every other flow that moves their money.
    spends: int = 0
    # The item's own screen, before the PIN, when one line of the list cannot say all that
    # approving agrees to (an allowance: who, the limit, the period, the most a charge); at most
    # DETAILS_LIMIT septets. Empty: the summary.
    details: str = ""
    # What this item's line was priced at when the list was shown (a payment request's fee from
    # the tariff in force then), JSON-serialisable, or None when nothing on it is priced at the
    # list (a stored row's amount and fee). My approvals keeps it and hands it back to the
    # provider's ``approve`` and ``before_approving`` (keyword ``quote``) so that what is
    # charged after the PIN is what was shown before it, as Send money records its confirm
    # screen's quote.
    quote: dict | None = None


DETAILS_LIMIT = 136  # septets: the item screen's text above "1. Approve / 2. Decline"


class Short(Exception):
    """A provider's ``approve`` raises it, before writing anything, when what approving takes
    (``needed``, minor units) is more than the customer may spend now (``spendable``: their
    balance less their requests still queued, ``submit.spendable_statement``): My approvals
    says "Not enough money" at the PIN, as Send money does, not "Approved" and then a refusal
    by SMS. (An agent-started withdrawal raises it after recording its failure and the SMS to
    the customer and the agent: the hop commits them, the screen says "Not enough money".)"""

    def __init__(self, needed: int, spendable: int):
        super().__init__(needed, spendable)
        self.needed, self.spendable = needed, spendable


class ApprovalProvider(Protocol):
    name: str  # unique, no ":"

    def pending(self, session, user) -> list[PendingApproval]:
        """What waits for ``user``'s PIN, oldest first."""

    def approve(self, session, user, key: str) -> bool:
        """Carry out the approval (adds to the session; the request commits). False when the
        item is no longer pending (expired, withdrawn, already decided); ``Short`` when the
        customer cannot cover it (nothing written). A provider whose
        items carry a ``quote`` also takes ``quote=`` (the one shown; None: a list shown before
        quotes were kept) and charges that, never a price read after the PIN."""

    def decline(self, session, user, key: str) -> bool:
        """Refuse it. False when it is no longer pending."""


_providers: dict[str, ApprovalProvider] = {}


def register(provider: ApprovalProvider) -> None:
    if SEPARATOR in provider.name:
        raise ValueError(f"a provider name has no {SEPARATOR!r}: {provider.name!r}")
    _providers[provider.name] = provider


def unregister(name: str) -> None:
    _providers.pop(name, None)


def pending_for(session, user) -> list[tuple[str, PendingApproval]]:
    """[(reference, item)] over every provider; a reference is "provider:key"."""
    found = []
    for name, provider in sorted(_providers.items()):
        for item in provider.pending(session, user):
            found.append((f"{name}{SEPARATOR}{item.key}", item))
    return found


def declining_reports_a_problem(reference: str) -> bool:
    """Whether declining the item ``reference`` names reports a problem for Tuma to decide (a
    provider's ``decline_reports_a_problem``, e.g. a protected purchase's dispute), so the menu
    says so instead of "Decline"."""
    provider = _providers.get((reference or "").partition(SEPARATOR)[0])
    return bool(getattr(provider, "decline_reports_a_problem", False))


def approved_text(reference: str) -> str | None:
    """The message id of the END screen after approving ``reference`` when its provider says
    what follows itself (``approved_text``: an allowance sends no SMS until it settles); None:
    My approvals' own ("You will receive an SMS confirmation")."""
    provider = _providers.get((reference or "").partition(SEPARATOR)[0])
    return getattr(provider, "approved_text", None)


def _quoted(quote) -> dict:
    """The keyword a provider's ``approve``/``before_approving`` gets: only when its item was
    quoted, so providers that never quote keep their three-argument signature."""
    return {} if quote is None else {"quote": quote}


def decide(session, user, reference: str, *, approve: bool, quote: dict | None = None) -> bool:
    """Approve or decline the item ``reference`` names; False when it is gone (``Short``, from
    the provider, when the customer cannot cover it). ``quote``: the item's
    ``PendingApproval.quote`` as the list showed it (approving charges that)."""
    name, _, key = (reference or "").partition(SEPARATOR)
    provider = _providers.get(name)
    if provider is None or not key:
        return False
    if approve:
        return provider.approve(session, user, key, **_quoted(quote))
    return provider.decline(session, user, key)


def before_approving(session, user, reference: str, *, quote: dict | None = None):
    """Why approving ``reference`` would be refused, if its provider can tell before the PIN
    (a limit: ``limits.Refusal``), else None. Providers may offer
    ``before_approving(session, user, key)``; the worker's check stays the final word."""
    name, _, key = (reference or "").partition(SEPARATOR)
    check = getattr(_providers.get(name), "before_approving", None)
    return check(session, user, key, **_quoted(quote)) if check is not None and key else None
