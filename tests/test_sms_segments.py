"""Every SMS template fits one segment (160 GSM-7 characters) in English and Kiswahili at its
longest field values; only the sender's receipt of a kind named in ``kinds.TWO_SEGMENTS``
may take two (306), as the real thing does (issue 15 item 18).

The templates are enumerated from the modules that hold them (every module-level string with a
``{field}``, and every such string inside a module-level dict or tuple), so a new template is
covered without touching this test. Failure templates are rendered with every reason."""

import string

import pytest

from ussd_app.i18n import catalog, t
from ussd_app.money import format_amount
from ussd_app.ussd.flows.pay import REFERENCE_LIMIT
from ussd_app.ussd.gsm7 import length

MODULES = (
    "ussd_app.messages.receipts",
    "ussd_app.messages.refusals",
    "ussd_app.messages.payment_requests",
    "ussd_app.messages.agent_withdrawals",
    "ussd_app.messages.reversals",
    "ussd_app.messages.account",
    "ussd_app.messages.inbound",
    "ussd_app.messages.tips",
    "ussd_app.messages.standing_orders",
    "ussd_app.messages.allowances",
)
ONE_SEGMENT, TWO_SEGMENTS = 160, 306


def _is_template(value) -> bool:
    return isinstance(value, str) and any(
        field for _, field, _, _ in string.Formatter().parse(value) if field
    )


def _leaves(value, path):
    if _is_template(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, tuple | list | frozenset):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))


def templates():
    import importlib

    seen = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.isupper():
                for path, text in _leaves(value, (name.rsplit(".", 1)[1], attr)):
                    seen.setdefault(text, path)
    return [(path, text) for text, path in seen.items()]


def longest(app) -> dict:
    """The longest value each field can take."""
    from ussd_app import country, limits
    from ussd_app.messages import sms_name
    from ussd_app.ussd.flows import common

    currency = app.config["CURRENCY"]
    biggest = max(limits.tier_limits(tier).per_transfer for tier in ("basic", "full"))

    class Longest:
        name = "W" * common.NAME_LIMIT + " " + "W" * common.NAME_LIMIT  # the longest registered
        first_name = "W" * common.NAME_LIMIT

    person = sms_name(Longest)
    number = country.profile().numbered(99)  # "+254700000099", "+233240000099", ...
    money = format_amount(biggest, currency)
    balance = format_amount(99_999_999_99, currency)  # a busy agent's or merchant's balance
    return {
        "code": "ABCDEFGH23",
        "amount": money,
        "fee": format_amount(9_999_99, currency),  # tariffs are set by the operator: 4 digits
        "commission": format_amount(9_999_99, currency),
        "payee_fee": format_amount(200_00, currency),
        "balance": balance,
        "left_today": money,
        "left": money,  # what is left of an allowance's period
        "limit": money,
        "excess": money,
        "sent": money,  # a hold sent back in part or whole (limits.RETURNED_*)
        "returned": money,
        "total": format_amount(10 * biggest, currency),
        "name": person,
        "agent": person,
        "who": f"{person} {number}",  # inbound: a party as "NAME NUMBER"
        "first_name": Longest.first_name,
        "phone": number,
        "agent_phone": number,
        "till": "9999999",
        "reference": "W" * REFERENCE_LIMIT,
        "reason": "W" * 20,  # payment requests' reason (REASON_LIMIT)
        "date": "31/12/26",
        "time": "23:59",
        "days": 30,
        "hours": 72,
        "minutes": 60,
        "paid": 10,
        "count": 10,
        "service_code": app.config["SERVICE_CODE"],
        "code_tries_left": 9,
        "tries": 10,
        "result": "pending_transfer_already_posted",
        "until": "31/12/26",
        # Standing orders (messages/standing_orders.py): how often and why a run was not paid,
        # each the longest of its words in either language; the next run's date.
        "often": "W" * 11,
        "why": "W" * 30,
        "next": "31/12/26",
    }


def _reasons(app, language: str, fields: dict) -> list[str]:
    from ussd_app.messages import receipts

    english = [*receipts.REASONS.values(), receipts.REASON_OTHER]
    return [t(language, r, domain="sms", **fields) for r in english]


def _allowed(path) -> int:
    from ussd_app.payments import kinds

    if path[:2] == ("receipts", "RECEIPTS") and path[3] == "sender" and path[2] in kinds.TWO_SEGMENTS:
        return TWO_SEGMENTS
    return ONE_SEGMENT


def test_there_are_templates_to_check(app):
    paths = {path[:2] for path, _ in templates()}
    assert ("receipts", "RECEIPTS") in paths and ("agent_withdrawals", "ASKED") in paths


@pytest.mark.parametrize("language", ["en", "sw"])
def test_every_sms_fits_one_segment_at_its_longest(app, language):
    check_every_sms(app, language)


@pytest.fixture(params=["GH", "TZ"])
def abroad(request):
    """The service as Ghana or Tanzania runs it (``TUMA_COUNTRY``)."""
    from tests.test_country_profiles import _country_app

    yield from _country_app(request.param)


def test_every_sms_fits_in_every_country_and_each_of_its_languages(abroad):
    """Ghana's and Tanzania's SMS, in each language the country offers, at their own currency's
    and tiers' longest amounts (TZS limits are twenty times Kenya's figures) and numbers."""
    from ussd_app import country

    app, _gateway = abroad
    for language in country.languages():
        check_every_sms(app, language)


def check_every_sms(app, language: str) -> None:
    from ussd_app.messages import inbound

    fields = longest(app)
    # The receipt check's status: the longest of its words in this language, with a date.
    fields["status"] = max(
        (t(language, s, domain="sms", date=fields["date"]) for s in inbound.STATUSES), key=len
    )
    too_long = []
    for path, english in templates():
        if path[1] == "REASONS" or path[1] == "REASON_OTHER":
            continue  # fragments, checked inside the failure templates below
        if language == "sw":
            assert english in catalog("sw", "sms"), f"{path} has no Kiswahili"
        reasons = _reasons(app, language, fields) if "{reason}" in english else [None]
        if path[0] == "payment_requests":
            reasons = [None]  # their {reason} is the requester's own 20 letters
        for reason in reasons:
            values = {**fields, **({"reason": reason} if reason is not None else {})}
            text = t(language, english, domain="sms", **values)
            size = length(text)
            assert size is not None, f"{path} is not GSM-7 in {language}: {text!r}"
            if size > _allowed(path):
                too_long.append((size, path, text))
    assert not too_long, "\n".join(f"{size} {path}: {text}" for size, path, text in sorted(too_long))
