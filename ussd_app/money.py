"""Money is an integer number of minor units (cents) everywhere; this is the only edge.

Amounts typed on a phone are whole major units ("100" = 100 shillings). They become minor
units here and are formatted back (``KES 1,250.00``, ``TZS 10,000``) only when shown to a person,
as the currency's entry in ``country.CURRENCIES`` says.
"""

from .country import CURRENCIES, DEFAULT_COUNTRY, PROFILES
from .country import currency as currency_rules

# Outside an app (scripts, tests of this module) amounts read in the default country's currency.
DEFAULT_CURRENCY = PROFILES[DEFAULT_COUNTRY].currency

MINOR_PER_MAJOR = 100
# The largest amount anyone may type: far above any limit, far below 64-bit overflow.
MAX_MAJOR_AMOUNT = 10_000_000


class InvalidAmount(ValueError):
    pass


def parse_major(text: str) -> int:
    """'1250' -> 125000. Only whole, positive major units; anything else is InvalidAmount."""
    text = (text or "").strip().replace(",", "")
    if not text.isascii() or not text.isdigit():
        raise InvalidAmount(text)
    major = int(text)
    if major <= 0 or major > MAX_MAJOR_AMOUNT:
        raise InvalidAmount(text)
    return major * MINOR_PER_MAJOR


def to_minor(major: int) -> int:
    return int(major) * MINOR_PER_MAJOR


def major_text(minor: int) -> str:
    """125000 -> '1250', 125050 -> '1250.50': an amount as an API takes it, integers only."""
    major, cents = divmod(int(minor), MINOR_PER_MAJOR)
    return str(major) if cents == 0 else f"{major}.{cents:02d}"


def format_amount(minor: int, currency: str = DEFAULT_CURRENCY) -> str:
    """(125000, "KES") -> 'KES 1,250.00'; (1000000, "TZS") -> 'TZS 10,000' (a currency shown
    without cents still shows a fraction: 'TZS 10,000.50')."""
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(int(minor)), MINOR_PER_MAJOR)
    if cents == 0 and not currency_rules(currency).cents_shown:
        return f"{sign}{currency} {major:,}"
    return f"{sign}{currency} {major:,}.{cents:02d}"


def widest(minor) -> str:
    """``minor`` as the widest of every currency shows it (``minor`` may instead be a function
    of a profile giving that country's own figure, major units, like its largest fee): screen
    samples use this, so a screen that fits holds any country's amount."""
    if callable(minor):
        shown = (format_amount(to_minor(minor(p)), p.currency) for p in PROFILES.values())
    else:
        shown = (format_amount(minor, code) for code in CURRENCIES)
    return max(shown, key=len)


# The widest amount anyone can type (MAX_MAJOR_AMOUNT), e.g. "KES 10,000,000.00".
WIDEST_AMOUNT = widest(to_minor(MAX_MAJOR_AMOUNT))
