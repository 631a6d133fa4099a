"""Where other parts of Tuma plug into the back office.

The back office shows disputes and reversals awaiting a decision, and upgrades a customer's
KYC tier after an ID check; those belong to the escrow flows (disputes, reversals) and to
tariffs and limits (tiers). Each registers a provider here from its own ``init_app``; until
one does, the pages say honestly that there is nothing to decide, or no tier to change.

    from ussd_app.admin import seams
    seams.register_decision_source(MyDisputes())     # .name, .pending(session), .decide(...)
    seams.register_tier_provider(MyTiers())          # .tiers, .tier_of(user), .upgrade(...)
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PendingDecision:
    """One dispute or reversal waiting for an operator."""

    source: str  # the registered source's name
    id: str  # the source's own id for it
    kind: str  # "dispute", "reversal" or "allowance" (a settlement refused)
    summary: str  # one line for the operator (no secrets)
    amount: int  # minor units
    created_at: datetime | None = None
    transfer_code: str | None = None  # links to the transfer's trail


class DecisionSource(Protocol):
    name: str

    def pending(self, session) -> list[PendingDecision]: ...

    # Optional: a source that lists one page at a time also has ``listed(session) ->
    # (pending, note)``, the note saying how many wait beyond the page (None when none do);
    # the disputes page shows it (admin/decisions.py's RefusedAllowanceSettlements).

    def decide(self, session, decision_id: str, approve: bool, operator_id: int, note: str) -> str:
        """Carry out the decision in the caller's transaction; return one line for the page.
        Raise ValueError with a reason the operator can read to refuse."""
        ...


class TierProvider(Protocol):
    tiers: list[str]

    def tier_of(self, user) -> str | None: ...

    def upgrade(self, session, user, tier: str, operator_id: int, id_document: str) -> None:
        """Change the tier in the caller's transaction; ValueError with a reason to refuse."""
        ...


_decision_sources: dict[str, DecisionSource] = {}
_tier_provider: list[TierProvider] = []


def register_decision_source(source: DecisionSource) -> None:
    _decision_sources[source.name] = source


def decision_sources() -> dict[str, DecisionSource]:
    return dict(_decision_sources)


def register_tier_provider(provider: TierProvider) -> None:
    _tier_provider[:] = [provider]


def tier_provider() -> TierProvider | None:
    return _tier_provider[0] if _tier_provider else None


def tier_of(user) -> str | None:
    provider = tier_provider()
    if provider is not None:
        return provider.tier_of(user)
    return getattr(user, "tier", None)
