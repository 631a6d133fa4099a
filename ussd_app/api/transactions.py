"""``GET /api/v1/transactions/{code}`` and ``GET /api/v1/transactions``: the key owner's wallet.

A key sees only its owner's transfers: a code of anyone else's is 404, exactly like a code that
does not exist, so codes cannot be probed. The statement lists the wallet's posted transfers
oldest first (so a system syncing its books reads forward), keyset-paginated on (posted at,
id): a page never skips or repeats a row however many are posted meanwhile.
"""

import base64
import binascii
import re
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import and_, or_, select

from ..extensions import db
from ..payments import kinds
from ..payments.models import RequestStatus, TransferRequest
from ..phones import masked
from ..users import User, holders
from . import bp
from .endpoint import operation
from .errors import ApiError
from .keys import Scope
from .schemas import CODE_PATTERN, Counterparty, ErrorBody, Transaction, TransactionPage, TransactionQuery

# A transfer request's status as the API says it (the ledger's words, one place to change).
API_STATUS = {
    RequestStatus.QUEUED.value: "queued",
    RequestStatus.ACCEPTED.value: "posted",
    RequestStatus.REJECTED.value: "rejected",
    RequestStatus.REVIEW.value: "review",
}


def status_of(request: TransferRequest) -> str:
    """``queued``, ``posted``, ``pending`` (a hold the ledger accepted: the money is held, not
    moved yet; its post or void is a transfer of its own), ``rejected`` or ``review``."""
    status = API_STATUS.get(request.status, request.status)
    return "pending" if status == "posted" and request.kind in kinds.HOLD_KINDS else status


def result_of(request: TransferRequest) -> str | None:
    """Why it was refused or is held for review (the ledger's or the limits' word), else None."""
    return request.result if status_of(request) in ("rejected", "review") else None


def posted_at(request: TransferRequest):
    return request.executed_at if status_of(request) == "posted" else None


def counterparty(user: User | None, accepted: bool = True) -> Counterparty | None:
    """The other side: its masked number, and its registered name only once the ledger accepted
    the transfer. A refused one names no one, so a key cannot learn who holds a number by
    paying it nothing."""
    if user is None:
        return None
    return Counterparty(name=user.name if accepted else None, phone=masked(user.phone))


def transaction(request: TransferRequest, account_id: int, other: User | None) -> Transaction:
    """``request`` as its ``account_id`` side sees it."""
    out = request.debit_account_id == account_id
    return Transaction(
        transaction=request.code,
        type=request.kind,
        direction="out" if out else "in",
        amount=request.amount,
        fee=request.fee if out else (request.payee_fee or 0),
        currency=current_app.config["CURRENCY"],
        status=status_of(request),
        result=result_of(request),
        reference=request.reference,
        # Named once the ledger accepted it, and a payee only when the payer was granted its
        # look-up (a payout beyond the owner's allowance: api/payouts.py).
        counterparty=counterparty(
            other, accepted=status_of(request) in ("posted", "pending") and (not out or request.payee_named)
        ),
        created=request.created_at,
        posted_at=posted_at(request),
    )


def _owned(account_id: int):
    return or_(
        TransferRequest.debit_account_id == account_id, TransferRequest.credit_account_id == account_id
    )


def _other(request: TransferRequest, account_id: int) -> int:
    return request.credit_account_id if request.debit_account_id == account_id else request.debit_account_id


def find(account_id: int, code: str) -> TransferRequest | None:
    if not re.fullmatch(CODE_PATTERN, code):
        return None
    return db.session.execute(
        select(TransferRequest).where(TransferRequest.code == code, _owned(account_id))
    ).scalar_one_or_none()


@bp.get("/transactions/<code>")
@operation(
    scope=Scope.READ,
    ok={"HTTP_200": Transaction, "HTTP_404": ErrorBody},
    tags=("transactions",),
    operation_id="getTransaction",
)
def get_transaction(caller, _data, code: str):
    """One transfer by its code

    Any transfer into or out of the key owner's wallet: a payment received, a payout, a refund.
    Another wallet's code answers 404, as a code that does not exist does."""
    request = find(caller.account_id, code)
    if request is None:
        raise ApiError("not_found")
    other = holders(db.session, [_other(request, caller.account_id)])
    return transaction(request, caller.account_id, other.get(_other(request, caller.account_id))), 200


def _naive_utc(moment: datetime | None) -> datetime | None:
    """``moment`` as naive UTC (as stored). A moment whose UTC falls off the calendar
    (``0001-01-01T00:00:00+03:00``, ``9999-12-31T23:59:59-03:00``: a "from the start" or "to
    the end" bound) is the calendar's first or last moment, which bounds the same rows; it was
    an OverflowError, a 500."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if moment.year == datetime.min.year else datetime.max


def encode_cursor(request: TransferRequest) -> str:
    raw = f"{request.executed_at.isoformat()}|{request.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, request_id = raw.partition("|")
        if not request_id:
            raise ValueError(cursor)
        return datetime.fromisoformat(moment), request_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError("invalid_request", "cursor: not a cursor this API gave") from None


@bp.get("/transactions")
@operation(
    scope=Scope.READ,
    query=TransactionQuery,
    ok={"HTTP_200": TransactionPage},
    tags=("transactions",),
    operation_id="listTransactions",
)
def list_transactions(caller, query: TransactionQuery):
    """The wallet's statement

    Transfers into and out of the key owner's wallet that the ledger accepted (``posted``, or
    ``pending`` for money held for the owner that is not theirs yet), oldest first. Follow
    ``next_cursor`` (as ``cursor=``) while ``has_more``; ``since`` and ``until`` (ISO 8601) bound
    the posting time."""
    account_id = caller.account_id
    since, until = _naive_utc(query.since), _naive_utc(query.until)
    statement = select(TransferRequest).where(
        _owned(account_id), TransferRequest.status == RequestStatus.ACCEPTED.value
    )
    if since is not None:
        statement = statement.where(TransferRequest.executed_at >= since)
    if until is not None:
        statement = statement.where(TransferRequest.executed_at < until)
    if query.cursor:
        after, after_id = decode_cursor(query.cursor)
        statement = statement.where(
            or_(
                TransferRequest.executed_at > after,
                and_(TransferRequest.executed_at == after, TransferRequest.id > after_id),
            )
        )
    rows = list(
        db.session.execute(
            statement.order_by(TransferRequest.executed_at, TransferRequest.id).limit(query.limit + 1)
        ).scalars()
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    people = holders(db.session, {_other(r, account_id) for r in rows})
    return TransactionPage(
        data=[transaction(r, account_id, people.get(_other(r, account_id))) for r in rows],
        has_more=more,
        next_cursor=encode_cursor(rows[-1]) if more else None,
    ), 200
