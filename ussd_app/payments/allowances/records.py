"""An allowance's records: its states and words, the tables (the allowance, its tab lines,
its settlements), and the small writers every part uses: the compare-and-set move, the
merchant's event, the customer's SMS, a period's hold. Nothing here commits."""

import calendar
import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, text, update
from sqlalchemy.orm import Mapped, mapped_column

from ...clock import utcnow
from ...extensions import db
from ...ledger.models import ID_LENGTH
from ...users import User, find_by_account, find_by_phone
from ..models import HoldState, RequestKind, RequestStatus, TransferRequest
from ..submit import record_request

DESCRIPTION_LIMIT = 60


REFERENCE_LIMIT = 64

# An allowance's id is at most this long; a longer one names no allowance (never cut to fit:
# ``<id>EXTRA`` would then answer, charge and settle as ``<id>``).
ID_LIMIT = 32


class State(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # the merchant asked; the customer has not decided
    APPROVING = "approving"  # approved; the period's hold is queued
    ACTIVE = "active"  # the hold is accepted: charges are taken
    SETTLING = "settling"  # a settlement is queued; the next hold follows once it is posted
    PAUSED = "paused"  # a period's hold was refused (no money): tried again next period
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


FINAL = (State.DECLINED.value, State.CANCELLED.value, State.EXPIRED.value)


# What the customer's My allowances lists.
LIVE = (State.APPROVING.value, State.ACTIVE.value, State.SETTLING.value, State.PAUSED.value)


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Refusal(enum.StrEnum):
    """Why a charge was refused: stable words, also the API's error codes."""

    NOT_FOUND = "allowance_not_found"  # no such allowance for this merchant
    NOT_ACTIVE = "allowance_not_active"  # not approved yet, settling, paused, ended, period over
    EXCEEDS_MAX_CHARGE = "exceeds_max_charge"
    EXCEEDS_LEFT = "exceeds_allowance_left"
    # The charge's id was taken before for another allowance or amount (a reused key).
    ID_REUSED = "charge_id_reused"


class Why(enum.StrEnum):
    """Why a tab is settled."""

    MERCHANT = "merchant"  # the merchant asked (the API): the period goes on
    PERIOD_END = "period_end"  # the period ended: the next one starts
    CANCELLED = "cancelled"  # the customer cancelled: no next period
    EXPIRED = "expired"  # past the allowance's own end


class AllowanceError(ValueError):
    """An allowance could not be made as asked; the message says why."""


class ConflictingAllowance(AllowanceError):
    """The id is taken by another allowance: another customer's or merchant's, other terms, or
    one a merchant asked for. Never handed back as the caller's."""


class Allowance(db.Model):
    __tablename__ = "allowances"
    __table_args__ = (
        Index("ix_allowances_customer_state", "customer_phone", "state"),
        Index("ix_allowances_merchant_created", "merchant_account_id", "created_at"),
        Index("ix_allowances_state_period_ends", "state", "period_ends_at"),
        # The refused settlements waiting to be tried again, by when each is due
        # (settlement._settle_again): only those rows.
        Index(
            "ix_allowances_settle_again_at",
            "settle_again_at",
            postgresql_where=text("settle_again_at IS NOT NULL"),
            sqlite_where=text("settle_again_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(ID_LIMIT), primary_key=True)  # "al_" + random, the API's id
    merchant_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))  # who is paid
    customer_phone: Mapped[str] = mapped_column(String(20))  # E.164
    customer_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    limit_amount: Mapped[int] = mapped_column(BigInteger)  # minor units a period
    max_charge: Mapped[int] = mapped_column(BigInteger)  # minor units a charge
    period: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(DESCRIPTION_LIMIT), default="")
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_LIMIT), default=None)  # the merchant's
    state: Mapped[str] = mapped_column(String(20))
    period_no: Mapped[int] = mapped_column(Integer, default=0)
    period_starts_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    period_ends_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)  # this period, settled or not
    charge_count: Mapped[int] = mapped_column(Integer, default=0)
    tab_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # charged, not settled yet
    tab_count: Mapped[int] = mapped_column(Integer, default=0)
    hold_no: Mapped[int] = mapped_column(Integer, default=0)  # holds made so far
    hold_request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)  # optional overall end
    # When its refused settlement is tried again (set with the refusal, cleared when the retry
    # claims the hold or an operator voids it); None while no refused settlement waits.
    settle_again_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class AllowanceCharge(db.Model):
    """One tab line: durable before the merchant hears it was taken."""

    __tablename__ = "allowance_charges"
    __table_args__ = (Index("ix_allowance_charges_allowance_created", "allowance_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # from the caller's key
    allowance_id: Mapped[str] = mapped_column(ForeignKey("allowances.id"))
    period_no: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(REFERENCE_LIMIT), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AllowanceSettlement(db.Model):
    """One settlement: the tab it closed, under the id of the request that posts (or voids)
    the hold. ``told_at`` is set once the customer has been told (or had nothing to hear)."""

    __tablename__ = "allowance_settlements"
    __table_args__ = (Index("ix_allowance_settlements_told", "told_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # the post's request id
    allowance_id: Mapped[str] = mapped_column(ForeignKey("allowances.id"), index=True)
    period_no: Mapped[int] = mapped_column(Integer)
    charges: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    why: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    told_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


@dataclass(frozen=True)
class ChargeOutcome:
    """What became of one charge: taken (``code`` None) or refused (``code``, a Refusal)."""

    charge_id: str
    amount: int
    code: str | None
    left: int  # what is left of the period after it
    charged: int  # the period's charges after it
    charge_count: int
    reference: str | None = None
    created_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def new_id() -> str:
    return "al_" + secrets.token_urlsafe(16)


def hold_id(allowance: Allowance, hold_no: int) -> str:
    return f"{allowance.id}.h{hold_no}"


def period_end(start: datetime, period: str, day: int | None = None) -> datetime:
    """When a period that starts at ``start`` ends (a month: the same day next month, or its
    last day). ``day``: the day of the month the allowance began on, so a month cut short
    (31 Jan -> 28 Feb) does not move every later period to the 28th."""
    if period == Period.DAY:
        return start + timedelta(days=1)
    if period == Period.WEEK:
        return start + timedelta(days=7)
    if period == Period.MONTH:
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        day = min(day or start.day, calendar.monthrange(year, month)[1])
        return start.replace(year=year, month=month, day=day)
    raise AllowanceError(f"period: day, week or month, not {period!r}")


def left(allowance: Allowance) -> int:
    """What the merchant may still charge this period (minor units)."""
    return max(0, allowance.limit_amount - allowance.charged)


def merchant_of(session, allowance: Allowance) -> User | None:
    return find_by_account(session, allowance.merchant_account_id)


def merchant_name(session, allowance: Allowance) -> str:
    """The merchant's registered name (for screens)."""
    merchant = merchant_of(session, allowance)
    return merchant.name if merchant is not None else ""


def move(session, allowance_id: str, from_states, *conditions, **values) -> bool:
    """Compare-and-set: True for the one caller that moved the allowance."""
    if isinstance(from_states, str):
        from_states = (from_states,)
    result = session.execute(
        update(Allowance)
        .where(Allowance.id == allowance_id, Allowance.state.in_(list(from_states)), *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def fresh(session, allowance_id: str) -> Allowance | None:
    allowance = session.get(Allowance, allowance_id)
    if allowance is not None:
        session.refresh(allowance)
    return allowance


def tell_merchant(session, allowance: Allowance, event_type: str, **extra) -> None:
    """The merchant's system hears of it (ussd_app/events), in this transaction."""
    from ...events.emit import event_id, party, write
    from ...events.models import Event

    # A registered name only once the customer approved (the approval makes hold 1): a declined
    # or unanswered ask must not name whoever owns a number the merchant typed.
    customer = find_by_phone(session, allowance.customer_phone) if allowance.hold_no > 0 else None
    data = {
        "allowance": allowance.id,
        "status": allowance.state,
        "reference": allowance.reference,
        "customer": party(customer, allowance.customer_phone),
        **extra,
    }
    # Once per allowance (a pause: once per hold refused); a repeat finds it written.
    source = f"{allowance.id}:{allowance.hold_no}" if event_type == "allowance.paused" else allowance.id
    if session.get(Event, event_id(event_type, source)) is None:
        write(session, [(event_type, allowance.merchant_account_id, source, data)])


def tell_customer(session, phone: str, body: str, transfer_request_id: str | None = None) -> None:
    from ...sms.outbox import add_sms

    add_sms(session, phone=phone, body=body, transfer_request_id=transfer_request_id)


def record_hold(session, allowance: Allowance, amount: int, hold_no: int) -> TransferRequest:
    request = record_request(
        session,
        request_id=hold_id(allowance, hold_no),
        kind=RequestKind.ALLOWANCE.value,
        debit_account_id=allowance.customer_account_id,
        credit_account_id=allowance.merchant_account_id,
        amount=amount,
        reference=allowance.id,
    )
    # No due time: the allowance's period end resolves it (holds.resolve_due never sees it).
    if request.hold_state is None and request.status == RequestStatus.QUEUED.value:
        request.hold_state = HoldState.PENDING.value
        session.flush()
    return request
