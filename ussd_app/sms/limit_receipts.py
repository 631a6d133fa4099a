"""The SMS for a request the limits stopped (``ussd_app/limits.py``): refused by a tier limit,
held for review, or a hold posted only in part (or voided) because of its payee's balance limit.

The limits decide (a ``Refusal``); this module says who is told, through the outbox, in the
caller's transaction; the text is ``messages/refusals.py``'s.
"""

from .. import limits
from ..messages import refusals as texts
from ..payments import kinds
from ..payments.models import RequestKind
from .receipts import write


def write_refusal(session, request, refusal: limits.Refusal, people) -> None:
    """The payer's SMS for a request refused by a limit or held for review. No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    row = kinds.spec(request.kind)
    if payer is None or row.payer_is_api or row.told_by_its_flow:  # the API, or its flow, says it
        return
    withdrawal = request.kind == RequestKind.WITHDRAWAL.value and payee is not None
    if refusal.hold:
        write(session, payer, texts.held(request, payer, payee, refusal), request)
        if withdrawal:  # the agent at the counter waits too
            write(session, payee, texts.held_agent(request, payee, payer), request)
        return
    if withdrawal and refusal.result == limits.Result.REVIEW_REFUSED:  # the agent was told to wait
        write(session, payee, texts.stopped_agent(request, payee, payer), request)
    elif withdrawal and refusal.result != limits.Result.PAYEE_LOCKED:  # a locked agent hears nothing
        write(session, payee, texts.not_made_agent(request, payee, payer), request)
    told = kinds.spec(request.kind).payee_told_of_balance_refusal
    if refusal.result == limits.Result.BALANCE and told and payee is not None:
        # The customer waits at the counter with cash handed over (a deposit): they must hear it too.
        write(session, payee, texts.deposit_refused(request, payee, payer, refusal), request)
    write(session, payer, texts.refused(request, payer, payee, refusal, people.balance(payer)), request)


def write_returned(session, request, refusal: limits.Refusal, held: int, people) -> None:
    """Both sides' SMS for a hold posted in part (or voided) because of the payee's balance
    limit: ``request.amount`` reached the payee, the rest of ``held`` went back. No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    if kinds.spec(request.kind).told_by_its_flow:  # its own module tells (kinds.py)
        return
    if payer is not None:
        body = texts.returned(request, payer, payee, refusal, held, people.balance(payer), payer=True)
        write(session, payer, body, request)
    if payee is not None:
        body = texts.returned(request, payee, payer, refusal, held, people.balance(payee), payer=False)
        write(session, payee, body, request)
