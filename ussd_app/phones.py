"""Phone numbers: accepted in local or international form, stored in E.164."""

import functools
import re

import phonenumbers
from flask import current_app

# What a typed number may hold: ASCII digits and the usual separators (and a gateway's RFC 3966
# "tel:" in front). phonenumbers itself skips a NUL or other control characters and reads any
# script's digits ("١٠٠" as 100), so a number with those would be accepted as other text than
# was sent.
_TYPED = re.compile(r"(tel:)?[0-9 +\-().]+")


class InvalidPhone(ValueError):
    pass


def normalize(raw: str, region: str | None = None) -> str:
    """'0712 345 678' or '+254712345678' -> '+254712345678'; anything else is InvalidPhone,
    including any character but ASCII digits, spaces, '+', '-', '(', ')' and '.' (after an
    optional "tel:")."""
    return _checked(raw, region or current_app.config["COUNTRY"], False)


def _checked(raw: str, region: str, mobile: bool) -> str:
    """``_parse``'s answer, remembered for the last numbers seen: parsing is a few hundred
    calls into phonenumbers and every USSD hop parses its caller's number (a pure function of
    the text and the region, so nothing goes stale)."""
    if not isinstance(raw, str) or len(raw) > 32:
        return _parse(raw, region, mobile)  # refused at once; not worth a place in the cache
    e164, refusal = _remembered(raw, region, mobile)
    if refusal is not None:
        raise refusal(raw)
    return e164


@functools.lru_cache(maxsize=8192)
def _remembered(raw: str, region: str, mobile: bool) -> tuple[str | None, type | None]:
    try:
        return _parse(raw, region, mobile), None
    except InvalidPhone as exc:
        return None, type(exc)


def _parse(raw: str, region: str, mobile: bool) -> str:
    if not raw or len(raw) > 32 or not _TYPED.fullmatch(raw):
        raise InvalidPhone(raw)
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw) from exc
    if mobile and _plain(number):
        # One number-type computation answers both questions: it is UNKNOWN exactly when
        # is_valid_number is false (both look the number's region up by its calling code and
        # test its national number against that region's patterns), and the E.164 text read
        # back would be this same number (``_plain``), so its type and region are these.
        kind = phonenumbers.number_type(number)
        if kind == phonenumbers.PhoneNumberType.UNKNOWN:
            raise InvalidPhone(raw)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if phonenumbers.region_code_for_number(number) != region or kind not in _MOBILE_TYPES:
            raise NotLocalMobile(raw)
        return e164
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(raw)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if mobile:
        number = phonenumbers.parse(e164)
        if (
            phonenumbers.region_code_for_number(number) != region
            or phonenumbers.number_type(number) not in _MOBILE_TYPES
        ):
            raise NotLocalMobile(raw)
    return e164


def _plain(number: phonenumbers.PhoneNumber) -> bool:
    """Whether parsing ``number``'s E.164 text again (what the general path of ``_parse`` does
    before asking its region and type) gives this very number: no extension (E.164 drops it),
    no Italian leading zero, and a national number in which that parse would find no national
    prefix to strip (it tries one on every number, "+" or not: the calling code's main
    region's ``national_prefix_for_parsing``). Anything else takes the general path."""
    if number.extension is not None or number.italian_leading_zero:
        return False
    code = number.country_code
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code)
    )
    if metadata is None:
        return False
    prefix = metadata.national_prefix_for_parsing
    return not prefix or re.match(prefix, str(number.national_number)) is None


class NotLocalMobile(InvalidPhone):
    """A real number, but not a mobile number of the service's own country (``COUNTRY``):
    foreign, landline, toll-free or premium numbers can never register, so they never receive
    money, invitations or airtime, and never dial in."""


_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def normalize_mobile(raw: str, region: str | None = None) -> str:
    """Like ``normalize``, but only a mobile number of the service's own country is accepted:
    anything else valid raises ``NotLocalMobile``, anything invalid ``InvalidPhone``."""
    return _checked(raw, region or current_app.config["COUNTRY"], True)


def country_name(region: str | None = None) -> str:
    """``COUNTRY`` as people read it with its calling code, e.g. "KE (+254)"."""
    region = region or current_app.config["COUNTRY"]
    return f"{region} (+{phonenumbers.country_code_for_region(region)})"


def region_of(e164: str) -> str | None:
    """The country (ISO 3166 alpha-2, phonenumbers' region) a stored E.164 number is of: its
    calling code where that code is one country's (+254 is Kenya's alone), its numbering plan
    where several countries share the code (+1: the US, Canada, Jamaica ...); None for a number
    phonenumbers cannot place."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None


def calling_prefix(region: str) -> str:
    """ "+254" for KE: every number of ``region`` starts with it (see ``prefix_tells``)."""
    return f"+{phonenumbers.country_code_for_region(region)}"


def prefix_tells(region: str) -> bool:
    """Whether ``region``'s calling code is its own, so that a number starting with
    ``calling_prefix(region)`` is of ``region`` (True for KE, GH and TZ; False for the US,
    whose +1 is shared, where only ``region_of`` can tell)."""
    code = phonenumbers.country_code_for_region(region)
    return phonenumbers.region_codes_for_country_code(code) == (region,)


def is_local_mobile(raw: str) -> bool:
    """True when ``raw`` is a mobile number of the service's own country."""
    try:
        normalize_mobile(raw)
    except InvalidPhone:
        return False
    return True


def masked(phone: str | None) -> str | None:
    """A number as merchants' systems see it, in the API's answers and in events:
    ``+254712345678`` -> ``+2547123***78``: enough to recognise, not to call."""
    if not phone:
        return None
    return phone[:-5] + "***" + phone[-2:] if len(phone) > 8 else "***"
