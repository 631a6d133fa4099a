"""The back office's way to change a customer's KYC tier (``users.tier``, read by the worker's
limits in ``ussd_app.limits``), plugged into ``seams``. Only customers have a tier: agents'
and merchants' wallets are not held to tier limits. The view audits each change with the
operator, the old and the new tier and the ID document checked (or the reason for lowering).
"""

from ..users import Role, Tier
from . import seams


class CustomerTiers:
    tiers = [t.value for t in Tier]

    def tier_of(self, user) -> str | None:
        return user.tier if user.role == Role.CUSTOMER.value else None

    def upgrade(self, session, user, tier: str, operator_id: int, id_document: str) -> None:
        """Set ``user``'s tier in the caller's transaction (raising or lowering it)."""
        if user.role != Role.CUSTOMER.value:
            raise ValueError(f"{user.name} is a {user.role}: only customers have a KYC tier")
        if tier not in self.tiers:
            raise ValueError(f"there is no tier {tier!r}")
        if user.tier == tier:
            raise ValueError(f"{user.name} is already {tier}")
        user.tier = tier


def init_app(app) -> None:
    seams.register_tier_provider(CustomerTiers())
