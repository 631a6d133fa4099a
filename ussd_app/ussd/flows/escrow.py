"""My approvals for escrow-held payments: a protected purchase waits for its buyer to confirm
delivery (approve: the merchant is paid) or to dispute it (decline: the operator decides).
Registered with ``ussd.approvals`` by ``flows.init_app``."""

from ...i18n import t
from ...messages import money
from ...payments import holds
from ...payments.models import RequestKind, TransferRequest
from ...users import holders
from .. import approvals
from ..engine import N_


def _owned(session, user, key: str) -> TransferRequest | None:
    hold = session.get(TransferRequest, key)
    if hold is None or hold.kind != RequestKind.PROTECTED_PURCHASE.value:
        return None
    return hold if hold.debit_account_id == user.account_id else None


class DeliveryConfirmations:
    name = "delivery"
    decline_reports_a_problem = True  # "Report a problem" in My approvals (a dispute)

    def pending(self, session, user) -> list[approvals.PendingApproval]:
        found = []
        waiting = holds.pending_holds(
            session, RequestKind.PROTECTED_PURCHASE, debit_account_id=user.account_id
        )
        merchants = holders(session, (hold.credit_account_id for hold in waiting))
        for hold in waiting:
            merchant = merchants.get(hold.credit_account_id)
            summary = t(
                user.language,
                N_("Confirm delivery: {amount} to {name}"),
                amount=money(hold.amount),
                name=merchant.name if merchant else "",
            )
            found.append(approvals.PendingApproval(hold.id, summary, spends=hold.amount))
        return found

    def approve(self, session, user, key: str) -> bool:
        hold = _owned(session, user, key)
        return hold is not None and holds.resolve(session, hold, RequestKind.PROTECTED_POST) is not None

    def decline(self, session, user, key: str) -> bool:
        """Declining a delivery opens a dispute: the money stays held for the operator."""
        hold = _owned(session, user, key)
        return hold is not None and holds.open_dispute(session, hold)
