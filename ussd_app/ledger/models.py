"""The ledger's two entities: accounts and transfers (TigerBeetle's data model).

Account guarantees (each has a test in tests/test_ledger_*.py):
- the four balance columns only change by creating a transfer (``ledger.engine``);
- an account flagged DEBITS_MUST_NOT_EXCEED_CREDITS never has
  ``debits_pending + debits_posted > credits_posted`` (also a database CHECK);
- Σ debits_pending = Σ credits_pending and Σ debits_posted = Σ credits_posted over all accounts.

Transfer guarantees:
- transfers are immutable rows; a mistake is corrected by another transfer;
- at most one transfer per id (the primary key, minted by the client);
- a pending transfer is resolved (posted or voided) at most once: the unique index on
  ``pending_id`` makes a second resolution fail in the database, whatever the app does.
"""

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db

ID_LENGTH = 64
CODE_LENGTH = 24


class AccountKind(enum.StrEnum):
    CUSTOMER = "customer"  # a customer's wallet
    AGENT = "agent"  # an agent's e-float
    MERCHANT = "merchant"  # a merchant's till or pay-bill wallet
    CAUSE = "cause"  # a creator's or cause's wallet: takes tips and donations
    TRUST = "trust"  # the trust (escrow) bank account that backs all e-money 1:1
    FEES = "fees"  # fee revenue
    COMMISSIONS = "commissions"  # commissions owed to agents
    AIRTIME_CLEARING = "airtime_clearing"  # airtime bought, owed to the airtime supplier
    SUSPENSE = "suspense"  # money held for recipients who have not registered yet

    @property
    def is_wallet(self) -> bool:
        return self in WALLET_KINDS


WALLET_KINDS = frozenset({AccountKind.CUSTOMER, AccountKind.AGENT, AccountKind.MERCHANT, AccountKind.CAUSE})
HOUSE_KINDS = tuple(k for k in AccountKind if k not in WALLET_KINDS)


class AccountFlags(enum.IntFlag):
    NONE = 0
    # Refuse any transfer that would make debits_pending + debits_posted exceed credits_posted.
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    # Refuse any transfer that would make credits_pending + credits_posted exceed debits_posted.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class TransferFlags(enum.IntFlag):
    NONE = 0
    LINKED = 1  # succeeds or fails together with the next transfer in the batch
    PENDING = 2  # an escrow hold: reserves the amount until posted, voided or expired
    POST_PENDING_TRANSFER = 4  # posts (all or part of) the pending transfer named by pending_id
    VOID_PENDING_TRANSFER = 8  # voids the pending transfer named by pending_id


class Account(db.Model):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
            name="balances_not_negative",
        ),
        CheckConstraint(
            "(flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted",
            name="debits_within_credits",
        ),
        CheckConstraint(
            "(flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted",
            name="credits_within_debits",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    flags: Mapped[int] = mapped_column(Integer, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)

    @property
    def available(self) -> int:
        """What the holder may spend: posted credits less posted and held debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def debit_balance(self) -> int:
        return self.debits_posted - self.credits_posted

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.kind} available={self.available}>"


class Transfer(db.Model):
    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="accounts_differ"),
        Index("ix_transfers_debit_account_created", "debit_account_id", "created_at"),
        Index("ix_transfers_credit_account_created", "credit_account_id", "created_at"),
        # Only holds have a moment to expire at: the rest (NULL) need no entry (0016).
        Index(
            "ix_transfers_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
            sqlite_where=text("expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The pending transfer this one posts or voids. Unique: a hold resolves at most once.
    pending_id: Mapped[str | None] = mapped_column(ForeignKey("transfers.id"), unique=True, default=None)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    flags: Mapped[int] = mapped_column(Integer, default=0)
    timeout: Mapped[int] = mapped_column(Integer, default=0)  # seconds; 0 = never expires
    expires_at: Mapped[int | None] = mapped_column(BigInteger, default=None)  # µs
    created_at: Mapped[int] = mapped_column(BigInteger)  # µs since epoch, database clock
    # Free for the caller: Tuma stores the id of the transfer request that made this transfer.
    user_data: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True, default=None)

    @property
    def is_pending(self) -> bool:
        return bool(self.flags & TransferFlags.PENDING)


class RejectedTransfer(db.Model):
    """A transfer id that failed, with its fields and why: a failed id stays failed."""

    __tablename__ = "rejected_transfers"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    debit_account_id: Mapped[int | None] = mapped_column(Integer)
    credit_account_id: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    pending_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    flags: Mapped[int] = mapped_column(Integer)
    timeout: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[int] = mapped_column(BigInteger)
    user_data: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None)
