"""Receipts: the SMS each party gets for a request, in that party's language.

The shape people already trust: transaction code, ``Confirmed.``, amount, counterparty name
and number, date and time, new balance, transaction cost, and what is left of today's limit.

``RECEIPTS`` is the whole catalogue: one entry per kind of request (named by its row in
``payments/kinds.py``, which also says who hears a failure), one English template per party.
A new kind plugs in with its row and one entry here; its Kiswahili goes into
``translations/sw/LC_MESSAGES/sms.po`` under the same English text. Who gets which receipt,
and writing it to the outbox, is ``sms/receipts.py``'s.

Parties: the payer is the ``sender``; the payee is the ``merchant`` or ``agent`` when that is
their role (falling back to ``recipient``), else the ``recipient``; ``failed`` goes to the payer
when the ledger refused the request.

Length: a receipt is one SMS segment (160 GSM-7 characters) where it can be; the sender's,
which carries the most, may take two segments (306) for the kinds whose row in
``payments/kinds.py`` says ``two_segments``, as the real thing does. Names and numbers
are GSM-7 for the people we register; a name with other characters makes the SMS UCS-2.
"""

import functools

from flask import current_app

from .. import country
from ..ledger import TransferResult
from ..payments import kinds
from . import _money, _when, money, say, sms_name, tell

RECEIPTS: dict[str, dict[str, str]] = {
    "send": {
        "sender": "{code} Confirmed. {amount} sent to {name} {phone} on {date} at {time}. "
        "New balance is {balance}. Transaction cost, {fee}. "
        "Amount you can transact within the day is {left_today}.",
        "recipient": "{code} Confirmed. You have received {amount} from {name} {phone} "
        "on {date} at {time}. New balance is {balance}.",
        "merchant": "{code} Confirmed. {amount} received from {name} {phone} on {date} at {time}. "
        "New till balance is {balance}.",
        "agent": "{code} Confirmed. {amount} received from {name} {phone} on {date} at {time}. "
        "New float balance is {balance}.",
        "failed": "{code} Failed: {amount} not sent. {reason} Balance {balance}.",
    },
    # Cash-in: the customer hands the agent cash; the agent (payer) pays it in as e-money, and
    # the customer has it at once.
    "deposit": {
        "sender": "{code} Confirmed. You received {amount} cash from {name} {phone} and deposited it "
        "on {date} at {time}. New float balance is {balance}.",
        "recipient": "{code} Confirmed. On {date} at {time} you deposited {amount} with agent {name} "
        "{phone}. New balance is {balance}.",
        "failed": "{code} Failed: deposit of {amount} not made. {reason} Float balance {balance}.",
    },
    # Cash-out: the customer (payer) pays the agent in e-money; the agent pays out cash.
    "withdrawal": {
        "sender": "{code} Confirmed. On {date} at {time} Withdraw {amount} from agent {name} {phone}. "
        "New balance is {balance}. Transaction cost, {fee}.",
        "agent": "{code} Confirmed. Pay {amount} cash to {name} {phone} on {date} at {time}. Float "
        "{balance}. Commission {commission}.",
        "failed": "{code} Failed: withdrawal of {amount} not made. {reason} Balance {balance}.",
    },
    "buy_goods": {
        "sender": "{code} Confirmed. {amount} paid to {name} till {till} on {date} at {time}. "
        "New balance is {balance}. Transaction cost, {fee}.",
        # {payee_fee}: the merchant's own fee (tariffs.payee_fee); Kiswahili in sms-tariffs.po.
        "merchant": "{code} Confirmed. {amount} from {name} {phone} on {date} at {time}. Fee {payee_fee}. "
        "Till balance {balance}.",
        "failed": "{code} Failed: {amount} not paid. {reason} Balance {balance}.",
    },
    "pay_bill": {
        "sender": "{code} Confirmed. {amount} sent to {name} for account {reference} on {date} at {time}. "
        "New balance is {balance}. Transaction cost, {fee}.",
        "merchant": "{code} Confirmed. {name} {phone} paid {amount} for {reference} {date} {time}. Fee "
        "{payee_fee}. Balance {balance}.",
        "failed": "{code} Failed: {amount} not paid. {reason} Balance {balance}.",
    },
    # A tip to a creator or cause (payments/tips.py; Kiswahili in sms-tips.po): sent only for a
    # tip above TIP_SILENT_MAX_MAJOR; a smaller one is told by the END screen and the statement,
    # and the cause's daily digest. A refusal is always told.
    "tip": {
        "sender": "{code} Confirmed. You gave {amount} to {name} ({till}) on {date} at {time}. "
        "New balance is {balance}. Transaction cost, {fee}. "
        "Amount you can transact within the day is {left_today}.",
        "recipient": "{code} Confirmed. Tip of {amount} from {name} {phone} on {date} at {time}. "
        "New balance is {balance}.",
        "failed": "{code} Failed: tip of {amount} not sent. {reason} Balance {balance}.",
    },
    # Holds (payments/holds.py). {reference} is the unregistered number for suspense sends.
    "send_unregistered": {
        "sender": "{code} Confirmed. {amount} sent to {reference} on {date} at {time}, held until they "
        "register with Tuma; if they do not within {days} days it comes back to you. "
        "New balance is {balance}. Transaction cost, {fee}.",
    },
    "suspense_post": {
        "sender": "{code} Confirmed. {name} {phone} registered and received the {amount} you sent "
        "on {date} at {time}.",
        "recipient": "{code} Confirmed. You have received {amount} from {name} {phone} on {date} at "
        "{time}. New balance is {balance}.",
    },
    "suspense_void": {
        "recipient": "{code} Confirmed. {amount} you sent to {reference} was not collected: it is back on "
        "{date} at {time}. New balance is {balance}.",
    },
    "protected_purchase": {
        "sender": "{code} Confirmed. {amount} held for {name} till {till} on {date} at {time}. Confirm "
        "delivery in My approvals; it is paid to them in {days} days unless you dispute it. "
        "New balance is {balance}.",
        # Not "Confirmed.": the money is not the merchant's yet (a held payment is not final).
        "merchant": "{code} Held, not paid yet: {amount} from {name} {phone}. Yours when the buyer "
        "confirms delivery, or in {days} days.",
    },
    "protected_post": {
        "sender": "{code} Confirmed. {amount} released to {name} for your protected purchase on {date} "
        "at {time}.",
        "merchant": "{code} Confirmed. {amount} from {name} {phone} released to you {date} {time}. Fee "
        "{payee_fee}. Till balance {balance}.",
    },
    "protected_void": {
        "sender": "{code} Dispute decided for the buyer: {amount} from {name} {phone} was returned to "
        "them on {date} at {time}.",
        "recipient": "{code} Confirmed. Dispute decided for you: {amount} is back in your account on "
        "{date} at {time}. New balance is {balance}.",
    },
    # Reversal of a wrong send (payments/reversals.py; Kiswahili in sms-reversals.po). The hold's
    # payer is the one who received the send; {reference} is the send's code.
    "reversal": {
        "sender": "{code} {name} {phone} asks you to return {amount} ({reference}). Held until you decide "
        "in My approvals, at most {days} days.",
        "recipient": "{code} {amount} you sent to {name} {phone} ({reference}) is held for your reversal "
        "until they agree, at most {days} days.",
        "failed": "{code} Failed: {name} {phone} no longer has the {amount} you sent ({reference}). Please "
        "call customer care.",
    },
    "reversal_post": {
        "sender": "{code} Confirmed. {amount} ({reference}) returned to {name} on {date} at {time}. New "
        "balance is {balance}.",
        "recipient": "{code} Confirmed. {amount} ({reference}) reversed to you from {name} on {date} at "
        "{time}. New balance is {balance}.",
    },
    "reversal_void": {
        "sender": "{code} Reversal of {reference} refused or not answered: {amount} stays with {name} "
        "{phone}. Call customer care.",
        "recipient": "{code} Confirmed. The {amount} held for the reversal of {reference} is yours again on "
        "{date} at {time}. New balance is {balance}.",
    },
    # Airtime (payments/airtime.py). {reference} is the number topped up; the hold itself has no
    # receipt (its outcome follows within seconds).
    "airtime": {
        "failed": "{code} Failed: {amount} airtime not bought. {reason} Balance {balance}.",
    },
    "airtime_post": {
        "sender": "{code} Confirmed. You bought {amount} of airtime for {reference} on {date} at {time}. "
        "New balance is {balance}.",
    },
    "airtime_void": {
        "recipient": "{code} Failed: {amount} airtime for {reference} not bought; the money is back on "
        "{date} at {time}. New balance is {balance}.",
    },
    "float_issue": {
        "agent": "{code} Confirmed. E-float of {amount} issued to you on {date} at {time}. "
        "New float balance is {balance}.",
    },
    # The merchant API (ussd_app/api; Kiswahili in sms-api.po). The paying business reads the
    # outcome from the API, so only the customer is told. {reference} of a refund is the code
    # of the payment it gives back.
    "payout": {
        "recipient": "{code} Confirmed. You have received {amount} from {name} on {date} at {time}. "
        "New balance is {balance}.",
    },
    "refund": {
        "recipient": "{code} Confirmed. {name} refunded {amount} of your payment {reference} on {date} "
        "at {time}. New balance is {balance}.",
    },
    # Allowances tell people themselves (payments/allowances/, messages/allowances.py): one
    # SMS per settlement, none per hold or charge (``told_by_its_flow`` in payments/kinds.py).
    "allowance": {},
    "allowance_post": {},
    "allowance_void": {},
}

# To an unregistered number money was sent to (their language is not known: English).
INVITE = (
    "{name} {phone} sent you {amount} on Tuma. Dial {service_code} within {days} days to register "
    "and receive it."
)
# To both sides when a buyer disputes a protected purchase.
DISPUTE_OPENED = "{code} Dispute opened for {amount} ({name}). The money stays held until Tuma decides."

# To the buyer when the operator decides a dispute for the merchant (a decision for the buyer is
# told by the refund's receipt).
DISPUTE_FOR_MERCHANT = (
    "{code} Dispute decided for the merchant: the {amount} held for {name} is paid to them. "
    "Call customer care if you disagree."
)

# For a kind whose entry has no ``failed`` template.
FAILED = "{code} Failed. {reason} Your balance is {balance}."

# Why the ledger refused, in words; every other result reads as REASON_OTHER.
REASONS: dict[str, str] = {
    TransferResult.EXCEEDS_CREDITS.value: "Not enough money for {amount} plus {fee} cost.",
    # Limits and review (ussd_app/limits.py; Kiswahili in sms-limits.po). {limit} and {excess}
    # are amounts; the recipient's balance limit does not say by how much (their balance).
    "limit_transaction_exceeded": "Over your limit of {limit} a transaction by {excess}.",
    "limit_daily_exceeded": "Over your daily limit of {limit} by {excess}.",
    "limit_balance_exceeded": "{name} cannot receive it: over their balance limit.",
    "review_refused": "Stopped by a security check. Visit an agent with your ID.",
    # An agent or merchant an operator locked (limits.Result.PAYEE_LOCKED).
    "payee_locked": "{name} cannot take payments now.",
}
REASON_OTHER = "It could not be completed."


def hold_seconds(request) -> int:
    """Seconds a hold of ``request`` lasts: its own, else its kind's setting (``kinds``)."""
    if request.hold_seconds:
        return request.hold_seconds
    setting = kinds.spec(request.kind).hold_setting
    return current_app.config.get(setting, 0) if setting else 0


def _hold_days(request) -> int:
    """Days a hold of ``request``'s kind lasts (rounded up), for the receipts that say so."""
    return -(-hold_seconds(request) // 86_400)


def facts(request) -> dict:
    """The fields every SMS about ``request`` may use: its code, amounts, date and time."""
    config = current_app.config
    return {
        **_facts(
            request.code,
            int(request.amount or 0),
            int(request.fee or 0),
            int(request.commission or 0),
            int(request.payee_fee or 0),
            request.reference or "",
            request.executed_at,
            config["CURRENCY"],
            config["TIMEZONE"],
        ),
        "days": _hold_days(request),
    }


@functools.lru_cache(maxsize=64)
def _facts(code, amount, fee, commission, payee_fee, reference, executed_at, currency, zone) -> dict:
    """``facts`` but the hold's days, from the values alone: the receipts of one request (the
    payer's, the payee's) ask the same, so they are formatted once. Callers get a copy."""
    date, time_ = _when(executed_at, zone)
    return {
        "code": code,
        "amount": _money(amount, currency),
        "fee": _money(fee, currency),
        "commission": _money(commission, currency),
        "payee_fee": _money(payee_fee, currency),
        "reference": reference,
        "date": date,
        "time": time_,
    }


def counterparty(user) -> dict:
    """The other side of a request as an SMS names it (blank when not on Tuma)."""
    if user is None:
        return {"name": "", "phone": "", "till": ""}
    return {"name": sms_name(user), "phone": user.phone, "till": user.till or ""}


def template(kind: str, party: str) -> str | None:
    """The English template for ``party`` of a ``kind`` request (None: that party gets none)."""
    entry = RECEIPTS.get(kinds.spec(kind).receipts, {})
    if party == "failed":
        return entry.get("failed", FAILED)
    if party in ("merchant", "agent"):
        return entry.get(party) or entry.get("recipient")
    return entry.get(party)


def posted(request, party: str, reader, other, *, known: dict | None = None, **fields) -> str | None:
    """``reader``'s receipt (as ``party``) for posted ``request`` with ``other`` on the other
    side; ``fields`` add the reader's own figures (``balance`` and, for a payer,
    ``left_today``, minor units). None when that party of the kind gets no receipt.
    ``known``: ``facts(request)`` if the caller has it (the payer's and the payee's receipts
    of one request share it; a batch writes 1,000 receipts)."""
    english = template(request.kind, party)
    if english is None:
        return None
    currency = current_app.config["CURRENCY"]  # ``money``'s, read once for the figures
    figures = {name: _money(int(value or 0), currency) for name, value in fields.items()}
    return tell(
        reader, english, **(known if known is not None else facts(request)), **counterparty(other), **figures
    )


def invite(request, payer) -> str:
    """To the unregistered number money was sent to (no language known: the country's first)."""
    return say(
        country.first_language(),
        INVITE,
        **{**facts(request), **counterparty(payer)},
        service_code=current_app.config["SERVICE_CODE"],
    )


def failed(request, payer, payee, result: str, balance: int, **fields) -> str:
    """The payer's SMS for a request refused (``result``: the ledger's or a limit's word), in
    the payer's language; ``fields`` override the request's own (a refusal's ``limit``...)."""
    fields = {**facts(request), **counterparty(payee), **fields}
    reason = tell(payer, REASONS.get(result, REASON_OTHER), **fields, result=result)
    return tell(payer, template(request.kind, "failed"), **fields, reason=reason, balance=money(balance))


def dispute_opened(hold, reader, other) -> str:
    """To each side of a protected purchase its buyer disputed."""
    return tell(
        reader,
        DISPUTE_OPENED,
        code=hold.code,
        amount=money(hold.amount),
        name=sms_name(other) if other else "",
    )


def dispute_for_merchant(hold, buyer, merchant) -> str:
    """To the buyer when the operator decides a dispute for the merchant."""
    return tell(
        buyer,
        DISPUTE_FOR_MERCHANT,
        code=hold.code,
        amount=money(hold.amount),
        name=sms_name(merchant) if merchant else "",
    )
