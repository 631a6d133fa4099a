"""The decision sources of the back office's disputes page, wired in ``init_app``.

- Disputed protected purchases. A buyer who declines a delivery in "My approvals" opens a
  dispute (``payments/holds.py``): the money stays held until an operator decides. Approving
  the dispute sides with the buyer (the hold is voided, the money goes back); refusing it sides
  with the merchant (the hold is posted). The decision runs ``holds.decide_dispute`` in the
  page's transaction, with its audit row; it resolves the hold exactly once, as the
  ``flask disputes decide`` command does.
- Reversals still held (``payments/reversals.py``): the sender asked for a send made by mistake
  back; the operator may decide either way in the recipient's place.
- Allowances whose settlement the merchant's lock keeps refusing: void the hold (the customer's
  money back, the charges forgiven) or leave it to be tried again (``RefusedAllowanceSettlements``).
"""

from ..messages import money
from ..payments import holds, reversals
from ..payments.holds import decide_dispute, disputed
from ..payments.models import RequestKind, TransferRequest
from ..users import find_by_account, holders
from .seams import PendingDecision


class ProtectedPurchaseDisputes:
    name = "protected"

    def pending(self, session) -> list[PendingDecision]:
        rows = disputed(session)
        ids = {r.debit_account_id for r in rows} | {r.credit_account_id for r in rows}
        people = holders(session, ids)

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


class OperatorReversals:
    """The back office: reversals still held, which the operator may decide either way."""

    name = "reversals"

    def pending(self, session) -> list[PendingDecision]:
        found = []
        for hold in holds.pending_holds(session, RequestKind.REVERSAL):
            sender, recipient = (
                find_by_account(session, hold.credit_account_id),
                find_by_account(session, hold.debit_account_id),
            )
            summary = (
                f"{sender.name if sender else '?'} {sender.phone if sender else ''} asks "
                f"{recipient.name if recipient else '?'} {recipient.phone if recipient else ''} "
                f"to return a send made by mistake (hold {hold.code})"
            )
            found.append(
                PendingDecision(
                    self.name, hold.id, "reversal", summary, hold.amount, hold.created_at, hold.reference
                )
            )
        return found

    def decide(self, session, decision_id: str, approve: bool, operator_id: int, note: str) -> str:
        request = reversals.operator_decides(session, decision_id, approve=approve)
        verb = "returned to the sender" if approve else "left with the recipient (hold voided)"
        amount = money(request.amount)
        return f"Reversal of {request.reference}: {amount} {verb}."


class RefusedAllowanceSettlements:
    """The back office: allowances whose settlement the merchant's lock has refused
    ALLOWANCE_SETTLE_ALERT_AFTER times (as ``flask review list`` lists them). Approving voids the
    hold (``allowances.decisions.void_refused``, as ``flask review void`` does: the whole hold
    back to the customer, the charges forgiven; the note is the reason); refusing leaves it to be
    tried again (the default: it stays listed while it is refused)."""

    name = "allowances"

    def pending(self, session) -> list[PendingDecision]:
        return self.listed(session)[0]

    def listed(self, session) -> tuple[list[PendingDecision], str | None]:
        """The first page (REVIEW_PAGE_SIZE, soonest due again first), and a line saying how
        many wait in all when that is more than the page (None when all are listed)."""
        from ..payments.allowances.settlement import refused_settlements

        page = refused_settlements(session)
        note = None
        if page.more:
            note = (
                f"Allowance settlements refused again and again: {page.summary}; "
                f"{page.more:,} more on the review page."
            )
        found = []
        accounts = {a for _, last in page for a in (last.debit_account_id, last.credit_account_id)}
        people = holders(session, accounts)
        for allowance, last in page:
            customer, merchant = people.get(last.debit_account_id), people.get(last.credit_account_id)
            held = session.get(TransferRequest, allowance.hold_request_id)  # loaded with the page
            summary = (
                f"{merchant.name if merchant else '?'} {merchant.phone if merchant else ''} cannot be paid "
                f"{money(allowance.tab_amount)} of {customer.name if customer else '?'} "
                f"{customer.phone if customer else ''}'s allowance ({last.result}, "
                f"{holds.attempt_of(last.pending_request_id, last.id)} times); {money(held.amount)} is held. "
                "Approve voids the hold: all of it back to the customer, the charges forgiven "
                "(the note is the reason). Refuse leaves it to be tried again."
            )
            found.append(
                PendingDecision(
                    self.name, allowance.id, "allowance", summary, held.amount, last.created_at, held.code
                )
            )
        return found, note

    def decide(self, session, decision_id: str, approve: bool, operator_id: int, note: str) -> str:
        from ..payments.allowances.decisions import void_refused
        from .models import Operator

        if not approve:
            return f"Allowance {decision_id}: left to be tried again."
        operator = session.get(Operator, operator_id)
        done = void_refused(
            session,
            decision_id,
            operator=operator.name if operator else str(operator_id),
            reason=note,
            operator_id=operator_id,
            via="admin",
        )
        if done.already:
            return f"Allowance {done.allowance_id} was voided already ({done.code}): nothing done."
        return (
            f"Allowance {done.allowance_id} voided ({done.code}): {money(done.released)} back to the "
            f"customer, {money(done.forgiven)} forgiven."
        )


def init_app(app) -> None:
    from . import seams

    # Reversals first: the disputes page lists the sources in the order they registered.
    seams.register_decision_source(OperatorReversals())
    seams.register_decision_source(ProtectedPurchaseDisputes())
    seams.register_decision_source(RefusedAllowanceSettlements())
