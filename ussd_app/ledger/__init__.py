"""The escrow ledger: accounts, immutable transfers, two-phase holds, invariants.

Vocabulary (TigerBeetle's, used the same way everywhere): an *account* has debits and credits,
each pending and posted; a *transfer* moves an amount from a debit account to a credit
account; a *pending* transfer holds it until a later transfer *posts* or *voids* it.
"""

from .accounts import ensure_house_accounts, house_account, open_account
from .engine import LateOverflow, Locked, TransferSpec, create_transfers, lock_accounts
from .models import (
    Account,
    AccountFlags,
    AccountKind,
    RejectedTransfer,
    Transfer,
    TransferFlags,
)
from .results import TransferResult

__all__ = [
    "Account",
    "AccountFlags",
    "AccountKind",
    "LateOverflow",
    "Locked",
    "RejectedTransfer",
    "Transfer",
    "TransferFlags",
    "TransferResult",
    "TransferSpec",
    "create_transfers",
    "ensure_house_accounts",
    "house_account",
    "lock_accounts",
    "open_account",
]
