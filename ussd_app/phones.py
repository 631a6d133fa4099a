"""Phone numbers: accepted in local or international form, stored in E.164."""

import phonenumbers
from flask import current_app


class InvalidPhone(ValueError):
    pass


def normalize(raw: str, region: str | None = None) -> str:
    """'0712 345 678' or '+254712345678' -> '+254712345678'; anything else is InvalidPhone."""
    if not raw or len(raw) > 32:
        raise InvalidPhone(raw)
    region = region or current_app.config["COUNTRY"]
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(raw) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
