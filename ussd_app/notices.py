"""Account notices: the SMS about a person's account that no transfer carries, written to the
outbox in the caller's transaction (the request or job commits; its commit rings the SMS
queue). The menus and the PIN guard call these when something happened; the words are
``messages/account.py``'s. Nothing here commits.
"""

from .messages import account as texts
from .sms.outbox import add_sms


def _send(session, user, body: str) -> None:
    add_sms(session, phone=user.phone, body=body)


def welcome(session, user) -> None:
    """A customer registered by USSD."""
    _send(session, user, texts.welcome(user))


def money_waiting(session, user, amount: int) -> None:
    """``amount`` sent to a newcomer's number before they registered is being paid in."""
    _send(session, user, texts.money_waiting(user, amount))


def opened_by_agent(session, user, agent) -> None:
    """``agent`` opened ``user``'s account; the customer chooses the PIN by dialling."""
    _send(session, user, texts.opened_by_agent(user, agent))


def pin_locked(session, user, tries: int) -> None:
    _send(session, user, texts.pin_locked(user, tries))


def pin_unlocked(session, user, agent=None) -> None:
    """The PIN lock was lifted (by ``agent``, when one did it)."""
    _send(session, user, texts.pin_unlocked(user, agent))


def pin_changed(session, user) -> None:
    _send(session, user, texts.pin_changed(user))


def unlock_code(session, user, agent, code: str) -> None:
    """The one-time code ``agent`` asked for, to the locked phone."""
    _send(session, user, texts.unlock_code(user, agent, code))


def tier_raised(session, user, agent) -> None:
    """``agent`` checked ``user``'s ID: the full tier."""
    _send(session, user, texts.tier_raised(user, agent))


def mini_statement(session, user, language: str, lines: list[str]) -> None:
    """Every line of the statement (the screen shows as many as fit)."""
    _send(session, user, texts.mini_statement(language, lines))
