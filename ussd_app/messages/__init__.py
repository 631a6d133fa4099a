"""What people are told: every SMS template, in both languages, and every formatter.

The code that decides (``limits``, ``payments/*``, the flows) says what happened, as a value
with the facts (a ``limits.Refusal``, a request, an outcome); the modules here turn it into the
text a person reads, in that person's language. Nothing here writes to the database: the
domain's writers hand the text to the outbox (``sms.outbox.add_sms``) in the caller's
transaction.

- ``receipts``: the receipt of each kind of request, per party, and why a request failed;
- ``refusals``: a request the limits held for review, refused, or sent back in part;
- ``payment_requests``, ``agent_withdrawals``, ``reversals``, ``allowances``: those flows' own SMS;
- ``account``: notices about a person's account (welcome, PIN, tier, unlock code, statement);
- ``inbound``: the answers to what people text us (a transaction code, ``REVERSE <code>``).

Templates are English, and the English text is the message id of the Kiswahili catalogue
(``translations/sw/LC_MESSAGES/sms*.po``, read by ``i18n.py``): change an English template
and its translation must follow. ``tests/test_sms_segments.py`` finds every template in these
modules (an upper-case constant with a ``{field}``) and checks it fits one SMS in each language.

Formatters, the one house format for each: ``money`` (``KES 1,250.00``), ``when`` (a stored
moment as the date and time people read, in ``TIMEZONE``), ``sms_name`` (a person's name as
every SMS shows it).
"""

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app

from ..i18n import t
from ..money import format_amount
from ..ussd.gsm7 import shorten

__all__ = ["SMS_NAME_LIMIT", "money", "say", "sms_name", "tell", "when"]

# Septets of a person's name in an SMS: the longest name registration takes (20 + 1 + 20) is cut
# to this, ending in "..", so every one-segment SMS fits with the longest name.
SMS_NAME_LIMIT = 20


# The formatters below are pure functions of their arguments (the amount and currency, the
# moment and zone, the name), and a transfer batch asks each the same few questions thousands
# of times (a batch's requests share one execution time; amounts, names and balances repeat):
# each keeps its recent answers. Bounded, so a long-lived worker's memory stays flat.


@functools.lru_cache(maxsize=8192)
def _money(minor: int, currency: str) -> str:
    return format_amount(minor, currency)


@functools.lru_cache(maxsize=256)
def _when(moment: datetime, zone: str) -> tuple[str, str]:
    local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    return local.strftime("%d/%m/%y"), local.strftime("%H:%M")


@functools.lru_cache(maxsize=8192)
def _sms_name(name: str) -> str:
    return shorten(name.upper(), SMS_NAME_LIMIT)


def money(minor: int | None) -> str:
    """125000 -> 'KES 1,250.00', in the service's ``CURRENCY`` (None reads as nothing)."""
    return _money(int(minor or 0), current_app.config["CURRENCY"])


def when(moment: datetime) -> tuple[str, str]:
    """A naive-UTC moment as the date and time people read, in ``TIMEZONE``."""
    return _when(moment, current_app.config["TIMEZONE"])


def sms_name(user) -> str:
    """``user``'s name as every SMS shows it: upper case, at most ``SMS_NAME_LIMIT`` septets."""
    return _sms_name(user.name)


def say(language: str | None, english: str, **fields) -> str:
    """The SMS ``english`` in ``language`` (English when it has no translation), filled in."""
    return t(language, english, domain="sms", **fields)


def tell(user, english: str, **fields) -> str:
    """The SMS ``english`` in ``user``'s own language, filled in."""
    return say(user.language, english, **fields)
