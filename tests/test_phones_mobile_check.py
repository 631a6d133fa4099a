"""``phones._parse``'s mobile check (one parse, one number-type computation) gives exactly what
the general path gives (parse, validate, format, parse the E.164 text again, its region and
type): the same E.164 text, or the same exception type with the same argument, for any text and
any service region: valid numbers of every region and type in every spelling, and the same
numbers mistyped, cut, lengthened, prefixed and separated."""

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ussd_app import phones
from ussd_app.phones import _MOBILE_TYPES, _TYPED, InvalidPhone, NotLocalMobile


def general_path(raw: str, region: str) -> str:
    """The mobile check as it was before the one-parse path (the oracle)."""
    if not raw or len(raw) > 32 or not _TYPED.fullmatch(raw):
        raise InvalidPhone(raw)
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(raw)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    number = phonenumbers.parse(e164)
    if (
        phonenumbers.region_code_for_number(number) != region
        or phonenumbers.number_type(number) not in _MOBILE_TYPES
    ):
        raise NotLocalMobile(raw)
    return e164


def outcome(check, raw: str, region: str):
    try:
        return ("number", check(raw, region))
    except Exception as exc:  # the exact type and argument are what is compared
        return (type(exc), exc.args)


def assert_same(raw: str, region: str) -> None:
    assert outcome(lambda r, g: phones._parse(r, g, True), raw, region) == outcome(
        general_path, raw, region
    ), (
        raw,
        region,
    )


REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
# The service's own countries, the shared +1 plan, Italy and its leading zero (and San Marino,
# the Vatican beside it), countries whose national prefix is not a bare 0 or that rewrite
# numbers when parsing (Argentina's 15, Mexico's 1, Brazil's carrier codes), and a few more.
SERVICE_AND_ODD = [
    "KE",
    "GH",
    "TZ",
    "UG",
    "NG",
    "US",
    "CA",
    "JM",
    "IT",
    "SM",
    "VA",
    "AR",
    "MX",
    "BR",
    "RU",
    "KZ",
    "BY",
    "HU",
    "GB",
    "JE",
    "IN",
    "CN",
    "DE",
    "AU",
    "NZ",
    "FR",
    "JP",
]
TYPES = [
    getattr(phonenumbers.PhoneNumberType, name)
    for name in dir(phonenumbers.PhoneNumberType)
    if name.isupper()
]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


def _examples() -> list[tuple[str, str]]:
    """(spelling, the region it is of) for every example number phonenumbers has."""
    found = []
    for region in REGIONS:
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found += [(phonenumbers.format_number(number, f), region) for f in FORMATS]
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found += [(phonenumbers.format_number(number, f), "001") for f in FORMATS]
    return sorted(set(found))


EXAMPLES = _examples()


def test_the_examples_reach_the_one_parse_path_and_the_general_one():
    """The comparison below means something: many examples are local mobiles somewhere (the
    one-parse path answers them), and some take the general path (Italian numbers)."""
    local = [raw for raw, region in EXAMPLES if region in REGIONS and _is_mobile(raw, region)]
    assert len(local) > 300
    italian = phonenumbers.parse("+39 06 6988 0000")
    assert italian.italian_leading_zero and not phones._plain(italian)
    assert phones._plain(phonenumbers.parse("+254712345678"))


def _is_mobile(raw, region):
    try:
        phones._parse(raw, region, True)
    except InvalidPhone:
        return False
    return True


@pytest.mark.parametrize("service", ["KE", "GH", "TZ", "US", "IT", "AR"])
def test_every_example_number_in_every_spelling_gets_the_same_answer(service):
    for raw, _ in EXAMPLES:
        assert_same(raw, service)


def test_every_example_number_read_in_its_own_region_gets_the_same_answer():
    for raw, region in EXAMPLES:
        if region in REGIONS:
            assert_same(raw, region)  # the national spellings, as their own country reads them


_SEPARATORS = st.sampled_from(["", " ", "-", ".", "(", ")", "+", "  "])


@st.composite
def spellings(draw):
    """An example number, changed the ways people and gateways change them."""
    raw, _ = draw(st.sampled_from(EXAMPLES))
    digits = [i for i, c in enumerate(raw) if c.isdigit()]
    change = draw(st.sampled_from(["as is", "digit", "drop", "append", "prefix", "separate", "cut"]))
    if change == "digit" and digits:
        i = draw(st.sampled_from(digits))
        raw = raw[:i] + draw(st.sampled_from("0123456789")) + raw[i + 1 :]
    elif change == "drop" and digits:
        i = draw(st.sampled_from(digits))
        raw = raw[:i] + raw[i + 1 :]
    elif change == "append":
        raw += draw(st.text("0123456789", min_size=1, max_size=4))
    elif change == "prefix":
        raw = draw(st.sampled_from(["0", "00", "+", "tel:", "1", "9", "15", "8", "0 ", "+0"])) + raw.lstrip(
            "+"
        )
    elif change == "separate" and len(raw) > 2:
        i = draw(st.integers(1, len(raw) - 1))
        raw = raw[:i] + draw(_SEPARATORS) + raw[i:]
    elif change == "cut" and len(raw) > 4:
        raw = raw[: draw(st.integers(3, len(raw) - 1))]
    return raw


@settings(max_examples=1200, deadline=None)
@given(raw=spellings(), service=st.sampled_from(SERVICE_AND_ODD + REGIONS))
def test_changed_spellings_get_the_same_answer(raw, service):
    assert_same(raw, service)


@settings(max_examples=800, deadline=None)
@given(
    raw=st.one_of(
        st.text("0123456789 +-().", max_size=24),
        st.builds(lambda d: "+" + d, st.text("0123456789", min_size=6, max_size=16)),
        st.builds(lambda d: "0" + d, st.text("0123456789", min_size=6, max_size=12)),
        st.builds(lambda d: "tel:+" + d, st.text("0123456789", min_size=6, max_size=16)),
        st.text(max_size=12),
    ),
    service=st.sampled_from(SERVICE_AND_ODD + REGIONS),
)
def test_any_text_gets_the_same_answer(raw, service):
    assert_same(raw, service)


def test_normalize_mobile_answers_as_before_for_the_service_countries(app):
    with app.app_context():
        assert phones.normalize_mobile("0712 345 678", "KE") == "+254712345678"
        assert phones.normalize_mobile("tel:+254-712-345-678", "KE") == "+254712345678"
        with pytest.raises(NotLocalMobile):
            phones.normalize_mobile("+254 20 2222222", "KE")  # a Nairobi landline
        with pytest.raises(NotLocalMobile):
            phones.normalize_mobile("+233 24 123 4567", "KE")  # a Ghanaian mobile
        with pytest.raises(InvalidPhone):
            phones.normalize_mobile("0712 34", "KE")
