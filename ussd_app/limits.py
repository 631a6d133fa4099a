"""Limits by KYC tier, and velocity rules, enforced by the worker inside the batch's
database transaction (the menus may warn earlier, but this is the check that holds).

Each customer has a tier (``users.tier``: ``basic`` after USSD self-registration, ``full``
after an agent checked an ID); each tier has three limits (``LIMITS_<TIER>_MAJOR``):

- per transfer: ``amount > per_transfer`` → ``limit_transaction_exceeded``;
- per day: ``spent today + amount + fee > daily`` → ``limit_daily_exceeded``;
- wallet balance, for the payee: ``balance + amount > max_balance`` → ``limit_balance_exceeded``,
  for every kind that credits the payee (``credits_payee`` in ``payments/kinds.py``).
  A hold being posted to its payee (``posts_what_fits``) must still resolve: the part that fits
  is posted, the rest goes back to the payer (``limit_balance_returned``, an SMS to each side).
  A payer who cannot cover amount + fee is refused for that (the ledger's ``exceeds_credits``),
  never for the payee's limit (``cannot_cover``): the payee's limit is no answer to a payer
  without the money, else any payer could learn a customer's balance by refused sends.

``over_limit`` is these rules, pure; ``check_batch`` (the worker) and ``before_pin`` (the
confirm screens, which say the limit and what is left before the PIN) both use it.

"Today" starts at midnight in ``TIMEZONE``. What counts against the daily limit is every
accepted request the person paid out of their wallet, of a kind ``counted`` in the kinds table,
amount plus fee, in minor units; an allowance's hold, once a settlement resolved it, counts what
that settlement posted (the rest is held anew, and counted, by the next hold), and as no payment
in the velocity count. The same requests feed the velocity rules: more than
``VELOCITY_MAX_COUNT`` of them, or more than ``VELOCITY_MAX_VALUE_MAJOR`` sent, in the last
hour holds the next one for review (status ``review``) until an operator clears it (cleared
requests skip the velocity rules) or refuses it, on the back office's review page or with
``flask --app wsgi review clear|refuse``: ``payments/review.py``, audited.

No race can pass a limit: ``check_batch`` runs after the ledger's ``lock_accounts`` has locked
every wallet the batch touches, in the ledger's order (``execute_requests``), so a second
batch for the same payer waits until the first has committed, then reads its postings. The
tiers it checks are read after those locks too (``holders_now``, in the statement that reads
today's spending): a tier an operator lowers (or raises) while the batch waits for a busy
wallet applies to that batch. One changed after that read, while the batch posts, applies from
the next batch: the batch's check came first, as a transfer executed a moment earlier would
have (an operator's tier change takes no account lock, so it never waits for a batch; the
back office's, the CLI's and an agent's change alike).
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import ARRAY, and_, any_, bindparam, case, func, select
from sqlalchemy.orm import aliased

from . import reads
from .clock import utcnow
from .database import among, is_postgres
from .ledger.models import HOUSE_KINDS, Account, AccountFlags, Transfer
from .money import to_minor
from .payments import kinds
from .payments.models import RequestKind, RequestStatus, TransferRequest

REVIEW_CLEARED = "review_cleared"  # the result an operator's clearing leaves on a request


def daily_limit(tier: str | None = None) -> int:
    """The daily limit of ``tier`` (the basic tier's when unknown), minor units."""
    return tier_limits(tier).daily


def start_of_today(now: datetime | None = None) -> datetime:
    """Midnight of ``now``'s day in ``TIMEZONE``, as naive UTC (how the database stores times)."""
    tz = ZoneInfo(current_app.config["TIMEZONE"])
    now = now or utcnow()
    local = now.replace(tzinfo=UTC).astimezone(tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def spent_today(session, account_ids, now: datetime | None = None, *, hop: bool = False) -> dict[int, int]:
    """Posted amount + fee per payer account since midnight, minor units (0 when nothing).
    ``hop``: a menu hop's read before the PIN (``reads.rows``: one round trip when ``session``
    has no transaction open)."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    since = start_of_today(now)
    # A hop's read on an app with the hop reads' engine is PostgreSQL's (asking the session
    # would make one for a hop that has none only to ask it).
    statement = _spent_statement((hop and reads.engine() is not None) or is_postgres(session))
    params = {"ids": ids, "since": since, "until": since + timedelta(days=1)}
    rows = reads.rows(session, statement, params) if hop else session.execute(statement, params)
    spent = dict.fromkeys(ids, 0)
    spent.update({account_id: int(total) for account_id, total in rows})
    return spent


_SPENT: dict[bool, object] = {}


def _spent_statement(postgres: bool):
    """``spent_today``'s one statement, on the table (plain rows, no ORM entities), built once
    per dialect: an amount hop before the PIN runs it, and building it took as long as the
    round trip. The ids are one array on PostgreSQL (``database.among``), a list elsewhere."""
    statement = _SPENT.get(postgres)
    if statement is None:
        statement = _SPENT[postgres] = _spent_by_payer(postgres, "ids")
    return statement


def _ids(column, name: str, postgres: bool):
    """``column`` among the ids bound as ``name``: one array on PostgreSQL, a list elsewhere."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _spent_by_payer(postgres: bool, ids: str):
    """(payer, amount + fee posted from ``since`` to ``until``) for the payers bound as ``ids``."""
    t = TransferRequest.__table__
    resolution = t.alias("resolution")
    payer = t.c.debit_account_id
    resolved_hold = and_(t.c.kind.in_(RESOLVED_HOLD_KINDS), resolution.c.id.is_not(None))
    posted = case((resolution.c.kind == RequestKind.ALLOWANCE_POST.value, resolution.c.amount), else_=0)
    counted = case((resolved_hold, posted), else_=t.c.amount)
    return (
        select(payer.label("payer"), func.coalesce(func.sum(counted + t.c.fee), 0).label("spent"))
        .select_from(
            t.outerjoin(
                resolution,
                and_(
                    t.c.kind.in_(RESOLVED_HOLD_KINDS),
                    resolution.c.pending_request_id == t.c.id,
                    resolution.c.status != RequestStatus.REJECTED.value,
                ),
            )
        )
        .where(
            _ids(payer, ids, postgres),
            t.c.status == RequestStatus.ACCEPTED.value,
            t.c.kind.in_(kinds.COUNTED_KINDS),
            t.c.executed_at >= bindparam("since"),
            t.c.executed_at < bindparam("until"),
        )
        .group_by(payer)
    )


_HOLDERS_NOW: dict[bool, object] = {}


def holders_now(session, holder_ids, payer_ids, now: datetime | None = None) -> tuple[dict, dict]:
    """What a transfer batch checks of its holders, read in one statement after it holds its
    account locks: ``({holder's account: (tier, locked_until)}, {payer: spent today})``, the
    second as ``spent_today`` says it (``payer_ids``: holders' accounts among ``holder_ids``).

    The worker reads its holders (names, languages, numbers for the receipts) before it waits
    for the locks, to keep that read out of the time a busy wallet is held; a tier or an
    operator's lock committed during the wait must still apply to the batch, so both are read
    again here, with today's spending, in the statement the batch runs under its locks anyway:
    no round trip more. Under READ COMMITTED each statement sees every commit made before it
    started, so a statement run after the lock statement returned sees whatever an operator
    committed while the batch waited (the lock statement itself does not: its snapshot is
    taken before the wait)."""
    from .users import User  # users imports the ledger; keep this module light to import

    ids = list(set(holder_ids))
    if not ids:
        return {}, {}
    postgres = is_postgres(session)
    statement = _HOLDERS_NOW.get(postgres)
    if statement is None:
        u = User.__table__
        spent = _spent_by_payer(postgres, "payers").subquery("spent")
        statement = _HOLDERS_NOW[postgres] = (
            select(u.c.account_id, u.c.tier, u.c.locked_until, func.coalesce(spent.c.spent, 0))
            .select_from(u.outerjoin(spent, spent.c.payer == u.c.account_id))
            .where(_ids(u.c.account_id, "ids", postgres))
        )
    since = start_of_today(now)
    payers = set(payer_ids)
    params = {"ids": ids, "payers": list(payers), "since": since, "until": since + timedelta(days=1)}
    holders, spent_by = {}, {}
    for account_id, tier, locked_until, spent in session.execute(statement, params).all():
        holders[account_id] = (tier, locked_until)
        if account_id in payers:
            spent_by[account_id] = int(spent)
    return holders, spent_by


# A hold that its payer resolved (allowances: each settlement posts part of the period's hold
# and a new hold is made for the rest) counts what its resolution posts, not the whole hold:
# else a merchant settling after each charge counts the period's limit again and again, until
# the customer can send nothing today (and the allowance's own next hold is refused).
_RESOLUTION = aliased(TransferRequest)
RESOLVED_HOLD_KINDS = (RequestKind.ALLOWANCE.value,)


def _resolution_of_a_hold():
    """The join to a resolved allowance hold's one live resolution (no other kind joins, and a
    refused attempt does not: never a row twice; ``holds.reopen``)."""
    return and_(
        TransferRequest.kind.in_(RESOLVED_HOLD_KINDS),
        _RESOLUTION.pending_request_id == TransferRequest.id,
        _RESOLUTION.status != RequestStatus.REJECTED.value,
    )


def _counted_amount():
    """What a counted request counts: its amount; a resolved allowance hold, what was posted."""
    posted = case((_RESOLUTION.kind == RequestKind.ALLOWANCE_POST.value, _RESOLUTION.amount), else_=0)
    return case(
        (
            and_(TransferRequest.kind.in_(RESOLVED_HOLD_KINDS), _RESOLUTION.id.is_not(None)),
            posted,
        ),
        else_=TransferRequest.amount,
    )


def left_today(session, account_id: int, tier: str | None = None, now: datetime | None = None) -> int:
    """What ``account_id`` (of ``tier``) may still send today, minor units, never below zero."""
    return max(0, daily_limit(tier) - spent_today(session, [account_id], now)[account_id])


# -- enforcement --------------------------------------------------------------------------


class Result:
    """The words a refused or held request's ``result`` carries."""

    TRANSACTION = "limit_transaction_exceeded"
    DAILY = "limit_daily_exceeded"
    BALANCE = "limit_balance_exceeded"
    # A hold posted only in part (or voided) because of the payee's balance limit: the request
    # is posted, its amount is what reached the payee, the rest went back to the payer.
    BALANCE_RETURNED = "limit_balance_returned"
    # The payee is a business (agent or merchant) an operator has locked: nothing is paid to
    # it, whenever the request was recorded (the flows refuse it at the number screen).
    PAYEE_LOCKED = "payee_locked"
    VELOCITY_COUNT = "velocity_count"
    VELOCITY_VALUE = "velocity_value"
    REVIEW_REFUSED = "review_refused"


@dataclass(frozen=True)
class TierLimits:
    per_transfer: int
    daily: int
    max_balance: int


@dataclass(frozen=True)
class Refusal:
    """Why a request may not go ahead: ``result``, the ``limit`` it hit and by how much
    (``excess``), minor units; ``hold`` means "held for review", not refused."""

    result: str
    limit: int
    excess: int
    hold: bool = False
    # For a kind in kinds.POSTS_WHAT_FITS refused by the payee's balance limit: the part that is
    # posted to the payee all the same (0: none); the rest goes back to the payer.
    fits: int | None = None
    # What the limit still allows (per transfer: the limit; daily: what is left today, fees
    # included; balance: the room under the payee's limit), for the screens that say so.
    left: int | None = None

    @property
    def status(self) -> str:
        return (RequestStatus.REVIEW if self.hold else RequestStatus.REJECTED).value


def tier_limits(tier: str | None) -> TierLimits:
    """The limits of ``tier`` (an unknown tier gets the basic tier's), minor units."""
    key = f"LIMITS_{(tier or 'basic').upper()}_MAJOR"
    raw = current_app.config.get(key) or current_app.config["LIMITS_BASIC_MAJOR"]
    try:
        per_transfer, daily, max_balance = (to_minor(int(part)) for part in str(raw).split(","))
    except ValueError as exc:
        raise ValueError(f"{key} must be three whole numbers: per transfer, daily, balance") from exc
    return TierLimits(per_transfer, daily, max_balance)


def over_limit(
    amount: int,
    fee: int = 0,
    *,
    payer: TierLimits | None = None,
    spent: int = 0,
    payee: TierLimits | None = None,
    payee_balance: int = 0,
) -> Refusal | None:
    """The tier rules, pure: ``amount`` (+ ``fee``) against the payer's limits (``payer``,
    having ``spent`` today) and the payee's balance limit (``payee``, holding
    ``payee_balance``); None for either side that is not checked. The first rule broken, with
    the figures to say it (``limit``, ``excess``, ``left``), or None. Minor units."""
    if payer is not None:
        if amount > payer.per_transfer:
            return Refusal(
                Result.TRANSACTION, payer.per_transfer, amount - payer.per_transfer, left=payer.per_transfer
            )
        if spent + amount + fee > payer.daily:
            over = spent + amount + fee - payer.daily
            return Refusal(Result.DAILY, payer.daily, over, left=max(0, payer.daily - spent))
    if payee is not None and payee_balance + amount > payee.max_balance:
        over = payee_balance + amount - payee.max_balance
        return Refusal(
            Result.BALANCE, payee.max_balance, over, left=max(0, payee.max_balance - payee_balance)
        )
    return None


READ = "read"  # before_pin's payer_tier: not known, read it


def tier_of(user) -> str | None:
    """``before_pin``'s ``payer_tier`` of a holder whose row the caller has: their tier if a
    customer, else None (no limits of a customer apply)."""
    from .users import Role

    return user.tier if user.role == Role.CUSTOMER.value else None


def before_pin(
    session,
    kind: str,
    amount: int,
    fee: int = 0,
    *,
    payer_account_id=None,
    payee_account_id=None,
    payer_tier: str | None = READ,
) -> Refusal | None:
    """What can be known at a confirm screen, before the PIN: the payer's per-transfer and
    daily limits (when ``kind`` counts against them) and the payee's balance limit (when
    ``kind`` credits them), for whichever of them is a customer. The worker's check_batch,
    under the accounts' locks, stays the final word; this only saves a refusal after the PIN.
    ``payer_tier``, when the caller knows it (a USSD hop's caller facts, kept fresh by
    ``ussd/caller.py``, or the holder's row: ``tier_of``): the payer customer's tier, or None
    for a payer who is no customer; ``READ`` (the default) reads it.

    A menu hop's amount step knows the payer's tier and names no payee: its one statement is
    today's spending, a hop read (``reads``: one round trip when the hop has no transaction
    open). The tiers (``READ``, a payee) and the payee's balance are read in ``session``."""
    from .users import Role, User

    ids = {a for a in (payer_account_id, payee_account_id) if a is not None}
    if payer_tier != READ:
        ids.discard(payer_account_id)
    tiers = (
        dict(
            session.execute(
                select(User.account_id, User.tier).where(
                    among(session, User.account_id, list(ids)), User.role == Role.CUSTOMER.value
                )
            ).all()
        )
        if ids
        else {}
    )
    if payer_tier != READ and payer_account_id is not None:
        tiers.pop(payer_account_id, None)
        if payer_tier is not None:
            tiers[payer_account_id] = payer_tier
    payer = payee = None
    spent = payee_balance = 0
    if payer_account_id in tiers and kind in kinds.COUNTED_KINDS:
        payer = tier_limits(tiers[payer_account_id])
        spent = spent_today(session, [payer_account_id], hop=True)[payer_account_id]
    if payee_account_id in tiers and kind in kinds.CREDITED_KINDS:
        payee = tier_limits(tiers[payee_account_id])
        account = session.get(Account, payee_account_id)
        payee_balance = account.credits_posted - account.debits_posted
    return over_limit(amount, fee, payer=payer, spent=spent, payee=payee, payee_balance=payee_balance)


def lock_accounts(session, account_ids) -> None:
    """Lock the accounts' rows in the ledger's order (wallets, then house accounts, each by id:
    ``ledger.engine.Locked``; the ledger re-locks them for free). On SQLite the whole database
    is already the batch's (BEGIN IMMEDIATE). The worker's batches lock through the ledger's
    own ``lock_accounts`` instead, and read the balances in the same statement."""
    ids = sorted({a for a in account_ids if a is not None})
    if ids and is_postgres(session):
        session.execute(
            select(Account.id)
            .where(among(session, Account.id, ids))
            .order_by(Account.kind.in_([k.value for k in HOUSE_KINDS]), Account.id)
            .with_for_update(key_share=True)  # the ledger's lock (ledger/engine.py says why)
        )


def sent_last_hour(session, account_ids, now: datetime) -> dict[int, tuple[int, int]]:
    """{payer account: (posted count, posted amount)} over the rolling hour before ``now``."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    # A resolved allowance hold counts as none (its merchant settled it; the new hold counts).
    resolved = and_(TransferRequest.kind.in_(RESOLVED_HOLD_KINDS), _RESOLUTION.id.is_not(None))
    rows = session.execute(
        select(
            TransferRequest.debit_account_id,
            func.coalesce(func.sum(case((resolved, 0), else_=1)), 0),
            func.coalesce(func.sum(_counted_amount()), 0),
        )
        .outerjoin(_RESOLUTION, _resolution_of_a_hold())
        .where(
            among(session, TransferRequest.debit_account_id, ids),
            TransferRequest.status == RequestStatus.ACCEPTED.value,
            TransferRequest.kind.in_(kinds.COUNTED_KINDS),
            TransferRequest.executed_at >= now - timedelta(hours=1),
        )
        .group_by(TransferRequest.debit_account_id)
    )
    found = dict.fromkeys(ids, (0, 0))
    found.update({account_id: (int(n), int(total)) for account_id, n, total in rows})
    return found


def _operator_locked(session, account_ids, *where) -> set[int]:
    """The accounts among ``account_ids`` whose holder an operator has locked (and ``where``),
    read now (``check_batch`` without ``people``; the worker's batch reads the locks with its
    holders' tiers under its account locks instead: ``holders_now``)."""
    from .users import OPERATOR_LOCK_UNTIL, User

    ids = [a for a in account_ids if a is not None]
    if not ids:
        return set()
    return set(
        session.execute(
            select(User.account_id).where(
                among(session, User.account_id, ids), User.locked_until >= OPERATOR_LOCK_UNTIL, *where
            )
        ).scalars()
    )


def _locked_businesses(session, account_ids) -> set[int]:
    """The accounts among ``account_ids`` of an agent or merchant an operator has locked."""
    from .users import Role, User

    return _operator_locked(session, account_ids, User.role != Role.CUSTOMER.value)


def _locked_payers_cleared(session, requests) -> set[int]:
    """The payers an operator has locked among the requests an operator cleared from review:
    locked after the clear, before the worker took it (``payments/review.py`` refuses to clear
    a payer locked already). Read now, never from holders read before the caller's account
    locks (a lock committed while it waited for a busy wallet); no query unless there is a
    cleared request."""
    return _operator_locked(session, {r.debit_account_id for r in requests if r.result == REVIEW_CLEARED})


def check_batch(
    session,
    requests,
    now: datetime | None = None,
    velocity_exempt: frozenset[str] | set[str] = frozenset(),
    *,
    people=None,
    locked=None,
) -> dict[str, Refusal]:
    """{request id: Refusal} for the requests of a batch that break a limit or a velocity rule.

    A payment (a kind in COUNTED_KINDS, or an allowance's settlement) to an agent or merchant an
    operator has locked is refused (``payee_locked``) before any limit is looked at; so is a
    request cleared from review whose payer an operator has locked since (``review_refused``).

    Call it after ``lock_accounts`` for every account the batch touches. Requests are checked
    in batch order; each one let through counts against the next ones of the same payer or
    payee (even if the ledger then refuses it for funds: a conservative count).
    ``velocity_exempt``: ids the velocity rules do not hold (the limits still apply; they still
    count towards the hour for the payer's other payments).
    ``people`` (``sms.receipts.People`` of these requests: their holders, read before the
    locks, with their tiers, operators' locks and today's spending read again under them with
    this ``now``: ``People.read_spent``) and ``locked`` (the ledger's ``Locked`` of their
    accounts): what the worker has already read, so none of it is read twice. Tiers and
    operators' locks are the ones committed before the batch held its locks, never the ones
    read before it waited for them (``holders_now`` says why and how)."""
    from .users import Role, User, is_operator_locked  # users imports the ledger

    now = now or utcnow()
    ids = {r.debit_account_id for r in requests} | {r.credit_account_id for r in requests}
    if people is not None:
        if not people.current:
            raise RuntimeError("check_batch needs the holders' tiers read under the batch's locks")
        customers = {
            a: u.tier for a, u in people.by_account.items() if a in ids and u.role == Role.CUSTOMER.value
        }
        locked_businesses = {
            r.credit_account_id
            for r in requests
            if r.kind in kinds.PAYS_A_BUSINESS
            and (u := people.get(r.credit_account_id)) is not None
            and u.role != Role.CUSTOMER.value
            and is_operator_locked(u)
        }
        locked_payers = {
            r.debit_account_id
            for r in requests
            if r.result == REVIEW_CLEARED
            and (u := people.get(r.debit_account_id)) is not None
            and is_operator_locked(u)
        }
    else:
        customers = dict(
            session.execute(
                select(User.account_id, User.tier).where(
                    among(session, User.account_id, ids), User.role == Role.CUSTOMER.value
                )
            ).all()
        )
        locked_businesses = _locked_businesses(
            session, {r.credit_account_id for r in requests} - set(customers)
        )
        locked_payers = _locked_payers_cleared(session, requests)
    payers = {r.debit_account_id for r in requests if r.debit_account_id in customers}
    payees = {r.credit_account_id for r in requests if r.credit_account_id in customers}
    spent = people.spent_before(payers) if people is not None else spent_today(session, payers, now)
    max_count = current_app.config["VELOCITY_MAX_COUNT"]
    max_value = to_minor(current_app.config["VELOCITY_MAX_VALUE_MAJOR"])
    # With both velocity rules off, the hour's figures are never looked at: not read.
    hour = sent_last_hour(session, payers, now) if max_count or max_value else dict.fromkeys(payers, (0, 0))
    balances = _balances(session, payees, locked, lambda dp, dpo, cpo: cpo - dpo)

    limits_of = cache(tier_limits)  # the same configuration for the whole batch
    refusals: dict[str, Refusal] = {}
    for r in requests:
        payer = r.debit_account_id if r.debit_account_id in customers else None
        payee = r.credit_account_id if r.credit_account_id in customers else None
        refusal = None
        if r.kind in kinds.PAYS_A_BUSINESS and r.credit_account_id in locked_businesses:
            refusal = Refusal(Result.PAYEE_LOCKED, 0, 0)
        elif r.debit_account_id in locked_payers and r.result == REVIEW_CLEARED:
            # Cleared, then its payer locked by an operator before this batch: stopped, as a
            # refusal of the review would have (the payer told; a withdrawal's agent too).
            refusal = Refusal(Result.REVIEW_REFUSED, 0, 0)
        elif payer is not None and r.kind in kinds.COUNTED_KINDS:
            count, value = hour[payer]
            refusal = over_limit(r.amount, r.fee, payer=limits_of(customers[payer]), spent=spent[payer])
            # Then velocity (held for review), except for a request an operator cleared or one in
            # ``velocity_exempt`` (a standing order's run: its payer set it up with the PIN).
            if refusal is None and r.result != REVIEW_CLEARED and r.id not in velocity_exempt:
                if max_count and count >= max_count:
                    refusal = Refusal(Result.VELOCITY_COUNT, max_count, count + 1 - max_count, hold=True)
                elif max_value and value + r.amount > max_value:
                    refusal = Refusal(
                        Result.VELOCITY_VALUE, max_value, value + r.amount - max_value, hold=True
                    )
        if refusal is None and payee is not None and r.kind in kinds.CREDITED_KINDS:
            refusal = over_limit(r.amount, payee=limits_of(customers[payee]), payee_balance=balances[payee])
            if refusal is not None and r.kind in kinds.POSTS_WHAT_FITS:  # what fits is the room left
                refusal = replace(refusal, fits=refusal.left)
                balances[payee] += refusal.fits
        if refusal is not None:
            refusals[r.id] = refusal
            continue
        if payer is not None and r.kind in kinds.COUNTED_KINDS:
            spent[payer] += r.amount + r.fee
            count, value = hour[payer]
            hour[payer] = (count + 1, value + r.amount)
        if payee is not None and payee in balances:
            balances[payee] += r.amount
    return refusals


def cannot_cover(session, requests, legs, locked=None) -> set[str]:
    """The ids of ``requests`` whose payer certainly cannot cover what the request debits from
    them (amount + fee) whatever else the batch does: the ledger will refuse each with
    ``exceeds_credits``. ``legs``: {request id: its transfer specs} for the whole batch.

    Certain, never a guess: the payer's room (``credits_posted - debits_posted -
    debits_pending``) is counted with every credit to the payer anywhere in the batch and
    every hold of theirs the batch may post or void, so a payee's limit is only ever set aside
    for a request the ledger refuses (``execute.py`` uses this to put the payer's refusal
    first). Call it after ``lock_accounts`` (``locked``: the ledger's, if the caller has it)."""
    specs = [spec for chain in legs.values() for spec in chain]
    payers = {r.debit_account_id for r in requests}
    if not requests or not payers:
        return set()
    room = _balances(
        session,
        payers,
        locked,
        lambda dp, dpo, cpo: cpo - dpo - dp,
        flagged=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    held = [spec.pending_id for spec in specs if spec.pending_id]
    if held:
        for t in session.execute(select(Transfer).where(among(session, Transfer.id, held))).scalars():
            for account_id in {t.debit_account_id, t.credit_account_id} & room.keys():
                room[account_id] += t.amount  # a void gives it back; a post may credit it on
    for spec in specs:
        if spec.credit_account_id in room:
            room[spec.credit_account_id] += spec.amount
    found = set()
    for r in requests:
        if r.debit_account_id not in room:
            continue
        debited = sum(s.amount for s in legs.get(r.id, ()) if s.debit_account_id == r.debit_account_id)
        if debited > room[r.debit_account_id]:
            found.add(r.id)
    return found


def _balances(session, account_ids, locked, figure, flagged: int = 0) -> dict[int, int]:
    """{account: figure(debits_pending, debits_posted, credits_posted)} for ``account_ids``
    (those with the ``flagged`` flags only), from ``locked`` (the ledger's ``Locked``, read
    under the batch's locks) where it holds the account, else read now."""
    found, missing = {}, []
    for account_id in account_ids:
        if locked is not None and locked.available(account_id) is not None:  # locked, read
            if (locked.flags[account_id] & flagged) == flagged:
                dp, dpo, _, cpo = locked.balances[account_id]
                found[account_id] = figure(dp, dpo, cpo)
        else:
            missing.append(account_id)
    if missing:
        for a in session.execute(select(Account).where(among(session, Account.id, missing))).scalars():
            if (a.flags & flagged) == flagged:
                found[a.id] = figure(a.debits_pending, a.debits_posted, a.credits_posted)
    return found
