"""Issuing e-money: every shilling of e-float is a shilling deposited in the trust account.

A bank deposit issues e-float once. Its reference is compared in one form
(``normalize_reference``) under a unique constraint, and the deposit row is written before the
ledger posting: a second issue of the same deposit, however close in time, waits on that row,
fails, and is answered with the first issue (``DuplicateDeposit``) when
``issue_float_and_commit`` retries it.
"""

import logging
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..ledger import AccountKind, house_account
from ..ledger.check import Finding, check
from ..users import Role, User
from .execute import execute_requests, is_conflict
from .models import RequestKind, RequestStatus, TransferRequest, TrustDeposit
from .submit import mint_request_id, record_request

log = logging.getLogger(__name__)

REFERENCE_LENGTH = 64
RETRIES = 5


class FloatError(ValueError):
    pass


class DuplicateDeposit(FloatError):
    """The deposit's reference has issued e-float before."""

    def __init__(self, reference: str, code: str, amount: int, when: datetime | None):
        self.reference, self.code, self.amount, self.when = reference, code, amount, when
        at = f" on {when:%Y-%m-%d %H:%M} UTC" if when else ""
        super().__init__(f"deposit {reference} has already been issued: {code}{at}")


def tidy_reference(raw: str | None) -> str | None:
    """A bank reference as typed, with its spaces tidied (runs made one, none around), or None
    when blank. Refuses what no bank reference can be."""
    reference = re.sub(r"\s+", " ", raw or "").strip()
    if not reference:
        return None
    if len(reference) > REFERENCE_LENGTH or len(reference.upper()) > REFERENCE_LENGTH:
        raise FloatError(f"a bank reference has at most {REFERENCE_LENGTH} characters")
    if not reference.isprintable():
        raise FloatError("the bank reference has characters no bank reference has")
    return reference


def normalize_reference(raw: str | None) -> str | None:
    """A bank reference in the one form references are compared in, or None when blank.

    Banks print references in capitals, sometimes spaced out for reading, and operators copy
    them by hand: case and spaces say nothing about which deposit is meant, so both go
    (``" ft 12  34x"`` is ``"FT1234X"``). Dashes, slashes and digits stay: references that
    differ in them may be two deposits. (Two deposits whose references differ only in spaces
    would be refused as one: an operator can see that; a deposit issued twice nobody sees.)"""
    reference = tidy_reference(raw)
    return None if reference is None else reference.replace(" ", "").upper()


def earlier_issue(session, key: str) -> DuplicateDeposit | None:
    """The refusal to give for a reference (in its compared form) that has issued e-float
    before, naming that issue; None if it has not."""
    deposit = TrustDeposit
    row = session.execute(
        select(deposit.bank_reference, TransferRequest.code, deposit.amount, deposit.created_at)
        .join(TransferRequest, TransferRequest.id == TrustDeposit.request_id)
        .where(TrustDeposit.reference_key == key)
    ).first()
    return None if row is None else DuplicateDeposit(*row)


def issue_float(session, agent: User, amount: int, bank_reference: str | None = None) -> TransferRequest:
    """Record a trust deposit of ``amount`` minor units and credit it to the agent's e-float,
    in the caller's transaction (posted at once: the operator is waiting for the answer).

    Raises DuplicateDeposit for a reference already issued; a concurrent issue of the same
    reference makes the database refuse this one at the flush (IntegrityError: roll back and
    retry, as ``issue_float_and_commit`` does)."""
    if agent.role != Role.AGENT.value:
        raise FloatError(f"{agent.phone} is a {agent.role}, not an agent")
    if amount <= 0:
        raise FloatError("the amount must be positive")
    reference = tidy_reference(bank_reference)  # kept as typed
    key = normalize_reference(reference)  # compared, and unique
    if key is not None and (duplicate := earlier_issue(session, key)) is not None:
        raise duplicate
    trust = house_account(session, AccountKind.TRUST)
    request = record_request(
        session,
        request_id=mint_request_id(),
        kind=RequestKind.FLOAT_ISSUE.value,
        debit_account_id=trust.id,
        credit_account_id=agent.account_id,
        amount=amount,
        reference=reference,
    )
    # The deposit before the posting: a concurrent issue of this reference waits here on the
    # unique key until this transaction ends, and then fails before locking an account to post.
    session.add(
        TrustDeposit(request_id=request.id, amount=amount, bank_reference=reference, reference_key=key)
    )
    session.flush()
    execute_requests(session, [request])
    if request.status != RequestStatus.POSTED.value:
        raise FloatError(f"the ledger refused the issue: {request.result}")
    return request


def issue_float_and_commit(
    session, agent_id: int, amount: int, bank_reference: str | None = None, *, also=None
) -> TransferRequest:
    """``issue_float`` in its own committed transaction, with ``also(request)`` (an audit row)
    in it. A conflict with a concurrent transaction (the same reference issued at the same
    moment, a deadlock, a serialization failure) is rolled back and tried again: the retry
    reads the winner's deposit and raises DuplicateDeposit. Any FloatError rolls back."""
    for _ in range(RETRIES):
        try:
            agent = session.get(User, agent_id)
            request = issue_float(session, agent, amount, bank_reference)
            if also is not None:
                also(request)
            session.commit()
            return request
        except FloatError:
            session.rollback()
            raise
        except (IntegrityError, DBAPIError) as exc:
            session.rollback()
            if not isinstance(exc, IntegrityError) and not is_conflict(exc):
                raise
            log.warning("float issue met a concurrent one, trying again: %s", type(exc.orig).__name__)
    raise FloatError("the database is busy with other issues; nothing was issued, try again")


def references_issued_twice(session) -> dict[str, int]:
    """{reference: number of deposits} for every reference with more than one deposit (only
    possible for deposits recorded before the unique reference; ``flask ledger check``)."""
    counts: dict[str, int] = {}
    references = select(TrustDeposit.bank_reference).where(TrustDeposit.bank_reference.is_not(None))
    for raw in session.execute(references).scalars():
        key = re.sub(r"\s+", "", raw).upper()  # normalize_reference, never refusing
        if key:
            counts[key] = counts.get(key, 0) + 1
    return {reference: n for reference, n in sorted(counts.items()) if n > 1}


def check_ledger(session) -> list[Finding]:
    """Every ledger invariant, with the trust deposits on record (``flask ledger check``)."""
    from ..reports import trust_deposits_total

    total = trust_deposits_total(session)
    twice = references_issued_twice(session)
    return check(session, trust_deposits_total=total, references_issued_twice=twice)
