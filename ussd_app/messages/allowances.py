"""What allowances tell customers (``payments/allowances/`` decides when): a merchant asks;
each settlement (ONE SMS, however many charges it closed: never one per charge or per hold);
a period's limit that could not be held. Merchants hear through webhook events only.
"""

from flask import current_app

from .. import country
from . import money, sms_name, tell, when

# SMS (English message ids; Kiswahili in translations/sw/LC_MESSAGES/sms-allowances.po).
# A merchant asks (the API), one text per period so each reads naturally in both languages.
ASKED = {
    "day": "{name} asks to charge you up to {limit} a day, at most {amount} a charge. Approve or "
    "decline: dial {service_code} > My approvals",
    "week": "{name} asks to charge you up to {limit} a week, at most {amount} a charge. Approve or "
    "decline: dial {service_code} > My approvals",
    "month": "{name} asks to charge you up to {limit} a month, at most {amount} a charge. Approve or "
    "decline: dial {service_code} > My approvals",
}
# The same with the allowance's own end (the merchant's ``ends_at``), a term the customer agrees
# to: the SMS says it as My approvals does before the PIN. No "dial": a merchant may ask for up
# to the API's cap a period and a charge (KES 1,000,000.00), which with the date took 164.
ASKED_UNTIL = {
    "day": "{name} asks to charge you up to {limit} a day till {date}, max {amount} a charge. "
    "Approve or decline: {service_code} > My approvals",
    "week": "{name} asks to charge you up to {limit} a week till {date}, max {amount} a charge. "
    "Approve or decline: {service_code} > My approvals",
    "month": "{name} asks to charge you up to {limit} a month till {date}, max {amount} a charge. "
    "Approve or decline: {service_code} > My approvals",
}
# A settlement: the tab's charges posted as one payment (its code verifies like any receipt).
SETTLED = (
    "{code} Confirmed. {amount} paid to {name} for {count} charges, {date} {time}. "
    "Allowance left: {left} until {until}."
)
# The last settlement of an allowance the customer cancelled, or that reached its end.
SETTLED_ENDED = (
    "{code} Confirmed. {amount} paid to {name} for {count} charges, {date} {time}. "
    "Allowance ended: the rest of its hold is released."
)
# The same for a tab of one charge (never "1 charges").
SETTLED_ONE = (
    "{code} Confirmed. {amount} paid to {name} for 1 charge, {date} {time}. "
    "Allowance left: {left} until {until}."
)
SETTLED_ENDED_ONE = (
    "{code} Confirmed. {amount} paid to {name} for 1 charge, {date} {time}. "
    "Allowance ended: the rest of its hold is released."
)
PAUSED = (
    "Allowance for {name} paused: {amount} could not be held (not enough money, or over a limit). "
    "Next try {date}."
)
# Its end (the merchant's ``ends_at``) came with nothing charged to settle: the one SMS of its end.
ENDED = "Allowance for {name} has ended ({date}). Nothing more will be charged or held."
# Its limit could not be held for ALLOWANCE_PAUSED_PERIODS periods in a row: it ends (the pause
# itself was told once, when it began).
ENDED_PAUSED = (
    "Allowance for {name} has ended: its limit could not be held {count} times in a row. "
    "Nothing more will be held."
)
# Its settlement refused because Tuma is reviewing the merchant (an operator's lock): told ONCE,
# at the first such refusal of a hold's settlement, never per retry (payments/allowances/settlement.py).
UNDER_REVIEW = (
    "Allowance payment of {amount} to {name} waits while the business is under review. "
    "Your money stays held; we will SMS you when it is paid."
)
# An operator voided the hold of a refused settlement (payments/allowances/decisions.py): the
# whole hold back to the customer, the owed charges forgiven; the allowance ends.
VOIDED = (
    "Allowance for {name} ended by Tuma: the {returned} held for it is yours again. "
    "The {amount} it charged will not be taken."
)
MESSAGES = (
    *ASKED.values(),
    *ASKED_UNTIL.values(),
    UNDER_REVIEW,
    VOIDED,
    SETTLED,
    SETTLED_ENDED,
    SETTLED_ONE,
    SETTLED_ENDED_ONE,
    PAUSED,
    ENDED,
    ENDED_PAUSED,
)


def asked(customer, merchant, allowance) -> str:
    """To the customer a merchant asks (``customer`` None: not known, the country's first language)."""
    fields = dict(
        name=sms_name(merchant),
        limit=money(allowance.limit_amount),
        amount=money(allowance.max_charge),
        service_code=current_app.config["SERVICE_CODE"],
    )
    english = ASKED[allowance.period]
    if allowance.ends_at is not None:
        english = ASKED_UNTIL[allowance.period]
        fields["date"] = when(allowance.ends_at)[0]
    if customer is None:
        from . import say

        return say(country.first_language(), english, **fields)
    return tell(customer, english, **fields)


def _name(merchant) -> str:
    return sms_name(merchant) if merchant is not None else ""


def settled(customer, merchant, allowance, settlement, request, *, ended: bool, left: int) -> str:
    """To the customer: one settlement (``request`` is its post, executed); ``ended``: the
    allowance goes no further; ``left``: what may still be charged this period."""
    date, time_ = when(request.executed_at or settlement.created_at)
    fields = dict(
        code=request.code,
        amount=money(request.amount),
        name=_name(merchant),
        count=settlement.charges,
        date=date,
        time=time_,
    )
    one = settlement.charges == 1
    if ended:
        return tell(customer, SETTLED_ENDED_ONE if one else SETTLED_ENDED, **fields)
    until = when(allowance.period_ends_at)[0] if allowance.period_ends_at else date
    return tell(customer, SETTLED_ONE if one else SETTLED, **fields, left=money(left), until=until)


def paused(customer, merchant, allowance, amount: int) -> str:
    """To the customer whose period's limit could not be held: tried again next period."""
    next_try = when(allowance.period_ends_at)[0] if allowance.period_ends_at else ""
    return tell(customer, PAUSED, name=_name(merchant), amount=money(amount), date=next_try)


def ended(customer, merchant, allowance, *, paused_periods: int = 0) -> str:
    """To the customer: the allowance has ended with nothing to settle, at its own end or after
    ``paused_periods`` periods paused in a row."""
    if paused_periods:
        return tell(customer, ENDED_PAUSED, name=_name(merchant), count=paused_periods)
    end = allowance.ends_at or allowance.decided_at
    return tell(customer, ENDED, name=_name(merchant), date=when(end)[0] if end else "")


def under_review(customer, merchant, amount: int) -> str:
    """To the customer whose settlement was refused because the merchant is under review (locked):
    the money stays held; once per hold's settlement."""
    return tell(customer, UNDER_REVIEW, name=_name(merchant), amount=money(amount))


def voided(customer, merchant, *, held: int, forgiven: int) -> str:
    """To the customer: an operator voided the hold of a refused settlement; ``held`` came back,
    ``forgiven`` (the charges owed) will not be taken."""
    return tell(customer, VOIDED, name=_name(merchant), returned=money(held), amount=money(forgiven))
