"""Escrow-held payments: a hold is a request whose main leg is a PENDING transfer; a later
resolution request names it (``pending_request_id``) and posts or voids it.

- send_unregistered: sender -> suspense. Posted when the number registers (suspense_post,
  which then pays suspense -> the new customer); voided when it falls due (suspense_void).
- protected_purchase: buyer -> merchant. Posted when the buyer confirms delivery or when it
  falls due (protected_post); voided when the operator decides a dispute for the buyer
  (protected_void).

A hold's ``hold_state`` (``HoldState``) says how far it is resolved: ``pending`` until a post
or void request is recorded for it, then ``posted`` or ``voided``; ``disputed`` and ``sending``
are pending holds that an operator or the airtime job has claimed.

Which kind posts or voids which hold, and what each hold becomes when it falls due, is the
table in ``payments/kinds.py``.

Exactly once: a hold's ``hold_state`` moves out of ``pending`` (or ``disputed``, ``sending``) only by a
compare-and-set UPDATE in the transaction that records the one resolution request, whose id is
derived from the hold's (``<hold>.r``). Two expiry jobs, or the buyer and the expiry job, race
on that UPDATE: the database lets one win and the other sees no row. Behind it, the ledger's
unique ``pending_id`` index would refuse a second resolution anyway.

A resolution the ledger (or a limit) refused leaves the money held: ``reopen`` puts the hold
back to ``pending`` (compare-and-set, only while no other resolution of it is live), and the
next ``resolve`` records attempt 2, ``<hold>.r2``, then ``.r3``, ... The attempt number is read
from the resolutions already recorded, after the claim (whose UPDATE holds the hold's row until
commit), so a re-run finds the same id (``record_request`` returns it) and two attempts can
never both be live: attempt n+1 exists only once attempt n is ``rejected``.

No ledger timeout: the ledger may only void an expired hold, but a protected purchase must be
*posted* when it falls due; so every hold here falls due by ``hold_seconds`` after its PENDING
transfer was created (database clock), and ``resolve_due`` resolves it. Nothing here commits.
"""

from sqlalchemy import BigInteger, cast, exists, select, update
from sqlalchemy.orm import aliased

from ..database import among, db_clock_us
from ..ledger import AccountKind, Transfer, house_account
from .execute import execute_requests
from .kinds import Phase, on_due, spec
from .models import HoldState, RequestKind, RequestStatus, TransferRequest
from .submit import record_request


def resolution_id(hold_id: str, attempt: int = 1) -> str:
    """The id of the request that resolves ``hold_id``: ``<hold>.r`` (the first attempt, what
    every hold's resolution has always been called), ``<hold>.r2``, ... after refusals."""
    return f"{hold_id}.r" if attempt == 1 else f"{hold_id}.r{attempt}"


def attempt_of(hold_id: str, request_id: str) -> int:
    """Which attempt ``request_id`` (a resolution of ``hold_id``) is: ``.r`` 1, ``.r2`` 2, ..."""
    tail = request_id[len(hold_id) + 2 :]
    return int(tail) if tail.isdigit() else 1


def _next_attempt(session, hold_id: str) -> int:
    """The attempt to record now (call after the claim): the live one if there is one (a re-run
    finds its own id), else one past the last refused. Read from the database, not the session."""
    found = session.execute(
        select(TransferRequest.id, TransferRequest.status).where(
            TransferRequest.pending_request_id == hold_id
        )
    ).all()
    live = [attempt_of(hold_id, rid) for rid, status in found if status != RequestStatus.REJECTED.value]
    if live:
        return max(live)
    return max((attempt_of(hold_id, rid) for rid, _ in found), default=0) + 1


def resolution(session, hold: TransferRequest) -> TransferRequest | None:
    """The request that resolves (or resolved) ``hold``: its latest attempt, None before any."""
    return resolutions(session, [hold.id]).get(hold.id)


def resolutions(session, hold_ids) -> dict[str, TransferRequest]:
    """``resolution`` of many holds in one query: {hold id: its latest attempt}, holds with no
    attempt left out (a hold has a few attempts at most: all are read, the latest kept)."""
    ids = list(hold_ids)
    if not ids:
        return {}
    latest: dict[str, TransferRequest] = {}
    for request in session.execute(
        select(TransferRequest)
        .where(among(session, TransferRequest.pending_request_id, ids))
        .order_by(TransferRequest.created_at.desc(), TransferRequest.id.desc())
    ).scalars():
        latest.setdefault(request.pending_request_id, request)
    return latest


def reopen(session, refused: TransferRequest) -> bool:
    """``refused``, a hold's resolution, was refused (the ledger or a limit): the money is still
    held, so the hold is ``pending`` again and the next ``resolve`` records the next attempt.
    True for the one caller that moved it; False when it was not refused, or the hold has
    moved on (another resolution of it is queued or posted)."""
    if refused.status != RequestStatus.REJECTED.value or refused.pending_request_id is None:
        return False
    claimed = HoldState.POSTED if spec(refused.kind).phase == Phase.POST else HoldState.VOIDED
    live = aliased(TransferRequest)
    result = session.execute(
        update(TransferRequest)
        .where(
            TransferRequest.id == refused.pending_request_id,
            TransferRequest.hold_state == claimed.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
            ~exists().where(
                live.pending_request_id == refused.pending_request_id,
                live.status != RequestStatus.REJECTED.value,
            ),
        )
        .values(hold_state=HoldState.PENDING.value)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _claim(session, hold_id: str, from_state: HoldState, to_state: HoldState) -> bool:
    """Compare-and-set the hold's state; True for the one caller that moved it."""
    result = session.execute(
        update(TransferRequest)
        .where(
            TransferRequest.id == hold_id,
            TransferRequest.hold_state == from_state.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
        )
        .values(hold_state=to_state.value)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def resolve(
    session,
    hold: TransferRequest,
    kind: RequestKind,
    *,
    from_state: HoldState = HoldState.PENDING,
    recipient_account_id: int | None = None,
    amount: int | None = None,
    payee_fee: int | None = None,
) -> TransferRequest | None:
    """Claim ``hold`` and record the request that resolves it as ``kind``; None when someone
    else resolved it first (or it is not accepted yet). The caller executes it, or its commit announces it.

    A post takes the whole hold unless ``amount`` says how much of it (the ledger releases the
    rest: an allowance's settlement), with the merchant's fee quoted with the hold unless
    ``payee_fee`` is given."""
    row = spec(kind)
    if row.resolves != hold.kind:
        raise ValueError(f"{kind} does not resolve a {hold.kind} hold")
    posting = row.phase == Phase.POST
    if not _claim(session, hold.id, from_state, HoldState.POSTED if posting else HoldState.VOIDED):
        return None
    # Who pays whom, as receipts read it: the payer is the debit account, the payee the credit.
    # A post keeps the hold's direction (or pays on to ``recipient_account_id``); a void turns
    # it round, the money going back to the hold's payer.
    if posting:
        payer = hold.debit_account_id
        payee = recipient_account_id if row.pays_on else hold.credit_account_id
    else:
        payer, payee = hold.credit_account_id, hold.debit_account_id
    return record_request(
        session,
        request_id=resolution_id(hold.id, _next_attempt(session, hold.id)),
        kind=kind.value,
        debit_account_id=payer,
        credit_account_id=payee,
        amount=hold.amount if amount is None or not posting else amount,
        reference=hold.reference,
        pending_request_id=hold.id,
        # The merchant's fee quoted when the buyer confirmed, charged when it is paid to them.
        payee_fee=(hold.payee_fee if payee_fee is None else payee_fee) if row.payee_fee_on_post else 0,
    )


def pending_holds(session, kind: RequestKind, **where) -> list[TransferRequest]:
    """Accepted holds of ``kind`` still pending, oldest first, filtered by column=value."""
    query = select(TransferRequest).where(
        TransferRequest.kind == kind.value,
        TransferRequest.hold_state == HoldState.PENDING.value,
        TransferRequest.status == RequestStatus.ACCEPTED.value,
    )
    for name, value in where.items():
        query = query.where(getattr(TransferRequest, name) == value)
    return list(session.execute(query.order_by(TransferRequest.created_at)).scalars())


def disputed(session) -> list[TransferRequest]:
    """Protected purchases in dispute, waiting for the operator, oldest first."""
    return list(
        session.execute(
            select(TransferRequest)
            .where(
                TransferRequest.kind == RequestKind.PROTECTED_PURCHASE.value,
                TransferRequest.hold_state == HoldState.DISPUTED.value,
            )
            .order_by(TransferRequest.created_at)
        ).scalars()
    )


def due_holds(session, now: int, limit: int) -> list[TransferRequest]:
    """Pending holds whose PENDING transfer is older than their ``hold_seconds`` at ``now`` (µs)."""
    return list(
        session.execute(
            select(TransferRequest)
            .join(Transfer, Transfer.id == TransferRequest.id)
            .where(
                TransferRequest.hold_state == HoldState.PENDING.value,
                TransferRequest.status == RequestStatus.ACCEPTED.value,
                Transfer.created_at + cast(TransferRequest.hold_seconds, BigInteger) * 1_000_000 <= now,
            )
            .order_by(Transfer.created_at)
            .limit(limit)
        ).scalars()
    )


def resolve_due(session, now: int | None = None, limit: int = 500) -> list[TransferRequest]:
    """Resolve every hold that has fallen due (void unregistered sends, post protected
    purchases) and execute the resolutions now, in the caller's transaction, receipts and
    statuses with them. ``now`` (µs, database clock) lets tests move the clock."""
    now = db_clock_us(session) if now is None else now
    done = []
    for hold in due_holds(session, now, limit):
        request = resolve(session, hold, on_due(hold.kind))
        if request is not None:
            done.append(request)
    if done:
        execute_requests(session, done)
    return done


def post_to_new_customer(session, user) -> list[TransferRequest]:
    """``user`` just registered: record the post of every send held for their number."""
    found = []
    for hold in pending_holds(session, RequestKind.SEND_UNREGISTERED, reference=user.phone):
        request = resolve(session, hold, RequestKind.SUSPENSE_POST, recipient_account_id=user.account_id)
        if request is not None:
            found.append(request)
    return found


def post_to_registered(session, limit: int = 500) -> list[TransferRequest]:
    """Post, and execute now in the caller's transaction, every send held in suspense for a
    number that is a customer's by now. Registration posts the holds it finds
    (``post_to_new_customer``), but only accepted ones: a send still queued when its number
    registered (a backlog, a review hold), or a customer made outside the registration menus
    (``flask accounts create``), would leave the money in suspense for a registered customer
    until it fell due and went back to the sender. The worker calls this after a batch that
    held such a send, the maintenance job every run (compare-and-set: safe side by side, and
    beside a registration posting the same hold)."""
    from ..users import Role, User

    rows = session.execute(
        select(TransferRequest, User.account_id)
        .join(User, User.phone == TransferRequest.reference)
        .where(
            TransferRequest.kind == RequestKind.SEND_UNREGISTERED.value,
            TransferRequest.hold_state == HoldState.PENDING.value,
            TransferRequest.status == RequestStatus.ACCEPTED.value,
            User.role == Role.CUSTOMER.value,
        )
        .order_by(TransferRequest.created_at)
        .limit(limit)
    ).all()
    done = []
    for hold, account_id in rows:
        request = resolve(session, hold, RequestKind.SUSPENSE_POST, recipient_account_id=account_id)
        if request is not None:
            done.append(request)
    if done:
        execute_requests(session, done)
    return done


def suspense_account_id(session) -> int:
    return house_account(session, AccountKind.SUSPENSE).id


class DisputeError(ValueError):
    pass


def open_dispute(session, hold: TransferRequest) -> bool:
    """The buyer disputes a protected purchase: it waits for the operator, and both sides are
    told (in this transaction). False if gone."""
    if not _claim(session, hold.id, HoldState.PENDING, HoldState.DISPUTED):
        return False
    from ..messages import receipts as texts
    from ..sms.outbox import add_sms
    from ..users import find_by_account

    buyer, merchant = (
        find_by_account(session, hold.debit_account_id),
        find_by_account(session, hold.credit_account_id),
    )
    for person, other in ((buyer, merchant), (merchant, buyer)):
        if person is not None:
            add_sms(
                session,
                phone=person.phone,
                body=texts.dispute_opened(hold, person, other),
                transfer_request_id=hold.id,
            )
    return True


def decide_dispute(session, code: str, *, for_buyer: bool) -> TransferRequest:
    """The operator's decision, executed at once (the operator waits for the answer)."""
    hold = session.execute(
        select(TransferRequest).where(
            TransferRequest.code == code, TransferRequest.kind == RequestKind.PROTECTED_PURCHASE.value
        )
    ).scalar_one_or_none()
    if hold is None:
        raise DisputeError(f"no protected purchase with code {code}")
    kind = RequestKind.PROTECTED_VOID if for_buyer else RequestKind.PROTECTED_POST
    request = resolve(session, hold, kind, from_state=HoldState.DISPUTED)
    if request is None:
        raise DisputeError(f"{code} is not in dispute (it is {hold.hold_state})")
    execute_requests(session, [request])
    if request.status != RequestStatus.ACCEPTED.value:
        raise DisputeError(f"the ledger refused the decision: {request.result}")
    if not for_buyer:
        _tell_buyer_the_merchant_won(session, hold)  # a void's receipt tells them otherwise
    return request


def _tell_buyer_the_merchant_won(session, hold: TransferRequest) -> None:
    from ..messages import receipts as texts
    from ..sms.outbox import add_sms
    from ..users import find_by_account

    buyer, merchant = (
        find_by_account(session, hold.debit_account_id),
        find_by_account(session, hold.credit_account_id),
    )
    if buyer is None:
        return
    add_sms(
        session,
        phone=buyer.phone,
        body=texts.dispute_for_merchant(hold, buyer, merchant),
        transfer_request_id=hold.id,
    )
