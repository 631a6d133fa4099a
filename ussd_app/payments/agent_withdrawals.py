"""Withdrawals started by an agent: the agent asks, the customer approves with their PIN.

The agent's confirmed request is a row here, ``pending`` until the customer approves it in My
approvals (it becomes a WITHDRAWAL transfer request under the same id, with the fee and the
agent's commission quoted when the agent confirmed: executed exactly like a withdrawal the
customer started), declines it, or it expires (``AGENT_WITHDRAWAL_EXPIRY_SECONDS``).

Exactly once: ``state`` leaves ``pending`` only by a compare-and-set UPDATE, in the
transaction that records what follows (the transfer request, or the agent's SMS). Two
sessions approving at once, or the customer and the expiry job, race on that UPDATE and the
database lets one win. Behind it, the request id (the approval's) can be recorded only once.
Nothing here commits.
"""

import enum
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..clock import utcnow
from ..extensions import db
from ..ledger.models import ID_LENGTH
from ..messages import agent_withdrawals as texts
from ..sms.outbox import add_sms
from ..users import User, find_by_account
from .models import RequestKind
from .submit import record_request, spendable


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # the withdrawal request is recorded
    DECLINED = "declined"
    EXPIRED = "expired"
    FAILED = "failed"  # approved without the money for it


class WithdrawalApproval(db.Model):
    __tablename__ = "withdrawal_approvals"
    __table_args__ = (Index("ix_withdrawal_approvals_state", "state", "expires_at"),)

    # Minted when the agent confirmed; the withdrawal request is recorded under the same id.
    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    agent_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    customer_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    commission: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(12), default=ApprovalState.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


def ask(
    session, *, approval_id: str, agent: User, customer: User, amount: int, fee: int, commission: int
) -> bool:
    """Record the agent's request and tell the customer; False when this id was used before
    (a repeated USSD request: nothing is done twice)."""
    if session.get(WithdrawalApproval, approval_id) is not None:
        return False
    seconds = current_app.config["AGENT_WITHDRAWAL_EXPIRY_SECONDS"]
    now = utcnow()
    session.add(
        WithdrawalApproval(
            id=approval_id,
            agent_account_id=agent.account_id,
            customer_account_id=customer.account_id,
            amount=amount,
            fee=fee,
            commission=commission,
            state=ApprovalState.PENDING.value,
            created_at=now,
            expires_at=now + timedelta(seconds=seconds),
        )
    )
    add_sms(
        session,
        phone=customer.phone,
        body=texts.asked(customer, agent, amount=amount, fee=fee, seconds=seconds),
    )
    session.flush()
    return True


def pending_for(session, customer: User, now: datetime | None = None) -> list[WithdrawalApproval]:
    now = now or utcnow()
    return list(
        session.execute(
            select(WithdrawalApproval)
            .where(
                WithdrawalApproval.customer_account_id == customer.account_id,
                WithdrawalApproval.state == ApprovalState.PENDING.value,
                WithdrawalApproval.expires_at > now,
            )
            .order_by(WithdrawalApproval.created_at)
        ).scalars()
    )


def _claim(session, approval_id: str, to_state: ApprovalState, now: datetime, **where) -> bool:
    query = update(WithdrawalApproval).where(
        WithdrawalApproval.id == approval_id, WithdrawalApproval.state == ApprovalState.PENDING.value
    )
    for name, value in where.items():
        query = query.where(getattr(WithdrawalApproval, name) == value)
    if to_state != ApprovalState.EXPIRED:
        query = query.where(WithdrawalApproval.expires_at > now)
    result = session.execute(
        query.values(state=to_state.value, decided_at=now).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def approve(session, customer: User, approval_id: str) -> str:
    """The customer approved (PIN checked): record the withdrawal under the approval's id
    ("approved"; its commit announces it), or, without the money for amount and fee, tell
    both and record nothing ("short"); "gone" when it is no longer pending."""
    now = utcnow()
    row = session.get(WithdrawalApproval, approval_id)
    if row is None:
        return "gone"
    # What the customer may spend: the available balance less their requests still queued
    # (submit.spendable_statement), as the PIN hop of a customer's own send reads it: else a
    # withdrawal approved behind a queued send was refused by the worker (the agent told
    # "approved" first), the withdrawal's own id left out for a replay.
    spendable = spendable_for(session, customer, row.id)
    short = spendable < row.amount + row.fee
    to_state = ApprovalState.FAILED if short else ApprovalState.APPROVED
    if not _claim(session, approval_id, to_state, now, customer_account_id=customer.account_id):
        return "gone"
    if short:
        _tell_agent(session, row, texts.short_agent)
        agent = find_by_account(session, row.agent_account_id)
        add_sms(
            session, phone=customer.phone, body=texts.short_customer(customer, agent, row, max(spendable, 0))
        )
        return "short"
    record_request(
        session,
        request_id=row.id,
        kind=RequestKind.WITHDRAWAL.value,
        debit_account_id=row.customer_account_id,
        credit_account_id=row.agent_account_id,
        amount=row.amount,
        fee=row.fee,
        commission=row.commission,
    )
    return "approved"


def spendable_for(session, customer: User, approval_id: str) -> int:
    """What ``customer`` may spend now, the approval's own request left out (a replay)."""
    return spendable(session, customer.account_id, approval_id)


def _tell_agent(session, row: WithdrawalApproval, news) -> None:
    """Tell the agent ``news`` (a ``messages.agent_withdrawals`` function) about ``row``."""
    agent, customer = (
        find_by_account(session, row.agent_account_id),
        find_by_account(session, row.customer_account_id),
    )
    if agent is None:
        return
    add_sms(session, phone=agent.phone, body=news(agent, customer, row))


def decline(session, customer: User, approval_id: str) -> bool:
    now = utcnow()
    if not _claim(session, approval_id, ApprovalState.DECLINED, now, customer_account_id=customer.account_id):
        return False
    _tell_agent(session, session.get(WithdrawalApproval, approval_id), texts.declined)
    return True


def expire_due(session, now: datetime | None = None, limit: int = 500) -> int:
    """Expire every pending request past its time and tell its agent. How many expired."""
    now = now or utcnow()
    due = session.execute(
        select(WithdrawalApproval.id)
        .where(
            WithdrawalApproval.state == ApprovalState.PENDING.value,
            WithdrawalApproval.expires_at <= now,
        )
        .order_by(WithdrawalApproval.expires_at)
        .limit(limit)
    ).scalars()
    done = 0
    for approval_id in list(due):
        if _claim(session, approval_id, ApprovalState.EXPIRED, now):
            _tell_agent(session, session.get(WithdrawalApproval, approval_id), texts.expired)
            done += 1
    session.flush()
    return done
