"""Figures read from the ledger alone, asked by its invariants (``check.py``) and by the read
model above it (``ussd_app/reports.py``: the back office and ``/metrics``), so each question
has one answer. Nothing here writes.
"""

from sqlalchemy import Select, func, select
from sqlalchemy.orm import aliased

from .accounts import house_account
from .models import Account, AccountKind, Transfer, TransferFlags


def unresolved_holds(*columns) -> Select:
    """``SELECT columns`` over the pending transfers (holds) that no transfer has posted or
    voided yet: the escrow held right now. Add ``group_by`` and the like to taste."""
    resolution = aliased(Transfer)
    return (
        select(*columns)
        .select_from(Transfer)
        .outerjoin(resolution, resolution.pending_id == Transfer.id)
        .where(Transfer.flags.op("&")(int(TransferFlags.PENDING)) != 0, resolution.id.is_(None))
    )


def e_money(session) -> tuple[int, int]:
    """(trust balance, e-money in circulation): the bank money in the trust account (an asset:
    debits minus credits) and what every other account holds (credits minus debits)."""
    trust = house_account(session, AccountKind.TRUST)
    trust_balance = trust.debits_posted - trust.credits_posted
    circulation = int(
        session.execute(
            select(func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0)).where(
                Account.id != trust.id
            )
        ).scalar_one()
    )
    return trust_balance, circulation
