"""Tips and donations (``payments/tips.py``): a cause's daily digest, and the answers to
``TOTAL <code>`` texted to the short code (``sms_commands/inbound.py``). A tip's own receipts,
sent only above ``TIP_SILENT_MAX_MAJOR``, are ``receipts.RECEIPTS["tip"]``. Kiswahili in
``translations/sw/LC_MESSAGES/sms-tips.po``.
"""

from . import money, say, sms_name, tell, when

# To a cause, the morning after a day it received tips: how many, how much, and its balance.
DIGEST = "Tuma: tips and donations to {name} on {date}: {count}, total {amount}. Balance now {balance}."

# ``TOTAL <code>``: a cause's name and what it has received this month (since {date}). Anyone
# may ask; the cause's wallet is public by design, its tippers are not named.
TOTAL = "Tips and donations to {name} (code {till}) since {date}: {count}, total {amount}."
# Anything else after TOTAL: a merchant's till, an unknown code or garbage all get this one
# answer, which repeats nothing of what was typed: a till's takings are never told.
NO_CAUSE = "Tuma has no cause with that code. To see what a cause has received, send TOTAL and its code."


def digest(cause, day, count: int, amount: int, *, balance: int) -> str:
    """The digest of ``day``'s tips to ``cause``, in the cause's language."""
    return tell(
        cause,
        DIGEST,
        name=sms_name(cause),
        date=day.strftime("%d/%m/%y"),
        count=count,
        amount=money(amount),
        balance=money(balance),
    )


def total(language: str, cause, count: int, amount: int, since) -> str:
    """The answer to ``TOTAL <code>`` for ``cause``: this month's tips since ``since`` (naive UTC)."""
    date, _ = when(since)
    return say(
        language,
        TOTAL,
        name=sms_name(cause),
        till=cause.till,
        date=date,
        count=count,
        amount=money(amount),
    )


def no_cause(language: str) -> str:
    return say(language, NO_CAUSE)
