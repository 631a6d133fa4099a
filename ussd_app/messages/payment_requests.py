"""What payment requests tell people (``payments/payment_requests.py`` decides when): the payer
is asked (or reminded, or invited to join when not on Tuma); the requester hears each answer.
"""

from flask import current_app

from .. import country
from ..ussd.gsm7 import shorten
from . import SMS_NAME_LIMIT, money, say, sms_name, tell

# SMS (English message ids; Kiswahili in translations/sw/LC_MESSAGES/sms-requests.po).
ASK = "{name} asks you for {amount} for {reason}. Dial {service_code} > My approvals"
INVITE = (
    "{name} {phone} asks you for {amount} for {reason}. Dial {service_code} to join Tuma, "
    "then pay in My approvals within {days} days."
)
REMIND = "Reminder: {name} asks you for {amount} for {reason}. Dial {service_code} > My approvals"
PAID = "{name} {phone} paid your request of {amount} for {reason}. {paid} of {count} have paid."
PAID_ONE = "{name} {phone} paid your request of {amount} for {reason}."
DECLINED = "{name} {phone} declined your request of {amount} for {reason}."
# Declined, to a requester not granted the payer's name look-up (a request made through the API
# beyond its owner's allowance): the number it asked, no name.
DECLINED_NUMBER = "{phone} declined your request of {amount} for {reason}."
EXPIRED = "Your request of {amount} from {phone} for {reason} expired unpaid."
ALL_PAID = "Everyone has paid your request for {reason}: {total} from {count} people."
MESSAGES = (ASK, INVITE, REMIND, PAID, PAID_ONE, DECLINED, DECLINED_NUMBER, EXPIRED, ALL_PAID)


def ask(payer, requester, request, *, days: int, reminder: bool = False) -> str:
    """To the payer of ``request`` (None: not on Tuma, so an invitation, in the country's first
    language)."""
    fields = dict(
        name=shorten(requester.name, SMS_NAME_LIMIT),  # one SMS segment with the longest name
        phone=requester.phone,
        amount=money(request.amount),
        reason=request.reason,
        service_code=current_app.config["SERVICE_CODE"],
        days=days,
    )
    if payer is None:  # not on Tuma: no language known, and an invitation to register
        return say(country.first_language(), INVITE, **fields)
    return tell(payer, REMIND if reminder else ASK, **fields)


def _to_requester(english: str, requester, payer, request, **fields) -> str:
    return tell(
        requester,
        english,
        name=sms_name(payer) if payer else request.payer_phone,
        phone=request.payer_phone,
        amount=money(request.amount),
        reason=request.reason,
        **fields,
    )


def paid(requester, payer, request, **counts) -> str:
    """``request`` is paid; ``counts`` (``paid``, ``count``) for a request of several payers."""
    return _to_requester(PAID if counts else PAID_ONE, requester, payer, request, **counts)


def declined(requester, payer, request) -> str:
    """Named only when the requester was granted the payer's look-up (``payer_named``: a
    declined request was never paid, so only that decides, ``payer_name_shown``)."""
    return _to_requester(DECLINED if request.payer_named else DECLINED_NUMBER, requester, payer, request)


def expired(requester, payer, request) -> str:
    return _to_requester(EXPIRED, requester, payer, request)


def all_paid(requester, request, members) -> str:
    """Everyone asked in one go has paid: one summary to the requester."""
    return tell(
        requester,
        ALL_PAID,
        reason=request.reason,
        total=money(sum(m.amount for m in members)),
        count=len(members),
    )
