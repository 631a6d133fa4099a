"""Notices about a person's account that no transfer carries: a welcome, money waiting for a
newcomer, an account an agent opened, the PIN locked, unlocked or changed, an unlock code, the
full tier, the mini statement. ``notices.py`` writes them to the outbox when the flows or the
PIN guard say so. Kiswahili in translations/sw/LC_MESSAGES/sms-trust-messages.po (and
``ussd.po`` for the statement's heading, which the menu shows too).
"""

from flask import current_app

from ..clock import utcnow
from ..i18n import t
from ..users import Role
from . import money, sms_name, tell, when

# After registration by USSD.
WELCOME = (
    "Welcome to Tuma, {first_name}. Your account is ready. Dial {service_code} to send money, pay "
    "and check your balance."
)
MONEY_WAITING = (
    "Tuma: {amount} sent to you before you registered is being paid into your account now. "
    "You will get an SMS for each payment."
)
# To a customer an agent registered (no request: the account was opened for them).
OPENED_BY_AGENT = (
    "Welcome to Tuma, {first_name}. Agent {agent} opened your account. Dial {code} to choose your PIN."
)

# The PIN, told to its holder (someone else may be trying it).
LOCKED_SMS = (
    "Tuma: your PIN was locked on {date} at {time} after {tries} wrong tries. Ask an agent to "
    "unlock it. Not you? Call customer care."
)
# An agent unlocks only customers' PINs: an agent's or a merchant's is unlocked by customer care.
LOCKED_BUSINESS_SMS = (
    "Tuma: your PIN was locked on {date} at {time} after {tries} wrong tries. Call customer care "
    "to unlock it. Not you? Call customer care."
)
UNLOCKED_SMS = "Tuma: your PIN was unlocked on {date} at {time}. Not you? Call customer care now."
UNLOCKED_BY_AGENT_SMS = (
    "Tuma: your PIN was unlocked by agent {agent} {agent_phone} on {date} at {time}. "
    "Not you? Call customer care now."
)
CHANGED_SMS = "Tuma: your PIN was changed on {date} at {time}. Not you? Call customer care now."
UNLOCK_CODE_SMS = (
    "Tuma: agent {agent} {agent_phone} asks to unlock your PIN. Code {code}, valid {minutes} min. "
    "Tell it only to an agent you are with now."
)

TIER_RAISED_SMS = (
    "Tuma: agent {agent} {agent_phone} checked your ID on {date}. Your account is now on the full "
    "tier, with higher limits."
)

# The mini statement's heading (a screen's text too: the ussd catalogue).
STATEMENT_HEADING = "Tuma mini statement:"


def welcome(user) -> str:
    return tell(user, WELCOME, first_name=user.first_name, service_code=current_app.config["SERVICE_CODE"])


def money_waiting(user, amount: int) -> str:
    return tell(user, MONEY_WAITING, amount=money(amount))


def opened_by_agent(user, agent) -> str:
    return tell(
        user,
        OPENED_BY_AGENT,
        first_name=user.first_name,
        agent=agent.name,
        code=current_app.config["SERVICE_CODE"],
    )


def _dated(user, english: str, **fields) -> str:
    """``english`` to ``user``, dated now."""
    date, time_ = when(utcnow())
    return tell(user, english, date=date, time=time_, **fields)


def pin_locked(user, tries: int) -> str:
    english = LOCKED_SMS if user.role == Role.CUSTOMER.value else LOCKED_BUSINESS_SMS
    return _dated(user, english, tries=tries)


def pin_unlocked(user, agent=None) -> str:
    if agent is None:
        return _dated(user, UNLOCKED_SMS)
    return _dated(user, UNLOCKED_BY_AGENT_SMS, agent=sms_name(agent), agent_phone=agent.phone)


def pin_changed(user) -> str:
    return _dated(user, CHANGED_SMS)


def unlock_code(user, agent, code: str) -> str:
    return tell(
        user,
        UNLOCK_CODE_SMS,
        agent=sms_name(agent),
        agent_phone=agent.phone,
        code=code,
        minutes=-(-current_app.config["UNLOCK_CODE_SECONDS"] // 60),
    )


def tier_raised(user, agent) -> str:
    date, _ = when(utcnow())
    return tell(user, TIER_RAISED_SMS, agent=sms_name(agent), agent_phone=agent.phone, date=date)


def mini_statement(language: str, lines: list[str]) -> str:
    return t(language, STATEMENT_HEADING) + "\n" + "\n".join(lines)
