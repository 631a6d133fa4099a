"""Issuing e-money: every shilling of e-float is a shilling deposited in the trust account.

A bank deposit issues e-float once. Its reference is compared by its letters and digits only
(``reference_key``) under a unique constraint, and the deposit row is written before the
ledger posting: a second issue of the same deposit, however close in time, waits on that row,
fails, and is answered with the first issue (``DuplicateDeposit``) when
``issue_float_and_commit`` retries it.

An issue without a reference (``float issue --phone P --amount A``, a stable, scripted
interface) cannot be recognised by its deposit, so a repeat of the command is: an issue without
a reference to the same agent for the same amount within ``UNREFERENCED_WINDOW`` of another is
refused (``RepeatedIssue``), decided under the locks on the trust and agent rows that every float
issue takes to post, so concurrent runs are told apart on PostgreSQL too.
"""

import logging
import re
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from .. import country, limits, phones
from ..clock import utcnow
from ..ledger import AccountKind, house_account
from ..ledger.check import Finding, check
from ..users import Role, User
from .execute import execute_requests, is_conflict
from .models import RequestKind, RequestStatus, TransferRequest, TrustDeposit
from .submit import mint_request_id, record_request

log = logging.getLogger(__name__)

REFERENCE_LENGTH = 64
RETRIES = 5
UNREFERENCED_WINDOW = timedelta(hours=24)  # a repeat of an issue without a reference, refused


class FloatError(ValueError):
    pass


class DuplicateDeposit(FloatError):
    """The deposit's reference has issued e-float before."""

    def __init__(self, reference: str, code: str, amount: int, when: datetime | None):
        self.reference, self.code, self.amount, self.when = reference, code, amount, when
        at = f" on {when:%Y-%m-%d %H:%M} UTC" if when else ""
        super().__init__(f"deposit {reference} has already been issued: {code}{at}")


class RepeatedIssue(FloatError):
    """An issue without a reference repeats one made to the same agent for the same amount
    within ``UNREFERENCED_WINDOW``: most likely the same command run again."""

    def __init__(self, phone: str, code: str, when: datetime):
        self.code, self.when = code, when
        super().__init__(
            f"the same amount was issued to {phone} without a reference ({code}) at "
            f"{when:%Y-%m-%d %H:%M} UTC: give the bank reference with --reference to issue another"
        )


def reference_key(raw: str | None) -> str | None:
    """A bank reference in the one form references are compared in: its letters and digits,
    nothing else, or None when it has none.

    Banks print references in capitals, with dashes, spaces or slashes for reading, and
    operators copy them by hand or paste them from PDFs and e-mails that turn ``-`` into
    ``‐``, ``–`` or ``－`` and letters into their fullwidth forms. None of that says which
    deposit is meant, so: Unicode NFKC (fullwidth and other compatibility forms become plain
    ones), every decimal digit of any script as its ASCII digit, letters upper-cased (after
    case folding), and every other character (punctuation, dashes of any kind, underscores,
    spaces, symbols, marks) dropped. ``"bank-ref 001"``, ``"BANK‐REF‐001"``, ``"ＢＡＮＫ_REF_００１"``
    are all ``"BANKREF001"``. (Two deposits whose references differ only in punctuation would be
    refused as one: an operator sees that refusal; a deposit issued twice nobody sees.)
    Never refuses: the migration (a copy) and ``ledger check`` use it on stored references."""
    if raw is None:
        return None
    kept = []
    for ch in unicodedata.normalize("NFKC", raw):
        if unicodedata.category(ch) == "Nd":
            kept.append(str(unicodedata.digit(ch)))
        elif ch.isalpha():
            kept.append(ch.casefold().upper())
    return "".join(kept) or None


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
    """``reference_key`` of a reference an operator types, or None when blank; refuses one
    with no letter or digit, one whose compared form is too long for the column, and letters
    other than A-Z after NFKC (a Cyrillic ``А`` looks like a Latin ``A`` but would make another
    key: bank references are ASCII)."""
    reference = tidy_reference(raw)
    if reference is None:
        return None
    key = reference_key(reference)
    if key is None:
        raise FloatError(f"{reference!r} is not a bank reference: it has no letter or digit")
    if not (key.isascii() and key.isalnum()):
        raise FloatError(
            "a bank reference has only the letters A-Z and digits (spaces and punctuation are ignored)"
        )
    if len(key) > REFERENCE_LENGTH:
        raise FloatError(f"a bank reference has at most {REFERENCE_LENGTH} letters and digits")
    return key


def earlier_issue(session, key: str) -> DuplicateDeposit | None:
    """The refusal to give for a reference (in its compared form) that has issued e-float
    before, naming that issue; None if it has not."""
    deposit = TrustDeposit
    row = session.execute(
        select(deposit.bank_reference, TransferRequest.code, deposit.amount, deposit.created_at)
        .join(TransferRequest, TransferRequest.id == TrustDeposit.transfer_request_id)
        .where(TrustDeposit.reference_key == key)
    ).first()
    return None if row is None else DuplicateDeposit(*row)


def earlier_unreferenced_issue(session, agent: User, amount: int, now: datetime) -> RepeatedIssue | None:
    """The refusal to give for an issue without a reference of ``amount`` to ``agent`` when
    another was made within ``UNREFERENCED_WINDOW`` before ``now``; None if none was."""
    row = session.execute(
        select(TransferRequest.code, TransferRequest.created_at)
        .join(TrustDeposit, TrustDeposit.transfer_request_id == TransferRequest.id)
        .where(
            TransferRequest.kind == RequestKind.FLOAT_ISSUE.value,
            TransferRequest.credit_account_id == agent.account_id,
            TrustDeposit.amount == amount,
            TrustDeposit.bank_reference.is_(None),
            TransferRequest.created_at > now - UNREFERENCED_WINDOW,
        )
        .order_by(TransferRequest.created_at.desc())
        .limit(1)
    ).first()
    return None if row is None else RepeatedIssue(agent.phone, *row)


def issue_float(session, agent: User, amount: int, bank_reference: str | None = None) -> TransferRequest:
    """Record a trust deposit of ``amount`` minor units and credit it to the agent's e-float,
    in the caller's transaction (posted at once: the operator is waiting for the answer).

    Raises DuplicateDeposit for a reference already issued; a concurrent issue of the same
    reference makes the database refuse this one at the flush (IntegrityError: roll back and
    retry, as ``issue_float_and_commit`` does). Without a reference, raises RepeatedIssue for a
    repeat (see the module docstring)."""
    if agent.role != Role.AGENT.value:
        raise FloatError(f"{agent.phone} is a {agent.role}, not an agent")
    if amount <= 0:
        raise FloatError("the amount must be positive")
    reference = tidy_reference(bank_reference)  # kept as typed
    key = normalize_reference(reference)  # compared, and unique
    if key is not None and (duplicate := earlier_issue(session, key)) is not None:
        raise duplicate
    trust = house_account(session, AccountKind.TRUST)
    if key is None:
        # The ledger's locks, in its order, taken now instead of at the posting: a concurrent
        # issue without a reference to this agent waits here until this one commits, and then
        # reads it (READ COMMITTED; SQLite's BEGIN IMMEDIATE already serialises writers).
        limits.lock_accounts(session, {trust.id, agent.account_id})
        now = utcnow()
        if (repeat := earlier_unreferenced_issue(session, agent, amount, now)) is not None:
            raise repeat
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
        TrustDeposit(
            transfer_request_id=request.id, amount=amount, bank_reference=reference, reference_key=key
        )
    )
    session.flush()
    execute_requests(session, [request])
    if request.status != RequestStatus.ACCEPTED.value:
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
    """{the references as typed, " = " between spellings: number of deposits} for every
    reference (compared by ``reference_key``, computed here, not read from the stored key) with
    more than one deposit: deposits recorded before the unique key, or before the key dropped
    punctuation (``flask ledger check``)."""
    spellings: dict[str, list[str]] = {}
    references = (
        select(TrustDeposit.bank_reference)
        .where(TrustDeposit.bank_reference.is_not(None))
        .order_by(TrustDeposit.id)
    )
    for raw in session.execute(references).scalars():
        key = reference_key(raw)
        if key:
            spellings.setdefault(key, []).append(raw)
    return {
        " = ".join(dict.fromkeys(typed)): len(typed)
        for _, typed in sorted(spellings.items())
        if len(typed) > 1
    }


def check_ledger(session) -> list[Finding]:
    """Every ledger invariant, with the trust deposits on record (``flask ledger check``)."""
    from ..reports import trust_deposits_total

    total = trust_deposits_total(session)
    twice = references_issued_twice(session)
    from ..messages import money  # what the reconciliation's minor units are, in the currency

    findings = check(session, trust_deposits_total=total, references_issued_twice=twice, shown=money)
    return [*findings, holders_of_this_country(session)]


def newest_holder_abroad(session) -> str | None:
    """Why this process's country (``TUMA_COUNTRY``) is not its database's, judged by the newest
    holder's number (one row by primary key: cheap at every start); None when it fits. A worker
    whose environment lacks the web's TUMA_COUNTRY would otherwise post, charge and tell in
    another currency. Which country a number is of: ``phones.region_of``."""
    here = country.profile()
    newest = session.execute(select(User.phone).order_by(User.id.desc()).limit(1)).scalar()
    if newest is None or phones.region_of(newest) == here.code:
        return None
    return (
        f"TUMA_COUNTRY={here.code} but the newest holder's number is {phones.masked(newest)}, not of "
        f"{here.name} ({phones.calling_prefix(here.code)}): set the TUMA_COUNTRY the service runs with"
    )


def holders_of_this_country(session) -> Finding:
    """Every holder's number is of the service's country (``TUMA_COUNTRY``): only its mobiles can
    register, so a number of another country means the database was kept under another country,
    whose currency every balance, limit and tariff in it is counted in (KES read as GHS).
    ``phones.region_of`` says whose each number is; where the country's calling code is its own
    (``phones.prefix_tells``) only the numbers without it are read, as only they can be foreign."""
    here = country.profile()
    prefix = phones.calling_prefix(here.code)
    numbers = select(User.phone).order_by(User.id)
    if phones.prefix_tells(here.code):
        numbers = numbers.where(User.phone.not_like(prefix + "%"))
    others, sample = 0, []
    for phone in session.execute(numbers).scalars():
        if phones.region_of(phone) != here.code:
            others += 1
            if len(sample) < 3:
                sample.append(phone)
    holders = session.execute(select(func.count(User.id))).scalar_one()
    name = f"every holder's number is of {here.name} ({prefix})"
    if not others:
        return Finding(name, True, f"{holders} holders")
    shown = ", ".join(phones.masked(p) for p in sample)
    return Finding(
        name,
        False,
        f"{others} of {holders} are not ({shown}): this database was kept under another "
        "TUMA_COUNTRY, and its amounts are in that country's currency",
    )
