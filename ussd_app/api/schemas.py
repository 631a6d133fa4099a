"""The shapes of ``/api/v1``: every body in and out, as pydantic models. The OpenAPI document
is generated from these (``spec.py``), so what is validated and what is documented are one.

Bodies in are strict (no ``"100"`` for 100, no unknown fields); amounts are integers of minor
units (1 shilling or cedi = 100), positive and at most ``MAX_AMOUNT``; strings are capped. Phone numbers are
checked against our country's mobiles by the operations (``phones.normalize_mobile``), which
need the app's configured country.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from .. import country
from ..money import MAX_MAJOR_AMOUNT, MINOR_PER_MAJOR, format_amount, to_minor
from ..tariffs import shown_unit

# One payout, refund, payment request or allowance figure: at most the country's own cap
# (``country.Profile.api_max_amount``: KES 1,000,000, GHS 100,000, TZS 10,000,000), above every
# tier's limit there; the worker applies the limits, this only keeps absurd numbers out at the
# edge, in the currency's own scale. ``MAX_AMOUNT`` (what a phone may type, the same in every
# currency) is the bound the schema documents; ``capped`` holds each amount to the country's.
MAX_AMOUNT = MAX_MAJOR_AMOUNT * MINOR_PER_MAJOR
MAX_BATCH = 10_000
CODE_PATTERN = r"^[A-Z2-7]{10}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
REFERENCE_LIMIT = 64
REFERENCE_PATTERN = r"^[\x20-\x7E]{1,64}$"  # printable ASCII: it shows in lists and statements
DESCRIPTION_LIMIT = 20  # it goes into the customer's SMS (payment_requests.REASON_LIMIT)
# What a USSD payment request's reason may hold (ussd/flows/request_common.py): GSM-7, one segment.
DESCRIPTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 .,'&/\-]{0,19}$"


def capped(minor: int | None) -> int | None:
    """``minor`` when within the country's cap on one amount; else the refusal naming it."""
    from flask import current_app

    here = country.profile()
    cap = to_minor(here.api_max_amount)
    if minor is not None and minor > cap:
        shown = format_amount(cap, current_app.config["CURRENCY"])
        raise PydanticCustomError(
            "amount_over_cap",
            "at most {cap} ({shown}: the most one amount may be in {country})",
            {"cap": cap, "shown": shown, "country": here.name},
        )
    unit = shown_unit()  # TZS: whole shillings only, as they are shown, typed and paid out
    if minor is not None and minor % unit:
        code = current_app.config["CURRENCY"]
        raise PydanticCustomError(
            "amount_not_whole",
            "{code} amounts are whole: a multiple of {unit} ({code} 1 = {unit})",
            {"code": code, "unit": unit},
        )
    return minor


CAP_NOTE = "at most the country's cap (KE 100000000, GH 10000000, TZ 1000000000)"
Capped = Annotated[int, AfterValidator(capped)]
# The country's cap is checked by ``capped`` (one message for every amount over it); the
# schema documents the highest any country has.
MAXIMUM = {"maximum": MAX_AMOUNT}
Amount = Field(
    gt=0,
    json_schema_extra=MAXIMUM,
    description=f"Minor units of the service's currency (1 = 100), {CAP_NOTE}.",
    examples=[15000],
)
Phone = Field(
    min_length=1,
    max_length=32,
    description="A mobile number of the service's country (TUMA_COUNTRY), local or international form.",
    examples=["0712345678"],
)


class In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A moment in an answer: the database keeps naive UTC; the API says so (RFC 3339, ``Z``).
When = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]


# -- errors -----------------------------------------------------------------------------------


class Error(Out):
    code: str = Field(description="Stable: branch on this (docs/api.md lists them).", examples=["not_found"])
    message: str = Field(
        description="For people; may change.", examples=["No such resource for this key's owner."]
    )


class ErrorBody(Out):
    error: Error


class IdempotencyHeaders(BaseModel):
    """Every POST: the same key with the same body is answered once."""

    model_config = ConfigDict(populate_by_name=True)
    idempotency_key: str = Field(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9._:\-]{1,255}$",
        description="Your unique id for this operation (a UUID is good); kept at least 24 hours.",
        examples=["3f1c2a8e-0d4b-4a7e-9a55-1b2c3d4e5f60"],
    )


# -- balance ----------------------------------------------------------------------------------


class Balance(Out):
    available: int = Field(description="What can be paid out now, minor units.", examples=[1250000])
    held: int = Field(description="Held for pending transfers out of the wallet, minor units.", examples=[0])
    currency: str = Field(examples=["KES"])


# -- transactions -----------------------------------------------------------------------------


class Counterparty(Out):
    name: str | None = Field(
        None,
        description="The registered name, once the ledger accepted the transfer (posted or pending); "
        "none before or without that (queued, rejected, review). A payout's recipient is named only "
        "when its name look-up was granted as the payout was accepted: one look-up of the key's "
        "owner per payout (per distinct recipient of a batch), against the owner's hourly look-up "
        "allowance, shared with its USSD menus; beyond it the payout is paid and names nobody.",
        examples=["Wanjiru Kamau"],
    )
    phone: str = Field(description="Masked: the first digits and the last three.", examples=["+2547123***78"])


# queued: recorded, not executed yet; posted: the money moved; pending: held (not the owner's
# yet); rejected: refused (``result`` says why); review: held by a security check.
Status = Literal["queued", "posted", "pending", "rejected", "review"]


class Transaction(Out):
    transaction: str = Field(description="The 10-character code on the receipts.", examples=["QK3D7XZB2M"])
    type: str = Field(description="payout, refund, buy_goods, pay_bill, send, ...", examples=["buy_goods"])
    direction: Literal["in", "out"]
    amount: int = Field(examples=[15000])
    fee: int = Field(
        description="What the owner paid on it (or had taken from it), minor units.", examples=[0]
    )
    currency: str = Field(examples=["KES"])
    status: Status
    result: str | None = Field(description="Why it was refused, when it was.", examples=[None])
    reference: str | None = Field(examples=["INV-1001"])
    counterparty: Counterparty | None
    created: When
    posted_at: When | None


class TransactionPage(Out):
    data: list[Transaction]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor= for the next page.")


def _iso_8601(value):
    """Only ISO 8601 text (pydantic alone also takes a bare number as a Unix time)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("an ISO 8601 date and time")
    return datetime.fromisoformat(value)


Moment = Annotated[datetime, BeforeValidator(_iso_8601)]


class TransactionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: Moment | None = Field(
        default=None, description="Posted at or after (ISO 8601; UTC unless it says)."
    )
    until: Moment | None = Field(default=None, description="Posted before (ISO 8601; UTC unless it says).")
    cursor: str | None = Field(default=None, max_length=200, description="next_cursor of the page before.")
    limit: int = Field(default=50, ge=1, le=500)


# -- payouts ----------------------------------------------------------------------------------


class PayoutCreate(In):
    phone: str = Phone
    amount: Capped = Amount
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN, examples=["KES"])
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN, examples=["SALARY-2026-11"])


class Payout(Out):
    id: str = Field(description="The transfer request's id.", examples=["5f0e8c2b9a1d4e7f8a6b3c2d1e0f9a8b"])
    transaction: str = Field(examples=["QK3D7XZB2M"])
    phone: str = Field(examples=["+254712345678"])
    amount: int = Field(examples=[15000])
    fee: int = Field(examples=[0])
    currency: str = Field(examples=["KES"])
    reference: str | None
    status: Status
    result: str | None
    created: When


class PayoutBatchCreate(In):
    payouts: list[PayoutCreate] = Field(min_length=1, max_length=MAX_BATCH)


class BatchRow(Out):
    row: int = Field(description="1-based, in the order sent.")
    status: Literal["accepted", "rejected"]
    id: str | None = None
    transaction: str | None = None
    error: Error | None = None


class PayoutBatch(Out):
    count: int
    accepted: int
    rejected: int
    results: list[BatchRow]


# -- refunds ----------------------------------------------------------------------------------


class RefundCreate(In):
    transaction: str = Field(pattern=CODE_PATTERN, description="The code of a payment you received.")
    amount: Annotated[int | None, AfterValidator(capped)] = Field(
        default=None,
        gt=0,
        json_schema_extra=MAXIMUM,
        description="Minor units; leave out to refund all that is left.",
    )
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)


class Refund(Out):
    id: str
    transaction: str = Field(description="The refund's own code.")
    refunded_transaction: str
    amount: int
    currency: str
    status: Status
    result: str | None
    created: When


# -- payment requests -------------------------------------------------------------------------


class PaymentRequestCreate(In):
    phone: str = Phone
    amount: Capped = Amount
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN, examples=["ORDER-77"])
    description: str = Field(
        pattern=DESCRIPTION_PATTERN,
        description="Shown to the customer (SMS, My approvals): 1 to 20 letters, digits, spaces, .,'&/-",
        examples=["2 bags of maize"],
    )
    expires_in: int | None = Field(
        default=None, ge=60, le=7 * 24 * 3600, description="Seconds; the service's default when left out."
    )


class PaymentRequest(Out):
    id: str
    phone: str
    amount: int
    currency: str
    reference: str | None
    description: str
    status: Literal["open", "paying", "paid", "declined", "expired", "cancelled"]
    transaction: str | None = Field(description="The payment's code once paid.")
    created: When
    expires_at: When


# -- allowances -------------------------------------------------------------------------------

# How far ahead an allowance's own end may be (days).
ALLOWANCE_MAX_DAYS = 5 * 366


def _future_utc(moment: datetime, max_days: int, name: str) -> datetime:
    """``moment`` as naive UTC (as stored; no offset means UTC), after now and at most
    ``max_days`` ahead; else a ValueError naming ``name``."""
    try:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError) as exc:  # year 1 or 9999 pushed off the calendar
        raise ValueError(f"{name}: out of the calendar's range") from exc
    now = datetime.now(UTC).replace(tzinfo=None)
    if moment <= now:
        raise ValueError(f"{name}: in the future")
    if moment > now + timedelta(days=max_days):
        raise ValueError(f"{name}: at most {max_days} days ahead")
    return moment


# Charges taken in one batch request (each a tab line, all in one transaction).
MAX_CHARGE_BATCH = 1_000
AllowanceStatus = Literal[
    "awaiting_approval", "approving", "active", "settling", "paused", "declined", "cancelled", "expired"
]


class AllowanceCreate(In):
    phone: str = Phone
    limit: Capped = Field(
        gt=0, json_schema_extra=MAXIMUM, description="The most you may charge a period, minor units."
    )
    max_charge: Capped = Field(
        gt=0, json_schema_extra=MAXIMUM, description="The most one charge may be (at most limit)."
    )
    period: Literal["day", "week", "month"] = Field(description="A period starts when the customer approves.")
    description: str = Field(
        pattern=DESCRIPTION_PATTERN,
        description="What it is for, shown to the customer: 1 to 20 letters, digits, spaces, .,'&/-",
        examples=["Daily News"],
    )
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN, examples=["READER-77"])
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    ends_at: Moment | None = Field(
        default=None,
        description="Optional: when the allowance ends (ISO 8601; UTC unless it says), in the future and "
        f"at most {ALLOWANCE_MAX_DAYS} days ahead. Then its tab settles and it expires (allowance.expired).",
        examples=["2027-06-30T23:59:59+03:00"],
    )

    @model_validator(mode="after")
    def _max_charge_within_limit(self):
        if self.max_charge > self.limit:
            raise ValueError("max_charge: at most the limit")
        if self.ends_at is not None:
            self.ends_at = _future_utc(self.ends_at, ALLOWANCE_MAX_DAYS, "ends_at")
        return self


class AllowanceSettlementView(Out):
    transaction: str = Field(description="The settlement's code (the customer's SMS quotes it).")
    amount: int = Field(description="The charges it settled, minor units (0: nothing was charged).")
    charges: int
    status: Status
    created: When


class Allowance(Out):
    id: str = Field(examples=["al_3f1c2a8e0d4b4a7e9a55"])
    status: AllowanceStatus
    phone: str = Field(examples=["+254712345678"])
    limit: int
    max_charge: int
    period: Literal["day", "week", "month"]
    currency: str
    description: str
    reference: str | None
    charged: int = Field(description="Charged this period (settled or not), minor units.")
    left: int = Field(description="What may still be charged this period, minor units.")
    charges: int = Field(description="How many charges this period.")
    tab: int = Field(description="Charged and not settled yet, minor units.")
    period_starts: When | None
    period_ends: When | None = Field(description="The tab settles then, and a new period starts.")
    ends_at: When | None = Field(default=None, description="When the allowance ends, if it has an end.")
    last_settlement: AllowanceSettlementView | None
    created: When


class AllowanceChargeCreate(In):
    amount: Capped = Field(
        gt=0, le=MAX_AMOUNT, description="Minor units, at most the allowance's max_charge."
    )
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN, examples=["ARTICLE-2231"])


class AllowanceCharge(Out):
    id: str
    allowance: str
    amount: int
    reference: str | None
    currency: str
    left: int = Field(description="What may still be charged this period after it.")
    charged: int
    charges: int
    created: When


class AllowanceChargeBatchCreate(In):
    charges: list[AllowanceChargeCreate] = Field(min_length=1, max_length=MAX_CHARGE_BATCH)


class AllowanceChargeRow(Out):
    row: int = Field(description="1-based, in the order sent.")
    status: Literal["accepted", "rejected"]
    id: str | None = None
    amount: int
    error: Error | None = None


class AllowanceChargeBatch(Out):
    count: int
    accepted: int
    rejected: int
    left: int = Field(description="What may still be charged this period after the batch.")
    charged: int
    results: list[AllowanceChargeRow]


class AllowanceSettleCreate(In):
    """No fields: send ``{}`` (or no body)."""


class AllowanceSettle(Out):
    allowance: Allowance
    settlement: AllowanceSettlementView | None = Field(
        description="The settlement just recorded; none when nothing was charged since the last one."
    )
