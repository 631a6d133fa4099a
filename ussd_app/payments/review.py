"""An operator's decision on a transfer held for review by a velocity rule (``limits.py``: more
than VELOCITY_MAX_COUNT sends, or more than VELOCITY_MAX_VALUE_MAJOR sent, in the last hour;
status ``review``, the rule in ``result``). Nothing has moved for it: no hold, no posting.

- ``clear``: queued again with result ``review_cleared``; the worker posts it as any queued
  request, skipping the velocity rules (limits, balances and a payee's lock still apply). A
  payer an operator has locked since cannot be cleared: unlock first, or refuse (and the
  worker stops a cleared one whose payer is locked after the clear: ``limits.check_batch``).
- ``refuse``: rejected (``review_refused``); the payer gets ONE SMS (a held withdrawal's agent
  is told too not to pay out), a payout's system hears ``transfer.failed``.

Each decision names its operator and reason (at most REASON_LIMIT characters) and writes ONE
``audit_log`` row (``review.clear`` / ``review.refuse``, target the transfer's code, with its
amount, kind and the rule that held it) in the caller's transaction, with its effect: the
caller commits (on ReviewError it rolls back). Exactly once under races: the effect starts
with a conditional UPDATE (``status = 'review'``), so of two operators deciding at once one
changes the row and the other changes nothing and is told it was decided. The same decisions
serve ``flask review clear|refuse`` (``cli.py``) and the back office's review page
(``admin/pages/review.py``)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from ..clock import utcnow
from .models import RequestStatus, TransferRequest

REASON_LIMIT = 200
CLEAR, REFUSE = "review.clear", "review.refuse"  # the audit rows' actions


class ReviewError(ValueError):
    """The decision cannot be made as asked; the message says why (for the operator)."""


@dataclass(frozen=True)
class Decided:
    code: str
    kind: str
    amount: int  # minor units
    rule: str  # what held it: velocity_count or velocity_value
    outcome: str  # "cleared" or "refused"


def held(session) -> list[TransferRequest]:
    """Every transfer held for review, oldest first."""
    return list(
        session.execute(
            select(TransferRequest)
            .where(TransferRequest.status == RequestStatus.REVIEW.value)
            .order_by(TransferRequest.created_at, TransferRequest.id)
        ).scalars()
    )


def _who_and_why(operator: str | None, reason: str | None) -> tuple[str, str]:
    operator, reason = " ".join((operator or "").split()), " ".join((reason or "").split())
    if not operator:
        raise ReviewError("say who decides (the operator's name)")
    if not reason:
        raise ReviewError("say why (the reason is kept in the audit log)")
    if len(reason) > REASON_LIMIT:
        raise ReviewError(f"the reason: at most {REASON_LIMIT} characters")
    return operator[:100], reason


def _decided_before(session, request: TransferRequest) -> str:
    """Why ``request`` cannot be decided now: who decided it, if an operator did."""
    from ..admin.models import AuditEntry

    entry = session.execute(
        select(AuditEntry)
        .where(AuditEntry.target == request.code, AuditEntry.action.in_((CLEAR, REFUSE)))
        .order_by(AuditEntry.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if entry is None:
        return f"{request.code} is {request.status}, not held for review"
    verb = "cleared" if entry.action == CLEAR else "refused"
    by = entry.details.get("by") or "an operator"
    return (
        f"{request.code} is not held for review: it was decided already, {verb} by {by} "
        f"at {entry.created_at:%Y-%m-%d %H:%M} UTC"
    )


def _held_request(session, code: str) -> TransferRequest:
    # Printable only: PostgreSQL refuses a NUL (a crafted URL), which would be a server error.
    # Exactly the code typed (a code is 10 characters): one with more after it is no transfer's,
    # not the transfer its first ten name.
    code = "".join(c for c in (code or "") if c.isprintable()).strip().upper()
    request = session.execute(
        select(TransferRequest).where(TransferRequest.code == code)
    ).scalar_one_or_none() if 0 < len(code) <= 10 else None  # fmt: skip
    if request is None:
        raise ReviewError(f"no transfer with code {code[:40] or '(none)'}")
    if request.status != RequestStatus.REVIEW.value:
        raise ReviewError(_decided_before(session, request))
    return request


def _payer_not_locked(session, request: TransferRequest) -> None:
    """A payer an operator locked (the back office's Lock: a stolen phone, a suspected fraud) is
    not paid out of by a clear: a transfer held before the lock would leave the locked wallet.
    Told here, at the decision (the worker's check of a cleared request's payer is the
    backstop for a lock after it). Unlock first, or refuse it. A lock by
    wrong PINs is no bar: the payer asked for this transfer with the right PIN."""
    from ..users import find_by_account, is_operator_locked

    payer = find_by_account(session, request.debit_account_id)
    if payer is not None and is_operator_locked(payer):
        raise ReviewError(
            f"{request.code}: the payer {payer.phone} is locked by an operator; "
            "unlock them first, or refuse it"
        )


def _claim(session, request: TransferRequest, **values) -> None:
    """The decision's first write: the row leaves ``review`` once, or ReviewError. A second
    operator's UPDATE waits for the first's row lock (PostgreSQL) or write lock (SQLite), then
    finds the row no longer in review and changes nothing."""
    done = session.execute(
        update(TransferRequest)
        .where(TransferRequest.id == request.id, TransferRequest.status == RequestStatus.REVIEW.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        raise ReviewError(f"{request.code} was decided by someone else meanwhile; nothing done")
    session.refresh(request)


def _audit(session, action, request, rule, *, operator, reason, operator_id, via) -> None:
    from ..admin.models import record

    record(
        session,
        operator_id,
        action,
        request.code,
        by=operator,
        reason=reason,
        via=via,
        kind=request.kind,
        amount=request.amount,
        rule=rule,
        payer_account=request.debit_account_id,
        payee_account=request.credit_account_id,
    )


def clear(
    session, code: str, *, operator: str, reason: str, operator_id: int | None = None, via: str = "cli"
) -> Decided:
    """Clear the held transfer ``code``: queued again for the worker, the velocity rules skipped.
    The workers are rung once the caller commits. No commit here."""
    from .. import limits
    from ..queues import Bell, ring_after_commit

    operator, reason = _who_and_why(operator, reason)
    request = _held_request(session, code)
    _payer_not_locked(session, request)
    rule = request.result or ""
    _claim(session, request, status=RequestStatus.QUEUED.value, result=limits.REVIEW_CLEARED)
    ring_after_commit(session, Bell.TRANSFERS, request.id)  # queued again: the workers hear it
    _audit(session, CLEAR, request, rule, operator=operator, reason=reason, operator_id=operator_id, via=via)
    return Decided(request.code, request.kind, request.amount, rule, "cleared")


def refuse(
    session,
    code: str,
    *,
    operator: str,
    reason: str,
    operator_id: int | None = None,
    via: str = "cli",
    now: datetime | None = None,
) -> Decided:
    """Refuse the held transfer ``code``: rejected, the payer told by SMS (the agent too for a
    withdrawal), a payout's system by its event. No commit here."""
    from .. import limits
    from ..events import emit
    from ..sms import limit_receipts, receipts

    operator, reason = _who_and_why(operator, reason)
    request = _held_request(session, code)
    rule = request.result or ""
    _claim(
        session,
        request,
        status=RequestStatus.REJECTED.value,
        result=limits.Result.REVIEW_REFUSED,
        executed_at=now or utcnow(),
    )
    people = receipts.People(session, [request])
    limit_receipts.write_refusal(session, request, limits.Refusal(limits.Result.REVIEW_REFUSED, 0, 0), people)
    emit.for_requests(session, [(request, emit.FAILED)], people)  # a payout's system hears of it
    _audit(session, REFUSE, request, rule, operator=operator, reason=reason, operator_id=operator_id, via=via)
    return Decided(request.code, request.kind, request.amount, rule, "refused")
