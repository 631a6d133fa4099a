"""Country profiles: everything that differs between the markets Tuma runs in, in one place.

One process serves one country, chosen by ``TUMA_COUNTRY`` (``KE``, the default, ``GH`` or
``TZ``). Its profile gives:

- the currency: ISO 4217 code and how amounts are shown (``CURRENCIES``; every one of them has
  two minor units, so money everywhere stays an integer of hundredths: ``money.py``);
- the phone region ``phonenumbers`` reads local numbers in (``COUNTRY`` itself);
- the service code SMS tell people to dial, and the time zone receipts and "today" use;
- the languages offered, first the one spoken to a stranger (an invitation, a new number);
- the default tariff (``tariffs.default_document`` builds it from the bands here, in the
  country's currency) and the default limits per KYC tier and other thresholds in major units;
- the bounds of one airtime purchase and the merchant API's cap on one amount, in its scale.

``configure`` runs once in ``create_app``: an unknown country refuses to start, and every
setting left unset (``None``) in the configuration is filled in from the profile, so the rest
of the code keeps reading ``current_app.config["CURRENCY"]`` and friends. A ``TUMA_*`` variable
still overrides its setting (``TUMA_CURRENCY``, ``TUMA_SERVICE_CODE``, ``TUMA_TIMEZONE``,
``TUMA_LIMITS_BASIC_MAJOR`` ...).

Adding a country: a ``Currency`` if it is new, a ``Profile`` in ``PROFILES``, and Kiswahili or
English being its languages (a new language needs its own catalogues, ``i18n.py``).
"""

from dataclasses import dataclass, field

import phonenumbers
from flask.globals import _cv_app  # the context variable behind current_app (see ``languages``)

DEFAULT_COUNTRY = "KE"


class CountryConfigError(ValueError):
    """A setting that overrides the profile cannot be used (a language without catalogues, a
    currency that is no ISO code, an unknown time zone): the service refuses to start."""


class UnknownCountry(CountryConfigError):
    """``TUMA_COUNTRY`` names no profile: the service refuses to start."""


@dataclass(frozen=True)
class Currency:
    """An ISO 4217 currency as Tuma shows it.

    ``minor_units`` is ISO 4217's exponent. ``cents_shown`` False shows whole amounts without
    the ".00" (an amount with a fraction still shows it: nobody is shown less than they pay)."""

    code: str
    minor_units: int = 2
    cents_shown: bool = True


# ISO 4217 gives all three two minor units (cents, pesewas, senti). Tanzanian shillings are
# written whole in practice (senti went out of use with inflation; mobile money, prices and
# receipts show "TZS 10,000"), so TZS amounts are shown without ".00" but still counted in
# hundredths: the ISO exponent is what banks, card schemes and our API's minor units use, and
# one exponent for every currency keeps the ledger, the API and the tariffs unchanged.
CURRENCIES = {
    "KES": Currency("KES"),
    "GHS": Currency("GHS"),  # "GH₵" is not GSM-7: screens and SMS use the ISO code
    "TZS": Currency("TZS", cents_shown=False),
}


@dataclass(frozen=True)
class Profile:
    code: str  # ISO 3166 alpha-2, also phonenumbers' region
    name: str
    currency: str  # a key of CURRENCIES
    service_code: str
    timezone: str
    languages: tuple[str, ...]  # offered; the first is spoken to strangers (menus: LANGUAGE_NAMES order)
    # A mobile number of this country ending in 00, for examples and hints; the development
    # demo's people are numbered from it (devtools/demo.py).
    example_mobile: str
    # Default tariff, major units. send: (up to, fee); withdrawal: (up to, fee, agent's commission).
    # Sending (and tipping) up to ``free_send_up_to`` is always free: micropayments stay free.
    free_send_up_to: int
    send_bands: tuple[tuple[int, int], ...]
    withdrawal_bands: tuple[tuple[int, int, int], ...]
    withdrawal_min: int
    merchant_cap: int  # the most a merchant pays per payment (0.5%, capped)
    # Airtime one purchase may buy, least and most (the networks' own bounds, major units).
    airtime_min: int
    airtime_max: int
    # The most one amount given to the merchant API may be (a payout, a refund, a payment
    # request, an allowance's limit): above every tier's limit, in this currency's scale.
    api_max_amount: int
    # Defaults of the settings in major units of this currency (config key -> value).
    settings: dict = field(default_factory=dict)

    @property
    def calling_code(self) -> int:
        return phonenumbers.country_code_for_region(self.code)

    def numbered(self, n: int) -> str:
        """``example_mobile`` ending in ``n`` (0-99): the demo's numbers in this country."""
        return self.example_mobile[:-2] + f"{n:02d}"


PROFILES = {
    "KE": Profile(
        code="KE",
        name="Kenya",
        currency="KES",
        service_code="*384*7#",
        timezone="Africa/Nairobi",
        languages=("en", "sw"),
        example_mobile="+254700000000",
        free_send_up_to=100,
        send_bands=(
            (100, 0),
            (500, 7),
            (1_000, 13),
            (1_500, 23),
            (2_500, 33),
            (3_500, 53),
            (5_000, 57),
            (7_500, 78),
            (10_000, 90),
            (15_000, 100),
            (20_000, 105),
            (10_000_000, 108),
        ),
        withdrawal_bands=(
            (100, 11, 5),
            (2_500, 29, 12),
            (3_500, 52, 21),
            (5_000, 69, 28),
            (7_500, 87, 35),
            (10_000, 115, 46),
            (15_000, 167, 67),
            (20_000, 185, 74),
            (35_000, 197, 79),
            (50_000, 278, 111),
            (250_000, 309, 124),
        ),
        withdrawal_min=50,
        merchant_cap=200,
        api_max_amount=1_000_000,  # KES 1,000,000, as before the profiles
        airtime_min=10,
        airtime_max=10_000,
        settings={
            # per transfer, per day (amount + fee), wallet balance
            "LIMITS_BASIC_MAJOR": "70000,150000,100000",
            "LIMITS_FULL_MAJOR": "250000,500000,500000",
            "VELOCITY_MAX_VALUE_MAJOR": 200_000,
            "SIM_SWAP_THRESHOLD_MAJOR": 10_000,
            "TIP_SILENT_MAX_MAJOR": 100,
        },
    ),
    # Ghana: cedis, about a tenth of a Kenyan shilling's figures. Limits follow the shape of
    # the Bank of Ghana's e-money tiers (minimum and enhanced KYC).
    "GH": Profile(
        code="GH",
        name="Ghana",
        currency="GHS",
        service_code="*713*7#",
        timezone="Africa/Accra",
        languages=("en",),
        example_mobile="+233240000000",
        free_send_up_to=10,
        send_bands=(
            (10, 0),
            (50, 1),
            (100, 2),
            (250, 3),
            (500, 5),
            (1_000, 8),
            (2_500, 12),
            (10_000_000, 15),
        ),
        withdrawal_bands=(
            (50, 1, 0),
            (250, 3, 1),
            (500, 5, 2),
            (1_000, 9, 4),
            (2_500, 16, 6),
            (5_000, 25, 10),
            (10_000, 40, 16),
        ),
        withdrawal_min=5,
        merchant_cap=20,
        api_max_amount=100_000,
        airtime_min=1,
        airtime_max=1_000,
        settings={
            "LIMITS_BASIC_MAJOR": "3000,5000,10000",
            "LIMITS_FULL_MAJOR": "15000,25000,75000",
            "VELOCITY_MAX_VALUE_MAJOR": 20_000,
            "SIM_SWAP_THRESHOLD_MAJOR": 1_000,
            "TIP_SILENT_MAX_MAJOR": 10,
        },
    ),
    # Tanzania: shillings, about twenty times a Kenyan shilling's figures.
    "TZ": Profile(
        code="TZ",
        name="Tanzania",
        currency="TZS",
        service_code="*150*47#",
        timezone="Africa/Dar_es_Salaam",
        languages=("sw", "en"),
        example_mobile="+255710000000",
        free_send_up_to=2_000,
        send_bands=(
            (2_000, 0),
            (10_000, 150),
            (30_000, 300),
            (100_000, 700),
            (500_000, 1_500),
            (1_000_000, 2_500),
            (10_000_000, 3_500),
        ),
        withdrawal_bands=(
            (5_000, 500, 200),
            (20_000, 900, 360),
            (50_000, 1_500, 600),
            (100_000, 2_500, 1_000),
            (500_000, 5_000, 2_000),
            (1_000_000, 8_000, 3_200),
            (5_000_000, 12_000, 4_800),
        ),
        withdrawal_min=1_000,
        merchant_cap=5_000,
        api_max_amount=10_000_000,  # the most a phone may type (money.MAX_MAJOR_AMOUNT)
        airtime_min=200,
        airtime_max=200_000,
        settings={
            "LIMITS_BASIC_MAJOR": "1000000,3000000,3000000",
            "LIMITS_FULL_MAJOR": "5000000,10000000,10000000",
            "VELOCITY_MAX_VALUE_MAJOR": 4_000_000,
            "SIM_SWAP_THRESHOLD_MAJOR": 200_000,
            "TIP_SILENT_MAX_MAJOR": 2_000,
        },
    ),
}

# Language names as their own speakers read them; the language menus list the offered ones in
# this order, so "1. English\n2. Kiswahili" reads the same in every country that offers both.
LANGUAGE_NAMES = {"en": "English", "sw": "Kiswahili"}


def profile(code: str | None = None) -> Profile:
    """The profile of ``code`` (the app's ``COUNTRY`` when None, ``DEFAULT_COUNTRY`` outside an
    app); UnknownCountry when there is none."""
    if code is None:
        ctx = _cv_app.get(None)
        code = ctx.app.config.get("COUNTRY", DEFAULT_COUNTRY) if ctx is not None else DEFAULT_COUNTRY
    try:
        return PROFILES[code]
    except KeyError:
        known = ", ".join(PROFILES)
        raise UnknownCountry(
            f"TUMA_COUNTRY={code!r} has no country profile (known: {known}; see ussd_app/country.py)"
        ) from None


def configure(config) -> Profile:
    """Check ``COUNTRY`` and fill every unset setting from its profile (``create_app``)."""
    chosen = profile(config.get("COUNTRY") or DEFAULT_COUNTRY)
    config["COUNTRY"] = chosen.code
    defaults = {
        "CURRENCY": chosen.currency,
        "SERVICE_CODE": chosen.service_code,
        "TIMEZONE": chosen.timezone,
        "LANGUAGES": chosen.languages,
        **chosen.settings,
    }
    for key, value in defaults.items():
        if config.get(key) is None:
            config[key] = value
    _check_overrides(config)
    return chosen


def _check_overrides(config) -> None:
    """What an operator's ``TUMA_*`` override may not be; refused at start with what to fix."""
    import re
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    unknown = [lang for lang in config["LANGUAGES"] if lang not in LANGUAGE_NAMES]
    if unknown or not config["LANGUAGES"]:
        raise CountryConfigError(
            f"TUMA_LANGUAGES={','.join(config['LANGUAGES'])!r}: each one of {', '.join(LANGUAGE_NAMES)}"
        )
    if not re.fullmatch(r"[A-Z]{3}", str(config["CURRENCY"])):
        raise CountryConfigError(f"TUMA_CURRENCY={config['CURRENCY']!r} is not an ISO 4217 code like KES")
    chosen = profile(config["COUNTRY"])
    if config.get("TUMA_ENV") == "production" and config["CURRENCY"] != chosen.currency:
        # The profile's tariff, limits and thresholds are figures of its own currency: under
        # another code every fee and limit would be off by the exchange rate.
        raise CountryConfigError(
            f"TUMA_ENV=production but TUMA_CURRENCY={config['CURRENCY']!r} is not the currency of "
            f"TUMA_COUNTRY={chosen.code} ({chosen.currency}), whose tariff and limits are in "
            f"{chosen.currency}: unset TUMA_CURRENCY, or choose the country that uses it"
        )
    try:
        ZoneInfo(str(config["TIMEZONE"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise CountryConfigError(
            f"TUMA_TIMEZONE={config['TIMEZONE']!r} is not a time zone like Africa/Accra"
        ) from None


def languages() -> tuple[str, ...]:
    """The languages this service offers; the first is spoken to strangers."""
    # Every message translated asks (eight times a menu hop): the app context is read from
    # Flask's context variable once, what ``has_app_context()`` and ``current_app.config``
    # would each read again through their proxies.
    ctx = _cv_app.get(None)
    offered = ctx.app.config.get("LANGUAGES") if ctx is not None else None
    return tuple(offered or profile().languages)


def first_language() -> str:
    """The language spoken to someone whose own is not known (an invitation, a new number)."""
    return languages()[0]


def spoken(language: str | None) -> str:
    """The language to speak to someone whose own is ``language``: it, when this service offers
    it; else the country's first (a stored language the server no longer offers, none known)."""
    offered = languages()
    return language if language in offered else offered[0]


def offers(language: str | None) -> bool:
    return language in languages()


def menu_languages() -> tuple[str, ...]:
    """The offered languages in the order the language menus number them."""
    offered = languages()
    return tuple(lang for lang in LANGUAGE_NAMES if lang in offered)


def language_menu() -> str:
    """The numbered language lines, e.g. "1. English\\n2. Kiswahili"."""
    return "\n".join(f"{n}. {LANGUAGE_NAMES[lang]}" for n, lang in enumerate(menu_languages(), start=1))


def currency(code: str) -> Currency:
    """How ``code`` is shown; an unknown code (an operator's ``TUMA_CURRENCY``) shows cents."""
    return CURRENCIES.get(code) or Currency(code)
