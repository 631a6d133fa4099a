"""What people are told when the limits stop a request (``ussd_app/limits.py`` decides, as a
``limits.Refusal``): refused by a tier limit, held for review, or a hold posted only in part
(or voided) because of its payee's balance limit. ``sms/limit_receipts.py`` says who is told
and writes it to the outbox. The reasons inside a failure are ``receipts.REASONS``.
"""

from ..payments.models import RequestKind
from . import money, tell
from .receipts import counterparty, facts, failed

# What the payer is told when a request is held for review (``receipts.REASONS`` holds the
# refusals' reasons). Kiswahili: translations/sw/LC_MESSAGES/sms-limits.po.
HELD = (
    "{code} On hold: {amount} to {name} {phone} waits for a security check. We will SMS the "
    "decision. Nothing has left your account."
)
# The same, for kinds whose payee is not a person on Tuma, or who waits at a counter
# (Kiswahili: translations/sw/LC_MESSAGES/sms-limits-fixc.po). {phone} of the first two is the
# number topped up or invited (the request's reference).
HELD_AIRTIME = (
    "{code} On hold: {amount} of airtime for {phone} waits for a security check. We will SMS the "
    "decision. Nothing has left your account."
)
HELD_TO_NUMBER = (
    "{code} On hold: {amount} to {phone} waits for a security check. We will SMS the decision. "
    "Nothing has left your account."
)
# A withdrawal at the counter: the customer's screen promised cash "when you receive the SMS",
# so neither side may read this as the go-ahead; the agent waits for the "Confirmed" SMS.
HELD_WITHDRAWAL = (
    "{code} On hold: withdrawal of {amount} at agent {name} waits for a security check. "
    "Take no cash until we SMS the decision."
)
HELD_AGENT = (
    "{code} On hold: {name} {phone} withdrawing {amount} waits for a security check. "
    "Pay out no cash until a Confirmed SMS."
)
STOPPED_AGENT = (
    "{code} Withdrawal of {amount} by {name} {phone} was stopped by a security check. "
    "Do not pay out any cash."
)
# To the agent at the counter whose customer's withdrawal the worker refused (a limit, or the
# ledger: the money went elsewhere since the PIN); he was told to pay out only after an SMS.
NOT_MADE_AGENT = "{code} Withdrawal of {amount} by {name} {phone} was not made. Do not pay out any cash."
HELD_BY_KIND = {
    RequestKind.AIRTIME.value: HELD_AIRTIME,
    RequestKind.SEND_UNREGISTERED.value: HELD_TO_NUMBER,
    RequestKind.WITHDRAWAL.value: HELD_WITHDRAWAL,
}

# A hold its payee's balance limit sent back, in part (PART) or whole (ALL), for each side
# (Kiswahili: translations/sw/LC_MESSAGES/sms-trust-limits.po). {amount} is what arrived,
# {sent} the whole hold, {returned} the rest; the payer of a suspense release is its sender.
# Each fits one SMS segment at its longest (tests/test_sms_segments.py).
RETURNED_PAYER_PART = (
    "{code} {name} {phone} got {amount}; {returned} was over their balance limit and is back "
    "with you. Balance {balance}."
)
RETURNED_PAYER_ALL = (
    "{code} {name} {phone} cannot receive {sent}: over their balance limit. It is back with "
    "you. Balance {balance}."
)
RETURNED_PAYEE_PART = (
    "{code} Confirmed. You received {amount} from {name}. {returned} more was over your limit "
    "and went back. Balance {balance}."
)
RETURNED_PAYEE_ALL = (
    "{code} {name} {phone} sent you {sent}, but it is over your balance limit of {limit}, so "
    "it went back to them."
)
# To the customer at the counter when the worker refuses a deposit over their balance limit.
DEPOSIT_REFUSED = (
    "{code} Failed: {name} {phone} could not deposit {amount}: over your balance limit of "
    "{limit}. Ask for your cash back."
)


def _fields(request, other, refusal) -> dict:
    fields = {
        **facts(request),
        **counterparty(other),
        "limit": money(refusal.limit),
        "excess": money(refusal.excess),
    }
    if request.kind in (RequestKind.AIRTIME.value, RequestKind.SEND_UNREGISTERED.value):
        fields["phone"] = request.reference or ""  # the number topped up or invited
    return fields


def held(request, payer, payee, refusal) -> str:
    """To the payer of a request held for review."""
    return tell(payer, HELD_BY_KIND.get(request.kind, HELD), **_fields(request, payee, refusal))


def held_agent(request, agent, customer) -> str:
    """To the agent at the counter whose customer's withdrawal is held for review."""
    return tell(agent, HELD_AGENT, **facts(request), **counterparty(customer))


def stopped_agent(request, agent, customer) -> str:
    """To the agent at the counter whose customer's withdrawal review refused."""
    return tell(agent, STOPPED_AGENT, **facts(request), **counterparty(customer))


# To the customer at the counter whose deposit the ledger refused (the agent's float was short:
# two of his sessions at the PIN at once); the agent is told by his failure receipt.
DEPOSIT_NOT_MADE = "{code} Failed: {name} {phone} could not deposit {amount}. Ask for your cash back."


def deposit_not_made(request, customer, agent) -> str:
    """To the customer at the counter whose deposit the ledger refused."""
    return tell(customer, DEPOSIT_NOT_MADE, **facts(request), **counterparty(agent))


def not_made_agent(request, agent, customer) -> str:
    """To the agent at the counter whose customer's withdrawal the worker refused."""
    return tell(agent, NOT_MADE_AGENT, **facts(request), **counterparty(customer))


def deposit_refused(request, customer, agent, refusal) -> str:
    """To the customer at the counter whose deposit is over their balance limit."""
    return tell(
        customer, DEPOSIT_REFUSED, **facts(request), **counterparty(agent), limit=money(refusal.limit)
    )


def refused(request, payer, payee, refusal, balance: int) -> str:
    """To the payer of a request a limit refused: the kind's failure, with the limit's reason."""
    return failed(request, payer, payee, refusal.result, balance, **_fields(request, payee, refusal))


def returned(request, reader, other, refusal, held: int, balance: int, *, payer: bool) -> str:
    """To each side (``payer`` or not) of a hold posted in part (or voided) because of the
    payee's balance limit: ``request.amount`` reached the payee, the rest of ``held`` went back."""
    if payer:
        english = RETURNED_PAYER_PART if request.amount > 0 else RETURNED_PAYER_ALL
    else:
        english = RETURNED_PAYEE_PART if request.amount > 0 else RETURNED_PAYEE_ALL
    return tell(
        reader,
        english,
        **facts(request),
        sent=money(held),
        returned=money(held - request.amount),
        limit=money(refusal.limit),
        **counterparty(other),
        balance=money(balance),
    )
