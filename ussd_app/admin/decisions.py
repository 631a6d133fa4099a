"""Disputed protected purchases on the back office's disputes page.

A buyer who declines a delivery in "My approvals" opens a dispute (``payments/holds.py``): the
money stays held until an operator decides. Approving the dispute sides with the buyer (the
hold is voided, the money goes back); refusing it sides with the merchant (the hold is posted).
The decision runs ``holds.decide_dispute`` in the page's transaction, with its audit row; it
resolves the hold exactly once, as the ``flask disputes decide`` command does.
"""

from sqlalchemy import select

from ..payments.holds import decide_dispute, disputed
from ..users import User
from .seams import PendingDecision


class ProtectedPurchaseDisputes:
    name = "protected"

    def pending(self, session) -> list[PendingDecision]:
        rows = disputed(session)
        ids = {r.debit_account_id for r in rows} | {r.credit_account_id for r in rows}
        people = (
            {u.account_id: u for u in session.execute(select(User).where(User.account_id.in_(ids))).scalars()}
            if ids
            else {}
        )

        def who(account_id: int) -> str:
            user = people.get(account_id)
            return f"{user.name} {user.phone}" if user else f"account {account_id}"

        return [
            PendingDecision(
                source=self.name,
                id=r.code,
                kind="dispute",
                summary=(
                    f"{who(r.debit_account_id)} disputes a protected purchase from "
                    f"{who(r.credit_account_id)}. Approve refunds the buyer; refuse pays the merchant."
                ),
                amount=r.amount,
                created_at=r.created_at,
                transfer_code=r.code,
            )
            for r in rows
        ]

    def decide(self, session, decision_id: str, approve: bool, operator_id: int, note: str) -> str:
        code = (decision_id or "").strip().upper()[:10]
        # DisputeError is a ValueError: the page shows its reason.
        request = decide_dispute(session, code, for_buyer=approve)
        side = "refunded to the buyer" if approve else "paid to the merchant"
        return f"{code}: dispute {'approved' if approve else 'refused'}, {side} ({request.code})."


def init_app(app) -> None:
    from . import seams

    seams.register_decision_source(ProtectedPurchaseDisputes())
