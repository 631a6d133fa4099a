"""Transfer requests: what a person asked for, recorded before any money moves.

The web side records a request under the id it minted when the person confirmed; its commit
rings the workers (queues.py). A worker turns it into ledger transfers (one linked chain) and
sets its final status in the same database transaction as the postings and the outbox rows.
The database row, not the Redis job, is the truth: a lost job only delays a request.
"""

import base64
import enum
import hashlib
import re
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db
from ..ledger.models import ID_LENGTH


class RequestKind(enum.StrEnum):
    SEND = "send"  # customer to customer, with a fee leg
    FLOAT_ISSUE = "float_issue"  # trust bank deposit to an agent's e-float
    DEPOSIT = "deposit"  # cash-in: an agent's e-float to a customer, free
    WITHDRAWAL = "withdrawal"  # cash-out: a customer to an agent, with fee and commission legs
    BUY_GOODS = "buy_goods"  # a customer pays a merchant's till, free for the customer
    PAY_BILL = "pay_bill"  # a customer pays a merchant's pay-bill number, with an account reference
    TIP = "tip"  # a customer tips a creator or cause (payments/tips.py): small ones send no SMS
    # Holds (a PENDING transfer) and the requests that post or void them (payments/holds.py).
    SEND_UNREGISTERED = "send_unregistered"  # sender -> suspense, for a number not on Tuma yet
    SUSPENSE_POST = "suspense_post"  # post the hold, suspense -> the newly registered
    SUSPENSE_VOID = "suspense_void"  # void the hold: back to the sender
    PROTECTED_PURCHASE = "protected_purchase"  # buyer -> merchant, held until delivery
    PROTECTED_POST = "protected_post"  # post it: delivery confirmed, or the hold fell due
    PROTECTED_VOID = "protected_void"  # void it: a dispute decided for the buyer
    # Reversal of a wrong send (payments/reversals.py): the recipient's funds held for the sender.
    REVERSAL = "reversal"  # recipient -> sender, held until the recipient or the operator decides
    REVERSAL_POST = "reversal_post"  # post it: the recipient agreed, or the operator decided so
    REVERSAL_VOID = "reversal_void"  # void it: refused, or the hold fell due
    # Airtime (payments/airtime.py): customer -> airtime clearing, held while Africa's Talking sends it.
    AIRTIME = "airtime"
    AIRTIME_POST = "airtime_post"  # Africa's Talking sent it
    AIRTIME_VOID = "airtime_void"  # it could not: the money goes back
    # The merchant API (ussd_app/api): asked for by a business's own system.
    PAYOUT = "payout"  # a merchant's (or agent's) wallet to a customer (B2C), with a fee
    REFUND = "refund"  # all or part of a payment the merchant received, back to its payer
    # Allowances (payments/allowances/): a period's limit held customer -> merchant; the
    # merchant's charges are tab lines, settled as one partial post of the hold.
    ALLOWANCE = "allowance"
    ALLOWANCE_POST = "allowance_post"  # settle: post the sum of the tab, the rest released
    ALLOWANCE_VOID = "allowance_void"  # nothing charged (or the allowance ended first): all back


class HoldState(enum.StrEnum):
    """Where a hold request stands, in the ledger's words (set only on a request whose kind
    has the ``pending`` phase). Moved only by compare-and-set (payments/holds.py)."""

    # Nothing has posted or voided it yet. Read it with ``status``: only an accepted hold has a
    # PENDING transfer holding the money (a queued one has none yet, a rejected one never will).
    PENDING = "pending"
    POSTED = "posted"  # the request that posts it is recorded (its own status says if it was accepted)
    VOIDED = "voided"  # the request that voids it is recorded, or it was voided in whole for want of room
    DISPUTED = "disputed"  # still pending, waiting for the operator
    SENDING = "sending"  # airtime: still pending, claimed by a job that is asking Africa's Talking


class RequestStatus(enum.StrEnum):
    """Where a transfer request stands with the worker."""

    QUEUED = "queued"  # recorded, waiting for a worker
    # The ledger accepted its transfers (all of them, one linked chain). For a hold this means
    # its PENDING transfer exists: the money is held, not yet posted (see ``hold_state``).
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # refused by the ledger or a limit; ``result`` says why; no transfer
    REVIEW = "review"  # held by a velocity rule until an operator clears or refuses it


def transaction_code(request_id: str) -> str:
    """The 10-character code people read on receipts, derived from the request id."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return base64.b32encode(digest).decode()[:10]


_CODE = re.compile(r"[A-Z2-7]{10}")
# A code is base32 (A-Z, 2-7): it never holds 0, 1 or 8, which people copying it from an SMS
# type for O, I and B.
_LOOKALIKES = str.maketrans("018", "OIB")


def typed_code(text: str) -> str | None:
    """A transaction code as a person typed it (any case, 0/1/8 for O/I/B), or None. Digits
    alone (a phone number typed by mistake) are never read as a code unless they already are one."""
    text = text.strip().upper()
    if not text.isascii():
        return None
    if _CODE.fullmatch(text):
        return text
    if not any("A" <= ch <= "Z" for ch in text):
        return None
    text = text.translate(_LOOKALIKES)
    return text if _CODE.fullmatch(text) else None


class TransferRequest(db.Model):
    __tablename__ = "transfer_requests"
    __table_args__ = (
        Index(
            "ix_transfer_requests_queued",
            "created_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # The transfers held for review (payments/review.py, the back office's dashboard).
        Index(
            "ix_transfer_requests_review",
            "created_at",
            postgresql_where=text("status = 'review'"),
            sqlite_where=text("status = 'review'"),
        ),
        Index("ix_transfer_requests_hold", "hold_state", "kind"),
        # The daily-limit and velocity sums (ussd_app/limits.py).
        Index("ix_transfer_requests_payer_executed", "debit_account_id", "executed_at"),
        # A wallet's statement, its credits side (the merchant API's GET /transactions).
        Index("ix_transfer_requests_payee_executed", "credit_account_id", "executed_at"),
        # The refunds of a payment (their reference is its code: payments/refunds.py).
        Index("ix_transfer_requests_reference", "reference"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)  # quoted when the person confirmed
    # The tariff version the fee was quoted from (None: the built-in defaults, or no fee).
    tariff_version_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_versions.id"), default=None)
    # The agent's share of a withdrawal's fee, quoted with it; posted fees -> commissions.
    commission: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # What the payee (a merchant) pays on this payment, quoted when the payer confirmed:
    # posted from the payee's wallet to fee revenue, linked to the payment (payments/legs.py).
    payee_fee: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reference: Mapped[str | None] = mapped_column(String(64), default=None)
    # Whether the payer's side may be told the payee's registered name (the API's transactions
    # and events, the mini statement). False only for a merchant's payout whose name look-up was
    # not granted when the API accepted it (api/payouts.py): the masked number, no name.
    payee_named: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # For a resolution request: the hold request (and PENDING transfer id) it posts or voids.
    pending_request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None, index=True)
    # For a hold request: its HoldState, and seconds after posting when it falls due.
    hold_state: Mapped[str | None] = mapped_column(String(12), default=None)
    hold_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(12), default=RequestStatus.QUEUED.value)
    result: Mapped[str | None] = mapped_column(String(40), default=None)  # the ledger's word
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set by the recording process to the microsecond (UTC): the order requests are executed in.
    # (A database default would give every request in one transaction the same instant.)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    executed_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    def same_order(self, other: "TransferRequest") -> bool:
        return (
            self.kind,
            self.debit_account_id,
            self.credit_account_id,
            self.amount,
            self.fee,
            self.commission,
            self.payee_fee or 0,
            self.reference,
            self.pending_request_id,
        ) == (
            other.kind,
            other.debit_account_id,
            other.credit_account_id,
            other.amount,
            other.fee,
            other.commission,
            other.payee_fee or 0,
            other.reference,
            other.pending_request_id,
        )


class TrustDeposit(db.Model):
    """Money paid into the trust bank account, against which e-float is issued 1:1."""

    __tablename__ = "trust_deposits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transfer_request_id: Mapped[str] = mapped_column(ForeignKey("transfer_requests.id"), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    bank_reference: Mapped[str | None] = mapped_column(String(64), default=None)
    # The reference in its one compared form (``emoney.normalize_reference``). Unique: a bank
    # deposit issues e-float once, whatever races. NULL without a reference, and for a deposit
    # recorded under a reference already used before this rule existed (ledger check lists those).
    reference_key: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
