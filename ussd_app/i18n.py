"""Languages: English (the message ids themselves) and Kiswahili, from gettext catalogs.

Catalogs are ordinary gettext ``.po`` files under ``ussd_app/translations/<lang>/LC_MESSAGES/``,
one per domain (``ussd`` for screens, ``sms`` for messages), read with Babel at first use, so
there is no compile step to forget. Message ids are the English text with ``{named}``
placeholders; ``t("sw", "Enter PIN")`` gives the Kiswahili, falling back to English.

Extract new ids with ``pybabel extract -k t:2 -o messages.pot ussd_app`` and merge them into
the ``.po`` files with ``pybabel update``.
"""

import functools
import os

from babel.messages.pofile import read_po

LANGUAGES = ("en", "sw")
DEFAULT_LANGUAGE = "en"
DOMAINS = ("ussd", "sms")
_DIR = os.path.join(os.path.dirname(__file__), "translations")


@functools.cache
def catalog(language: str, domain: str) -> dict[str, str]:
    path = os.path.join(_DIR, language, "LC_MESSAGES", f"{domain}.po")
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as fh:
        po = read_po(fh, locale=language, domain=domain)
    return {m.id: m.string for m in po if m.id and m.string and not m.fuzzy}


def t(language: str | None, message: str, domain: str = "ussd", **params) -> str:
    """``message`` in ``language`` (English when no translation), with ``params`` filled in."""
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    text = message if language == DEFAULT_LANGUAGE else catalog(language, domain).get(message, message)
    return text.format(**params) if params else text
