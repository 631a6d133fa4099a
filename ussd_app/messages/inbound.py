"""The answers to what people text us (``sms_commands/inbound.py`` decides which): help, a
transaction code checked (genuine, with where the money stands, only to a party), a code that
is not theirs, and ``REVERSE`` refused for a locked account or the recipient. (The answers to a
``REVERSE`` that reached the reversal's rules are ``reversals.py``'s.)
"""

from . import money, say, sms_name, when

HELP = (
    "Tuma: to check a receipt, send its 10-character transaction code. "
    "To ask for a reversal, send REVERSE and the code."
)
# The same answer for a code that does not exist and one of someone else's: codes cannot be probed.
NOT_YOURS = (
    "{code} is not a Tuma transaction of yours. Do not hand over goods or cash against a "
    "message with this code."
)

# The answer to REVERSE from a locked account, by who locked it (``_lock``). Kiswahili in
# sms-trust-limits.po (pin) and sms-trust-fixb.po (operator).
LOCKED_REPLIES = {
    "pin": (
        "Your Tuma account is locked, so we cannot start a reversal. "
        "Ask an agent or customer care to unlock it, then try again."
    ),
    "operator": (
        "Your Tuma account is locked by Tuma, so we cannot start a reversal. Please call customer care."
    ),
}


# The answer to a party checking a code: the other party, and where the money stands
# (``STATUSES``). Kiswahili in translations/sw/LC_MESSAGES/sms-trust-messages.po.
CHECK_REPLIES = {
    "payer": "{code} is genuine: {amount} to {who} on {date} at {time}. Status: {status}.",
    "payee": "{code} is genuine: {amount} from {who} on {date} at {time}. Status: {status}.",
}
STATUSES = (
    "completed",
    "in progress",
    "failed",
    "held for a security check",
    "held for a reversal until {date}",
    "reversed",
    "being reversed",
    "held until {date}, not final",
    "disputed, held until Tuma decides",
    "reversal refused",
    "refunded to the sender",
)


RECIPIENT_CANNOT_REVERSE = (
    "Only the sender can ask to reverse {code}. To return money you received, use Send money."
)


def help_reply(language: str) -> str:
    return say(language, HELP)


def not_yours(language: str, code: str) -> str:
    return say(language, NOT_YOURS, code=code)


def locked(language: str, lock: str) -> str:
    """To a locked account asking for a reversal; ``lock`` says who locked it ("pin", "operator")."""
    return say(language, LOCKED_REPLIES[lock])


def recipient_cannot_reverse(language: str, code: str) -> str:
    return say(language, RECIPIENT_CANNOT_REVERSE, code=code)


def _who(user) -> str:
    return f"{sms_name(user)} {user.phone}" if user is not None else "TUMA"


def genuine(
    language: str,
    request,
    other,
    status: tuple[str, dict],
    *,
    asker_paid: bool,
    named: bool = True,
    number: str | None = None,
) -> str:
    """To a party checking ``request``'s code: the ``other`` party and the ``status`` (a word of
    ``STATUSES`` and its fields). ``named``: whether the other party's registered name may be
    said (else its number only: ``sms_commands.inbound.named_to_asker``). ``number``: the number
    the money went to when no one holds the other side (a send to a number not on Tuma, held in
    suspense), said instead of TUMA, as the sender's receipt says it."""
    date, time_ = when(request.executed_at or request.created_at)
    word, fields = status
    if other is None and number:
        who = number
    else:
        who = other.phone if other is not None and not named else _who(other)
    return say(
        language,
        CHECK_REPLIES["payer" if asker_paid else "payee"],
        code=request.code,
        amount=money(request.amount),
        who=who,
        date=date,
        time=time_,
        status=say(language, word, **fields),
    )
