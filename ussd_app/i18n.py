"""Languages: English (the message ids themselves) and Kiswahili, from gettext catalogs.

Catalogs are ordinary gettext ``.po`` files under ``ussd_app/translations/<lang>/LC_MESSAGES/``,
per domain (``ussd`` for screens, ``sms`` for messages), read with Babel at first use, so there
is no compile step to forget. A domain may be split by feature: ``ussd.po`` plus any
``ussd-<feature>.po`` (e.g. ``ussd-agents.po``) are read as one catalog, so flows built side by
side do not edit the same file. Message ids are the English text with ``{named}``
placeholders; ``t("sw", "Enter PIN")`` gives the Kiswahili, falling back to English.

Extract new ids with ``pybabel extract -k t:2 -o messages.pot ussd_app`` and merge them into
the ``.po`` files with ``pybabel update``.
"""

import functools
import glob
import os

from babel.messages.pofile import read_po

from . import country

LANGUAGES = ("en", "sw")
DEFAULT_LANGUAGE = "en"
DOMAINS = ("ussd", "sms")
_DIR = os.path.join(os.path.dirname(__file__), "translations")


@functools.cache
def catalog(language: str, domain: str) -> dict[str, str]:
    folder = os.path.join(_DIR, language, "LC_MESSAGES")
    names = [os.path.join(folder, f"{domain}.po"), *sorted(glob.glob(os.path.join(folder, f"{domain}-*.po")))]
    messages: dict[str, str] = {}
    for path in names:
        if not os.path.exists(path):
            continue
        with open(path, "rb") as fh:
            po = read_po(fh, locale=language, domain=domain)
        messages.update({m.id: m.string for m in po if m.id and m.string and not m.fuzzy})
    return messages


def speaking(language: str | None) -> str:
    """The catalog ``t`` answers ``language`` from: the language itself when the service
    offers it and has words for it, else the country's first (or English). Two calls of ``t``
    with the same message and no ``params`` give the same text exactly when this is the same
    (the catalogs are read once and never change), so a caller may keep what ``t`` gave under
    it (``engine``'s menu lines)."""
    offered = country.languages()  # (``country.spoken``, without a call more: many a hop)
    language = language if language in offered else offered[0]
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def t(language: str | None, message: str, domain: str = "ussd", **params) -> str:
    """``message`` in ``language`` (English when no translation), with ``params`` filled in.

    A language the service does not offer (``country.languages``: a Kiswahili speaker's row
    carried over to a server in Ghana, which offers English only) is spoken as the country's
    first: nobody is answered in a language whose menu they could not choose again."""
    language = speaking(language)
    text = message if language == DEFAULT_LANGUAGE else catalog(language, domain).get(message, message)
    return text.format(**params) if params else text
