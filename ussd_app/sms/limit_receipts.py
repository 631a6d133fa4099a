"""The SMS for a request the limits stopped (``ussd_app/limits.py``): refused by a tier limit,
held for review, or a hold posted only in part (or voided) because of its payee's balance limit.

The limits decide (a ``Refusal``); this module tells the people concerned, in their language,
through the outbox, in the caller's transaction. The templates are ``limits``' (HELD and the rest,
RETURNED_*, DEPOSIT_REFUSED) and ``receipts``' (REASONS, the kinds' ``failed`` entries).
"""

from .. import limits
from ..payments import kinds
from ..payments.models import RequestKind
from . import receipts


def write_refusal(session, request, refusal: limits.Refusal, people) -> None:
    """The payer's SMS for a request refused by a limit or held for review. No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    if payer is None or kinds.spec(request.kind).payer_is_api:  # the API says it (kinds.py)
        return
    common = receipts._common(request)
    counterparty = receipts._counterparty(payee)
    fields = dict(
        **common, **counterparty, limit=receipts.money(refusal.limit), excess=receipts.money(refusal.excess)
    )
    if request.kind in (RequestKind.AIRTIME.value, RequestKind.SEND_UNREGISTERED.value):
        fields["phone"] = request.reference or ""  # the number topped up or invited
    withdrawal = request.kind == RequestKind.WITHDRAWAL.value and payee is not None
    if refusal.hold:
        receipts._write(session, payer, limits.HELD_BY_KIND.get(request.kind, limits.HELD), request, **fields)
        if withdrawal:  # the agent at the counter waits too
            receipts._write(
                session, payee, limits.HELD_AGENT, request, **common, **receipts._counterparty(payer)
            )
        return
    if withdrawal and refusal.result == limits.Result.REVIEW_REFUSED:  # the agent was told to wait
        receipts._write(
            session, payee, limits.STOPPED_AGENT, request, **common, **receipts._counterparty(payer)
        )
    told = kinds.spec(request.kind).payee_told_of_balance_refusal
    if refusal.result == limits.Result.BALANCE and told and payee is not None:
        # The customer waits at the counter with cash handed over (a deposit): they must hear it too.
        receipts._write(
            session,
            payee,
            limits.DEPOSIT_REFUSED,
            request,
            **common,
            **receipts._counterparty(payer),
            limit=fields["limit"],
        )
    english = receipts.REASONS.get(refusal.result, receipts.REASON_OTHER)
    reason = receipts.render(payer, english, **fields, result=refusal.result)
    receipts._write(
        session,
        payer,
        receipts.template(request.kind, "failed"),
        request,
        **fields,
        reason=reason,
        balance=receipts.money(people.balance(payer)),
    )


def write_returned(session, request, refusal: limits.Refusal, held: int, people) -> None:
    """Both sides' SMS for a hold posted in part (or voided) because of the payee's balance
    limit: ``request.amount`` reached the payee, the rest of ``held`` went back. No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    fields = dict(
        **receipts._common(request),
        sent=receipts.money(held),
        returned=receipts.money(held - request.amount),
        limit=receipts.money(refusal.limit),
    )
    part = request.amount > 0
    if payer is not None:
        english = limits.RETURNED_PAYER_PART if part else limits.RETURNED_PAYER_ALL
        counterparty = receipts._counterparty(payee)
        receipts._write(
            session,
            payer,
            english,
            request,
            **fields,
            **counterparty,
            balance=receipts.money(people.balance(payer)),
        )
    if payee is not None:
        english = limits.RETURNED_PAYEE_PART if part else limits.RETURNED_PAYEE_ALL
        counterparty = receipts._counterparty(payer)
        receipts._write(
            session,
            payee,
            english,
            request,
            **fields,
            **counterparty,
            balance=receipts.money(people.balance(payee)),
        )
