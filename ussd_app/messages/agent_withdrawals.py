"""What agent-started withdrawals tell people (``payments/agent_withdrawals.py`` decides when):
the customer is asked to approve; the agent hears a decline, an expiry or a short balance.
"""

from flask import current_app

from . import money, sms_name, tell

# SMS (Kiswahili in translations/sw/LC_MESSAGES/sms-reversals.po).
ASKED = (
    "Agent {agent} {agent_phone} asks to withdraw {amount}, fee {fee}. With this agent now? "
    "Dial {service_code} > My approvals within {minutes} min."
)
DECLINED = "{name} {phone} declined your request to withdraw {amount}. Do not pay out any cash."
EXPIRED = "Your request to withdraw {amount} from {name} {phone} expired unapproved. Do not pay out any cash."
# The customer approved without the money for it: nothing is recorded, both are told.
SHORT_AGENT = "{name} {phone} does not have enough money to withdraw {amount}. Do not pay out any cash."
SHORT_CUSTOMER = (
    "Not enough money to withdraw {amount} plus fee {fee} at agent {agent}. Your balance is {balance}."
)
MESSAGES = (ASKED, DECLINED, EXPIRED, SHORT_AGENT, SHORT_CUSTOMER)


def asked(customer, agent, *, amount: int, fee: int, seconds: int) -> str:
    """To the customer: the agent asks to withdraw, approve within ``seconds``."""
    return tell(
        customer,
        ASKED,
        agent=sms_name(agent),
        agent_phone=agent.phone,
        amount=money(amount),
        fee=money(fee),
        service_code=current_app.config["SERVICE_CODE"],
        minutes=-(-seconds // 60),
    )


def short_customer(customer, agent, approval, spendable: int) -> str:
    """To the customer who approved without the money for amount and fee: what they may spend
    (their balance less their requests still queued)."""
    return tell(
        customer,
        SHORT_CUSTOMER,
        amount=money(approval.amount),
        fee=money(approval.fee),
        agent=sms_name(agent) if agent else "",
        balance=money(spendable),
    )


def _to_agent(english: str, agent, customer, approval) -> str:
    return tell(
        agent,
        english,
        name=sms_name(customer) if customer else "",
        phone=customer.phone if customer else "",
        amount=money(approval.amount),
    )


def short_agent(agent, customer, approval) -> str:
    return _to_agent(SHORT_AGENT, agent, customer, approval)


def declined(agent, customer, approval) -> str:
    return _to_agent(DECLINED, agent, customer, approval)


def expired(agent, customer, approval) -> str:
    return _to_agent(EXPIRED, agent, customer, approval)
