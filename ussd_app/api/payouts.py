"""``POST /api/v1/payouts`` and ``POST /api/v1/payouts/batch``: the key owner's wallet pays
customers (B2C).

Each payout is an ordinary transfer request of kind ``payout`` (``payments/kinds.py``): its fee
from the tariff in force (the owner pays it), the customer's balance limit, the ledger's rule
that the wallet never goes below zero, and the customer's receipt SMS. The API records it and
answers 202 (``queued``); the worker executes it (``payments/execute.py``); its outcome is read
with ``GET /transactions/{code}``.

Its id derives from (key, Idempotency-Key) (``idempotency.derived_id``), a batch row's from that
and its row number, so even a retry whose first answer was lost records nothing new, and a key
once used can never pay another body, even after its idempotency row is purged (24 h): that is
422 ``idempotency_key_reused`` (``already_recorded``).

The recipient's registered name is a name look-up of the paying merchant (or agent), as the
send menus' confirm screen is of its caller (``fraud.py``): the same rule, the same allowance
(``NAME_LOOKUP_LIMIT_BUSINESS``, keyed on the owner's normalised number, shared with the
owner's look-ups in the menus), taken once when the payout is accepted (``names_granted``: a
batch takes one look-up per distinct recipient, as many as are left, in row order) and
recorded with the request (``payee_named``). The worker's ``payout.posted``, ``GET
/transactions`` and the owner's mini statement name the recipient only when it was granted;
beyond the allowance the payout still goes ahead (money is not refused for this) and names
nobody (``name`` null, the masked number). Without it a payout of 1 minor unit (free in the
first band) named any number's holder, up to 10,000 a batch, counted nowhere. A replay takes
nothing more: the idempotency row answers before the view runs, and a request already
recorded under the derived id keeps its first answer.

A batch takes up to 10,000 rows as JSON (``{"payouts": [...]}``) or CSV (``text/csv``, a header
row ``phone,amount,reference``). Each row is checked on its own and answered on its own: the
valid rows are recorded (in one insert), the others say why not. The worker executes them in
its usual batches.
"""

import functools
from datetime import timedelta

from flask import current_app, request
from sqlalchemy import and_, or_, select

from .. import fraud
from ..clock import utcnow
from ..database import among, insert_rows
from ..extensions import db
from ..payments.models import RequestKind, RequestStatus, TransferRequest, transaction_code
from ..payments.submit import ConflictingRequest, record_request
from ..phones import InvalidPhone, country_name, normalize_mobile
from ..queues import Bell, ring_after_commit, undo_unless_committed
from ..tariffs import in_force
from ..users import Role, User
from . import bp
from .endpoint import csv_rows, json_body, operation, validated_batch
from .errors import CODES, ApiError
from .idempotency import derived_id
from .keys import Scope
from .schemas import (
    BatchRow,
    Error,
    ErrorBody,
    Payout,
    PayoutBatch,
    PayoutBatchCreate,
    PayoutCreate,
)
from .transactions import result_of, status_of

KIND = RequestKind.PAYOUT.value


def check_currency(currency: str | None) -> None:
    if currency is not None and currency != current_app.config["CURRENCY"]:
        raise ApiError("currency_not_supported", f"Amounts are in {current_app.config['CURRENCY']} only.")


def mobile(raw: str) -> str:
    try:
        return normalize_mobile(raw)
    except InvalidPhone:
        raise ApiError("invalid_phone", f"phone: not a mobile number of {country_name()}") from None


def lock_asked(payer: User) -> None:
    """Lock the asked customer's row until the request's commit, before an ask (a payment
    request, an allowance) counts the asks to that number today: asks sent side by side then
    count one after the other (counted with nothing between, eight at once all passed a cap of
    three, eight SMS). SQLite's transactions already run one at a time."""
    db.session.execute(select(User.id).where(User.id == payer.id).with_for_update())


def customers_by_phone(phones) -> dict[str, User]:
    """{E.164: the customer} for those of ``phones`` who are customers, in one query."""
    phones = list(set(phones))
    if not phones:
        return {}
    users = db.session.execute(
        User.__table__.select().where(among(db.session, User.phone, phones), User.role == Role.CUSTOMER.value)
    ).all()
    return {u.phone: u for u in users}


def recipient(caller, phone: str):
    found = customers_by_phone([phone]).get(phone)
    if found is None:
        raise ApiError("recipient_not_found")
    if found.account_id == caller.account_id:
        raise ApiError("own_number")
    return found


def fee_of(tariff, amount: int) -> int:
    try:
        return tariff.fee(KIND, amount)
    except ValueError:  # the operator's tariff has no row for payouts
        raise ApiError("not_priced") from None


def names_granted(caller, wanted: int) -> int:
    """How many of ``wanted`` recipients this request may name to ``caller``: a name look-up of
    the key's owner each (merchants and agents, the business allowance), as many as the rule
    lets it have now, counted in one step (``fraud.grant_look_ups``). Counted before the
    request's transaction commits (the grant is recorded with its rows): given back if it does
    not (a database failure, a refusal after this), as nothing was recorded and no name told;
    a retry is granted afresh."""
    phone = caller.owner.phone
    granted = fraud.grant_look_ups(phone, wanted, current_app.config["NAME_LOOKUP_LIMIT_BUSINESS"])
    if granted:
        undo_unless_committed(db.session, functools.partial(fraud.give_back_look_ups, phone, granted))
    return granted


REUSED = "This Idempotency-Key already paid another request body (keys are never reused, even after 24 h)."


def already_recorded(base: str) -> dict[str, TransferRequest]:
    """{id: request} of what this key recorded before: the payout ``base`` or a batch's rows
    ``base.<row>``: the ids between ``base.`` and ``base/`` in byte order (the databases'
    collation, C.UTF-8 or SQLite's), a range the primary key's index answers (a ``LIKE`` would
    read the whole table on PostgreSQL)."""
    rows = and_(TransferRequest.id > f"{base}.", TransferRequest.id < f"{base}/")
    found = db.session.execute(select(TransferRequest).where(or_(TransferRequest.id == base, rows))).scalars()
    return {r.id: r for r in found}


_SAME = ("kind", "debit_account_id", "credit_account_id", "amount", "fee", "reference")


def view(request: TransferRequest, phone: str) -> Payout:
    return Payout(
        id=request.id,
        transaction=request.code,
        phone=phone,
        amount=request.amount,
        fee=request.fee,
        currency=current_app.config["CURRENCY"],
        reference=request.reference,
        status=status_of(request),
        result=result_of(request),
        created=request.created_at,
    )


@bp.post("/payouts")
@operation(
    scope=Scope.PAYOUT,
    json_model=PayoutCreate,
    ok={"HTTP_202": Payout, "HTTP_503": ErrorBody},
    tags=("payouts",),
    operation_id="createPayout",
)
def create_payout(caller, body: PayoutCreate, idempotency_key: str):
    """Pay a customer

    Records a payout from the key owner's wallet to the customer with this phone number and
    answers 202 with its status ``queued``; the worker posts it within a second or so (read it
    with ``GET /transactions/{transaction}``). The customer gets a receipt SMS.

    Naming the recipient is a name look-up of the key's owner, counted when the payout is
    accepted against the owner's hourly allowance (the one its look-ups in the USSD menus
    use). Beyond it the payout still goes ahead, but its ``payout.posted`` event and the
    transaction's ``counterparty`` carry ``name`` null (the masked number only). A replay
    (the same Idempotency-Key) counts nothing more."""
    check_currency(body.currency)
    phone = mobile(body.phone)
    payee = recipient(caller, phone)
    tariff = in_force()
    fee = fee_of(tariff, body.amount)
    request_id = derived_id(caller.key.id, idempotency_key)
    earlier = already_recorded(request_id)
    if set(earlier) - {request_id}:  # a batch's key
        raise ApiError("idempotency_key_reused", REUSED)
    # Recorded before (its idempotency row since purged): its first answer, nothing counted.
    named = earlier[request_id].payee_named if request_id in earlier else names_granted(caller, 1) == 1
    try:
        recorded = record_request(
            db.session,
            request_id=request_id,
            kind=KIND,
            debit_account_id=caller.account_id,
            credit_account_id=payee.account_id,
            amount=body.amount,
            fee=fee,
            reference=body.reference,
            tariff_version_id=tariff.id,
            payee_named=named,
        )
    except ConflictingRequest:  # the key's row was purged: the id still remembers its body
        raise ApiError("idempotency_key_reused", REUSED) from None
    return view(recorded, phone), 202


# -- the batch ----------------------------------------------------------------------------------

CSV_COLUMNS = ("phone", "amount", "reference")


def _csv_row(row: dict) -> dict:
    """A CSV row as the JSON row it stands for: a whole-number amount as a number, an empty
    reference as none (anything else is left for the model to refuse). Only ASCII digits are a
    number: ``str.isdigit`` also takes ``²`` (which ``int`` refuses) and ``١٠٠`` (which it reads
    as 100)."""
    amount = (row.get("amount") or "").strip()
    whole = amount.isascii() and amount.isdigit()
    fixed = {"phone": (row.get("phone") or "").strip(), "amount": int(amount) if whole else amount}
    if (row.get("reference") or "").strip():
        fixed["reference"] = row["reference"].strip()
    return fixed


def read_batch() -> tuple[PayoutBatchCreate, object]:
    """The batch, well-formed as a whole (else 400/422 naming the first bad row), and what the
    Idempotency-Key compares. A well-formed row may still be refused on its own (an unknown
    number, say): that is answered in its result."""
    if request.mimetype == "text/csv":
        data = {"payouts": [_csv_row(r) for r in csv_rows(CSV_COLUMNS)]}
        source = request.get_data()
    else:
        data = source = json_body()
    return validated_batch(PayoutBatchCreate, data, "payouts"), source


def _refused(n: int, code: str, message: str | None = None) -> BatchRow:
    return BatchRow(row=n, status="rejected", error=Error(code=code, message=message or CODES[code][1]))


@bp.post("/payouts/batch")
@operation(
    scope=Scope.PAYOUT,
    reader=read_batch,
    body_doc=PayoutBatchCreate,
    ok={"HTTP_202": PayoutBatch, "HTTP_503": ErrorBody},
    tags=("payouts",),
    operation_id="createPayoutBatch",
)
def create_payout_batch(caller, batch: PayoutBatchCreate, idempotency_key: str):
    """Pay many customers

    Up to 10,000 payouts in one request, as JSON (``{"payouts": [...]}``, each row as for
    ``POST /payouts``) or as CSV (``Content-Type: text/csv``, header ``phone,amount,reference``).
    Every row gets its own result, in order: ``accepted`` with its id and transaction code, or
    ``rejected`` with an error (an unknown or foreign number, the owner's own number, another
    currency). A batch with a malformed row (a missing field, a zero amount) is refused whole
    (422 naming the row). Accepted rows are executed by the worker in its batches.

    Naming the recipients is a name look-up of the key's owner for each distinct recipient
    accepted, counted when the batch is accepted against the owner's hourly allowance (the one
    its look-ups in the USSD menus use): as many as are left, in row order. The others are
    paid all the same, but their ``payout.posted`` events and transactions carry ``name`` null
    (the masked number only). A replay (the same Idempotency-Key) counts nothing more."""
    currency = current_app.config["CURRENCY"]
    rows = batch.payouts
    results: list[BatchRow | None] = [None] * len(rows)
    checked: list[tuple[int, PayoutCreate]] = []
    for n, body in enumerate(rows, 1):
        if body.currency is not None and body.currency != currency:
            results[n - 1] = _refused(n, "currency_not_supported")
            continue
        checked.append((n, body))
    # A number sent exactly as stored (E.164) is a customer's, checked when they registered:
    # found in one query, it skips parsing (most of a large batch's time). The rest are parsed.
    payees = customers_by_phone(body.phone for _, body in checked if body.phone.startswith("+"))
    wanted: list[tuple[int, PayoutCreate, str]] = []
    for n, body in checked:
        if body.phone in payees:
            wanted.append((n, body, body.phone))
            continue
        try:
            wanted.append((n, body, normalize_mobile(body.phone)))
        except InvalidPhone:
            results[n - 1] = _refused(n, "invalid_phone", f"phone: not a mobile number of {country_name()}")
    payees |= customers_by_phone(phone for _, _, phone in wanted if phone not in payees)
    tariff = in_force()
    base = derived_id(caller.key.id, idempotency_key)
    now = utcnow()
    records = []
    for n, body, phone in wanted:
        payee = payees.get(phone)
        if payee is None:
            results[n - 1] = _refused(n, "recipient_not_found")
            continue
        if payee.account_id == caller.account_id:
            results[n - 1] = _refused(n, "own_number")
            continue
        request_id = f"{base}.{n}"
        records.append(
            {
                "id": request_id,
                "code": transaction_code(request_id),
                "kind": KIND,
                "debit_account_id": caller.account_id,
                "credit_account_id": payee.account_id,
                "amount": body.amount,
                "fee": fee_of(tariff, body.amount),
                "tariff_version_id": tariff.id,
                "commission": 0,
                "payee_fee": 0,
                "reference": body.reference,
                "payee_named": False,  # until its look-up is granted, below
                "pending_request_id": None,
                "hold_state": None,
                "hold_seconds": None,
                "status": RequestStatus.QUEUED.value,
                "result": None,
                "attempts": 0,
                # Executed in row order: each its own microsecond (execute.py orders by it).
                "created_at": now + timedelta(microseconds=n),
                "executed_at": None,
            }
        )
        results[n - 1] = BatchRow(row=n, status="accepted", id=request_id, transaction=records[-1]["code"])
    earlier = already_recorded(base)
    if earlier:  # this key paid before (its idempotency row since purged): the same rows or 422
        same = set(earlier) == {r["id"] for r in records} and all(
            all(getattr(earlier[r["id"]], name) == r[name] for name in _SAME) for r in records
        )
        if not same:
            raise ApiError("idempotency_key_reused", REUSED)
        records = []  # recorded already: answered as the first time, nothing new, nothing counted
    # One look-up per distinct recipient accepted, as many as the owner has left, in row order.
    recipients = list(dict.fromkeys(r["credit_account_id"] for r in records))
    named = set(recipients[: names_granted(caller, len(recipients))])
    for record in records:
        record["payee_named"] = record["credit_account_id"] in named
    if records:
        insert_rows(db.session, TransferRequest.__table__, records)
        ring_after_commit(db.session, Bell.TRANSFERS, base)
    accepted = sum(1 for r in results if r is not None and r.status == "accepted")
    return PayoutBatch(
        count=len(rows), accepted=accepted, rejected=len(rows) - accepted, results=results
    ), 202
