"""Creating transfers: the only code that changes account balances.

``create_transfers`` takes a batch, locks every account it touches in one fixed order
(wallets, then house accounts, each by id, so two batches can never deadlock: ``Locked``;
the worker locks them first with ``lock_accounts`` and hands them over), applies the
transfers in memory in batch order, then writes the new transfers, the rejected ids and the
new balances. It never commits: the caller (a worker job) owns the database transaction and
writes its outbox rows in it too.

Rules, in TigerBeetle's words (docs/ledger.md lists where Tuma differs, and why):
- a transfer flagged LINKED succeeds or fails with the next one; a chain is atomic. Any
  result but OK fails the chain, EXISTS included: the first transfer that is not OK keeps its
  result, the others get LINKED_EVENT_FAILED, and a chain still open at the end of the batch
  ends in LINKED_EVENT_CHAIN_OPEN;
- the same id with the same fields returns EXISTS (or the first rejection, if it failed):
  a failed id stays failed; the same id with other fields is EXISTS_WITH_DIFFERENT_FIELDS;
- every amount is positive (a void's may be 0: the whole hold);
- no balance column may pass 2**63 - 1, checked for posted columns even when a transfer is
  pending, so that posting a hold can never overflow (OVERFLOWS_*);
- a debit account flagged DEBITS_MUST_NOT_EXCEED_CREDITS refuses a transfer when
  ``debits_pending + debits_posted + amount > credits_posted`` (EXCEEDS_CREDITS);
- a pending transfer reserves its amount; a POST_PENDING_TRANSFER moves all or part of it
  to posted and releases the rest, a VOID_PENDING_TRANSFER releases it all; either resolves
  the hold once (the database's unique index on pending_id is the final word);
- a hold past ``expires_at`` (database clock) has expired: posting or voiding it answers
  PENDING_TRANSFER_EXPIRED, before and after the expiry job has voided it (only that job's
  voids, ``expiry=True``, resolve an expired hold).
When several results apply, the first in ``results.TransferResult`` is the answer.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ..database import among, db_clock_us, insert_rows, is_postgres, update_rows
from .models import (
    CODE_LENGTH,
    HOUSE_KINDS,
    ID_LENGTH,
    Account,
    AccountFlags,
    RejectedTransfer,
    Transfer,
    TransferFlags,
)
from .results import TransferResult as R

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
# The flags as plain ints, and a spec's flags read with int(): an IntFlag's ``&`` is a call
# into the enum module (0.6-0.8 µs, several a leg in a batch of thousands); int & int is not.
_LINKED = int(TransferFlags.LINKED)
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_RESOLVING = _POST | _VOID
_KIND_FLAGS = _PENDING | _RESOLVING
_DEBITS_LIMITED = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_LIMITED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_HOUSE = [k.value for k in HOUSE_KINDS]
# A late account is only ever this far from the largest balance a column holds: the overflow
# rules cannot answer for it on the figures read without its lock (``Locked``), and
# ``apply_late`` checks the figures it writes against the same rules all the same.
LATE_HEADROOM = 2**62


def _get(row, field):
    """Read a field of a stored row (ORM object) or of a row staged in this batch (dict)."""
    return row[field] if isinstance(row, dict) else getattr(row, field)


@dataclass(frozen=True)
class TransferSpec:
    """What a client asks the ledger to do. For a post or void, the accounts may be left
    None (they are the pending transfer's) and a void's amount may be 0 (the whole hold)."""

    id: str
    debit_account_id: int | None
    credit_account_id: int | None
    amount: int
    code: str
    pending_id: str | None = None
    timeout: int = 0
    flags: int = 0
    user_data: str | None = None

    def matches(self, row) -> bool:
        """True when ``row`` (a Transfer or RejectedTransfer) was made from these fields."""
        void = bool(int(self.flags) & _VOID)
        amount = _get(row, "amount")
        return (
            self.debit_account_id in (None, _get(row, "debit_account_id"))
            and self.credit_account_id in (None, _get(row, "credit_account_id"))
            and (self.amount == amount or (void and self.amount == 0))
            and self.code == _get(row, "code")
            and self.pending_id == _get(row, "pending_id")
            and self.timeout == _get(row, "timeout")
            and int(self.flags) == _get(row, "flags")
            and self.user_data == _get(row, "user_data")
        )


class _Balances:
    """Balances as ``[dp, dpo, cp, cpo]`` lists by account id. A fork is a copy-on-write view
    over its parent holding only what one linked chain touched: merged into the parent if the
    chain succeeds, dropped if it fails, so a failed chain leaves no trace."""

    def __init__(self, base: dict[int, list[int]], parent: "_Balances | None" = None):
        self.base = base
        self.parent = parent
        self.changed: dict[int, list[int]] = {}

    def get(self, account_id: int) -> list[int]:
        if account_id not in self.changed:
            source = self.parent.get(account_id) if self.parent is not None else self.base[account_id]
            self.changed[account_id] = list(source)
        return self.changed[account_id]

    def fork(self) -> "_Balances":
        return _Balances(self.base, parent=self)

    def merge(self) -> None:
        """Make this fork's changes the parent's."""
        self.parent.changed.update(self.changed)


class LateOverflow(Exception):
    """A late account's increment would pass a balance column's largest value (or did, and the
    database refused it): the transaction must roll back and the batch be run again without
    late accounts, so that the ledger answers OVERFLOWS_* for it under its lock."""


class Locked:
    """A batch's accounts, locked and read once (``lock_accounts``), for the caller's checks
    (limits, receipts) and the ledger's.

    ``flags`` and ``balances`` ([dp, dpo, cp, cpo]) by account id: as read under the locks,
    then as ``create_transfers`` left them (the balances it wrote).

    Late accounts (PostgreSQL, ``late=True``): a house account the batch only credits (or
    only debits) with plain posted transfers, and whose flags put no limit on that side
    (e.g. FEES, flagged DEBITS_MUST_NOT_EXCEED_CREDITS, that the batch only credits), is not
    locked with the others. No rule of the ledger can refuse such a posting on its account's
    balance but an overflow, and it is far from one (``LATE_HEADROOM``, checked again on the
    written figures), so the ledger's answers are the same as under the lock. Its postings
    are added at the end (``apply_late``: ``UPDATE ... SET credits_posted = credits_posted +
    ...``), so its row lock is held from that statement to commit instead of from the start
    of the batch: two batches that both pay fees no longer run one after the other. Its
    figures in ``balances`` are an unlocked read: nothing may show or check them (the
    ledger's snapshots for receipts leave them out; no house account has a holder).

    Lock order, the same in every transaction, so two can never wait for each other in a
    circle: wallets first, then house accounts, each by id (``ORDER BY kind is a house kind,
    id``). A batch takes its early locks in that order in one statement, then its late ones
    last, by id, and only a house account above every house account it locked early may be
    late: each transaction's locks are taken in increasing (house, id) order, and a
    transaction waiting for a row another holds waits for a larger key than any it holds.
    (Other locks a batch may wait on: the queued requests' rows are taken with SKIP LOCKED,
    and inserts naming an account take KEY SHARE locks that FOR NO KEY UPDATE does not block.)
    SQLite has no row locks (a writer has the whole database): nothing is late there.
    """

    def __init__(self, flags, balances, late, asked, pending):
        self.flags: dict[int, int] = flags
        self.balances: dict[int, list[int]] = balances
        self.late: dict[int, int] = late  # {late account id: the side it takes: _DEBIT or _CREDIT}
        self.asked: set[int] = asked  # every account id looked for (found or not)
        self.pending: set[str] = pending  # the holds looked up for their accounts
        self.increments: dict[int, list[int]] = {}  # late accounts' postings, not yet written

    def available(self, account_id: int) -> int | None:
        """What the holder of ``account_id`` may spend (None: not read, or read unlocked)."""
        if account_id not in self.balances or account_id in self.late:
            return None
        dp, dpo, _, cpo = self.balances[account_id]
        return cpo - dpo - dp

    def cover(self, specs: Sequence[TransferSpec]) -> None:
        """Check that ``specs`` need no account beyond those locked, and post to late ones only
        as allowed: else a programming error (RuntimeError), never a posting without a lock."""
        for s in specs:
            for account_id, side in ((s.debit_account_id, _DEBIT), (s.credit_account_id, _CREDIT)):
                if account_id is None:
                    continue
                if account_id not in self.flags:
                    # An account no row was found for: the ledger answers *_NOT_FOUND, unless
                    # it was never asked for, which would leave it unlocked.
                    if account_id not in self.asked:
                        raise RuntimeError(f"account {account_id} was not locked for this batch")
                    continue
                if account_id in self.late and (self.late[account_id] != side or int(s.flags) & _KIND_FLAGS):
                    raise RuntimeError(f"account {account_id} is late and cannot take {s.id}")
            if int(s.flags) & _RESOLVING and s.pending_id not in self.pending:
                raise RuntimeError(f"hold {s.pending_id} was not looked up for this batch")

    def apply_late(self, session) -> None:
        """Add the late accounts' postings, one statement each, by id: the last statements of
        the transaction, so their locks are held only until the commit. Raises LateOverflow
        when a column would pass the largest value the ledger allows (then roll back)."""
        for account_id in sorted(self.increments):
            dp, dpo, cp, cpo = self.increments[account_id]
            if dp or cp:  # Locked.cover lets no hold near a late account
                raise RuntimeError(f"account {account_id}: a late account's pending balance changed")
            if not dpo and not cpo:
                continue
            try:
                row = session.execute(
                    text(
                        "UPDATE accounts SET debits_posted = debits_posted + :dpo, "
                        "credits_posted = credits_posted + :cpo WHERE id = :id "
                        "RETURNING debits_pending, debits_posted, credits_pending, credits_posted"
                    ),
                    {"id": account_id, "dpo": dpo, "cpo": cpo},
                ).one()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == "22003":  # numeric value out of range
                    raise LateOverflow(account_id) from exc
                raise
            dp, dpo_, cp, cpo_ = row
            if dp + dpo_ > INT64_MAX or cp + cpo_ > INT64_MAX:
                raise LateOverflow(account_id)
            _expire(session, {account_id})
        self.increments.clear()


_DEBIT, _CREDIT = 1, 2


def lock_accounts(session, specs: Sequence[TransferSpec], *, late: bool = False) -> Locked:
    """Lock and read every account ``specs`` touch (the accounts of the holds they resolve
    too), in the ledger's lock order (``Locked``), in one statement; with ``late`` (the
    caller then calls ``Locked.apply_late`` last before its commit), leave out the house
    accounts that may take their postings at the end.

    After this, everything read sees the latest commits (READ COMMITTED, PostgreSQL's
    default, which Tuma keeps). FOR NO KEY UPDATE (the lock PostgreSQL's own UPDATE of a
    balance takes) leaves alone the key share locks that inserting a row naming an account
    takes: a transaction that records a request and then posts it would otherwise deadlock
    with another doing the same."""
    pending_ids = {s.pending_id for s in specs if s.pending_id}
    account_ids = {s.debit_account_id for s in specs} | {s.credit_account_id for s in specs}
    held: dict[str, tuple[int, int]] = {}
    if pending_ids:
        for pid, d, c in session.execute(
            select(Transfer.id, Transfer.debit_account_id, Transfer.credit_account_id).where(
                among(session, Transfer.id, pending_ids)
            )
        ):
            held[pid] = (d, c)
            account_ids |= {d, c}
    account_ids.discard(None)
    table = Account.__table__
    columns = (table.c.id, table.c.flags, *(table.c[f] for f in BALANCE_FIELDS))
    late_ids: dict[int, int] = {}
    flags: dict[int, int] = {}
    balances: dict[int, list[int]] = {}
    if late and is_postgres(session):
        house = {r[0]: r for r in session.execute(select(*columns).where(table.c.kind.in_(_HOUSE))).all()}
        late_ids = _late(specs, account_ids, house, {a for pair in held.values() for a in pair})
        for account_id in late_ids:
            flags[account_id] = house[account_id][1]
            balances[account_id] = list(house[account_id][2:])
    rows = session.execute(
        select(*columns)
        .where(among(session, table.c.id, account_ids - late_ids.keys()))
        .order_by(table.c.kind.in_(_HOUSE), table.c.id)
        .with_for_update(key_share=True)
    ).all()
    flags.update({r[0]: r[1] for r in rows})
    balances.update({r[0]: list(r[2:]) for r in rows})
    return Locked(flags, balances, late_ids, account_ids, pending_ids)


def _late(specs, account_ids, house, resolved_accounts) -> dict[int, int]:
    """{house account: side} for the accounts of ``specs`` that may be late (``Locked``)."""
    sides: dict[int, int] = {}
    totals: dict[int, int] = {}
    early = set()
    for s in specs:
        for account_id, side in ((s.debit_account_id, _DEBIT), (s.credit_account_id, _CREDIT)):
            if account_id not in house:
                continue
            sides[account_id] = sides.get(account_id, 0) | side
            totals[account_id] = totals.get(account_id, 0) + max(0, s.amount)
            if int(s.flags) & _KIND_FLAGS:
                early.add(account_id)
    eligible = {}
    for account_id, side in sides.items():
        _, account_flags, dp, dpo, cp, cpo = house[account_id]
        refuses = _DEBITS_LIMITED if side == _DEBIT else _CREDITS_LIMITED
        figure = dp + dpo if side == _DEBIT else cp + cpo
        if (
            side in (_DEBIT, _CREDIT)
            and account_id not in early
            and account_id not in resolved_accounts
            and not account_flags & refuses
            and figure + totals[account_id] <= INT64_MAX - LATE_HEADROOM
        ):
            eligible[account_id] = side
    # Only above every house account locked early (the lock order, ``Locked``).
    locked_house = [a for a in account_ids if a in house and a not in eligible]
    floor = max(locked_house, default=None)
    return {a: side for a, side in eligible.items() if floor is None or a > floor}


class _Batch:
    def __init__(
        self,
        session,
        specs: Sequence[TransferSpec],
        now: int,
        snapshots: dict | None = None,
        expiry=False,
        locked: "Locked | None" = None,
    ):
        self.snapshots = snapshots
        self.expiry = expiry
        self.session = session
        self.specs = specs
        self.now = now
        ids = {s.id for s in specs if s.id}
        pending_ids = {s.pending_id for s in specs if s.pending_id}
        if locked is None:
            locked = lock_accounts(session, specs)
        else:
            locked.cover(specs)
        self.locked = locked
        self.flags = locked.flags
        self.balances = _Balances(locked.balances)
        lookup = ids | pending_ids
        self.transfers = {
            t.id: t
            for t in session.execute(select(Transfer).where(among(session, Transfer.id, lookup))).scalars()
        }
        self.rejected = {
            r.id: r
            for r in session.execute(
                select(RejectedTransfer).where(among(session, RejectedTransfer.id, ids))
            ).scalars()
        }
        # pending id -> (flags, created_at) of the transfer that resolved it
        self.resolved = {
            pending_id: (flags, created_at)
            for pending_id, flags, created_at in session.execute(
                select(Transfer.pending_id, Transfer.flags, Transfer.created_at).where(
                    among(session, Transfer.pending_id, pending_ids)
                )
            )
        }
        self.new_transfers: list[dict] = []
        self.new_rejections: list[dict] = []

    # -- one transfer -------------------------------------------------------------------

    def _check(self, s: TransferSpec, bal: _Balances, staged: dict) -> tuple[R, dict | None]:
        """Validate ``s`` against ``bal`` and, if valid, apply it there; return the row."""
        if not s.id:
            return R.ID_MUST_NOT_BE_EMPTY, None
        if len(s.id) > ID_LENGTH:
            return R.ID_TOO_LONG, None
        seen = staged.get(s.id) or self.transfers.get(s.id)
        if seen is not None:
            return (R.EXISTS if s.matches(seen) else R.EXISTS_WITH_DIFFERENT_FIELDS), None
        failed = self.rejected.get(s.id)
        if failed is not None:
            return (R(failed.result) if s.matches(failed) else R.EXISTS_WITH_DIFFERENT_FIELDS), None
        flags = int(s.flags)
        if bin(flags & _KIND_FLAGS).count("1") > 1:
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE, None
        if flags & _RESOLVING:
            return self._check_resolution(s, bal, staged)

        if s.debit_account_id == s.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT, None
        if s.pending_id is not None:
            return R.PENDING_ID_MUST_NOT_BE_SET, None
        pending = bool(flags & _PENDING)
        if (s.timeout and not pending) or s.timeout < 0:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, None
        if s.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE, None
        if s.debit_account_id not in self.flags:
            return R.DEBIT_ACCOUNT_NOT_FOUND, None
        if s.credit_account_id not in self.flags:
            return R.CREDIT_ACCOUNT_NOT_FOUND, None
        d, c = bal.get(s.debit_account_id), bal.get(s.credit_account_id)
        amount = s.amount
        if pending and d[0] + amount > INT64_MAX:
            return R.OVERFLOWS_DEBITS_PENDING, None
        if pending and c[2] + amount > INT64_MAX:
            return R.OVERFLOWS_CREDITS_PENDING, None
        # Checked for a hold too: posting it later must not be able to overflow.
        if d[1] + amount > INT64_MAX:
            return R.OVERFLOWS_DEBITS_POSTED, None
        if c[3] + amount > INT64_MAX:
            return R.OVERFLOWS_CREDITS_POSTED, None
        if d[0] + d[1] + amount > INT64_MAX:
            return R.OVERFLOWS_DEBITS, None
        if c[2] + c[3] + amount > INT64_MAX:
            return R.OVERFLOWS_CREDITS, None
        expires = self.now + s.timeout * 1_000_000 if pending and s.timeout else None
        if s.timeout > INT32_MAX or (expires is not None and expires > INT64_MAX):
            return R.OVERFLOWS_TIMEOUT, None
        if self.flags[s.debit_account_id] & _DEBITS_LIMITED and d[0] + d[1] + amount > d[3]:
            return R.EXCEEDS_CREDITS, None
        if self.flags[s.credit_account_id] & _CREDITS_LIMITED and c[2] + c[3] + amount > c[1]:
            return R.EXCEEDS_DEBITS, None
        slot_d, slot_c = (0, 2) if pending else (1, 3)
        d[slot_d] += amount
        c[slot_c] += amount
        return R.OK, self._row(s, s.debit_account_id, s.credit_account_id, amount, expires)

    def _check_resolution(self, s: TransferSpec, bal: _Balances, staged: dict):
        post = bool(int(s.flags) & _POST)
        if s.pending_id is None:
            return R.PENDING_ID_MUST_BE_SET, None
        if s.pending_id == s.id:
            return R.PENDING_ID_MUST_BE_DIFFERENT, None
        if s.timeout:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, None
        if post and s.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE, None
        p = staged.get(s.pending_id) or self.transfers.get(s.pending_id)
        if p is None:
            return R.PENDING_TRANSFER_NOT_FOUND, None
        p_debit, p_credit, p_amount = (
            _get(p, "debit_account_id"),
            _get(p, "credit_account_id"),
            _get(p, "amount"),
        )
        if not int(_get(p, "flags")) & _PENDING:
            return R.PENDING_TRANSFER_NOT_PENDING, None
        if (s.debit_account_id not in (None, p_debit)) or (s.credit_account_id not in (None, p_credit)):
            return R.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS, None
        if s.amount > p_amount:
            return R.EXCEEDS_PENDING_TRANSFER_AMOUNT, None
        if not post and s.amount not in (0, p_amount):
            return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, None
        expires = _get(p, "expires_at")
        resolution = self.resolved.get(s.pending_id)
        if resolution is not None:
            flags, resolved_at = resolution
            if int(flags) & _POST:
                return R.PENDING_TRANSFER_ALREADY_POSTED, None
            if expires is not None and resolved_at >= expires:
                return R.PENDING_TRANSFER_EXPIRED, None  # voided by the expiry job
            return R.PENDING_TRANSFER_ALREADY_VOIDED, None
        if expires is not None and self.now >= expires and (post or not self.expiry):
            return R.PENDING_TRANSFER_EXPIRED, None
        d, c = bal.get(p_debit), bal.get(p_credit)
        amount = s.amount if post else p_amount
        # A hold was refused if posting it could overflow; this guards holds from before that.
        if post and d[1] + amount > INT64_MAX:
            return R.OVERFLOWS_DEBITS_POSTED, None
        if post and c[3] + amount > INT64_MAX:
            return R.OVERFLOWS_CREDITS_POSTED, None
        d[0] -= p_amount
        c[2] -= p_amount
        if post:
            d[1] += amount
            c[3] += amount
        return R.OK, self._row(s, p_debit, p_credit, amount, None)

    def _row(self, s: TransferSpec, debit: int, credit: int, amount: int, expires) -> dict:
        return dict(
            id=s.id,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            pending_id=s.pending_id,
            code=s.code,
            flags=int(s.flags),
            timeout=s.timeout,
            expires_at=expires,
            created_at=self.now,
            user_data=s.user_data,
        )

    # -- chains -------------------------------------------------------------------------

    def run(self) -> list[R]:
        results: list[R] = []
        specs = self.specs
        i = 0
        while i < len(specs):
            j = i
            while j < len(specs) - 1 and int(specs[j].flags) & _LINKED:
                j += 1
            chain = specs[i : j + 1]
            open_chain = bool(int(chain[-1].flags) & _LINKED)
            results.extend(self._run_chain(chain, open_chain))
            if self.snapshots is not None:
                # What each touched account can spend right after this chain, for receipts.
                touched = self.balances.fork()
                for account_id in {a for s in chain for a in (s.debit_account_id, s.credit_account_id)}:
                    # A late account's figures are an unlocked read (``Locked``): not shown.
                    if account_id in self.flags and account_id not in self.locked.late:
                        dp, dpo, _, cpo = touched.get(account_id)
                        self.snapshots.setdefault(i, {})[account_id] = cpo - dpo - dp
            i = j + 1
        return results

    def _run_chain(self, chain: Sequence[TransferSpec], open_chain: bool) -> list[R]:
        bal = self.balances.fork()
        staged: dict[str, dict] = {}
        outcomes: list[R] = []
        failed_at = None
        for k, s in enumerate(chain):
            result, row = self._check(s, bal, staged)
            outcomes.append(result)
            if row is not None:
                staged[s.id] = row
            if result != R.OK:  # EXISTS too, as in TigerBeetle (docs/ledger.md: retries)
                failed_at = k
                break
        if failed_at is None and open_chain:
            failed_at = len(chain) - 1
        if failed_at is None:
            bal.merge()
            for row in staged.values():
                self.new_transfers.append(row)
                self.transfers[row["id"]] = row
                if row["pending_id"] is not None:
                    self.resolved[row["pending_id"]] = (row["flags"], row["created_at"])
            return outcomes

        final: list[R] = []
        for k, s in enumerate(chain):
            if open_chain and k == len(chain) - 1:
                result = R.LINKED_EVENT_CHAIN_OPEN  # whatever failed before it
            elif k == failed_at:
                result = outcomes[k]
            else:
                result = R.LINKED_EVENT_FAILED
            final.append(result)
            self._remember_rejection(s, result)
        return final

    def _remember_rejection(self, s: TransferSpec, result: R) -> None:
        if result in (R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_MUST_NOT_BE_EMPTY, R.ID_TOO_LONG):
            return
        if s.id in self.rejected or s.id in self.transfers:
            return  # a repeat: the first outcome is already on record
        if not storable(s):
            return  # fields no column can hold: nothing to record, a retry is judged afresh
        row = RejectedTransfer(
            id=s.id,
            debit_account_id=s.debit_account_id,
            credit_account_id=s.credit_account_id,
            amount=s.amount,
            pending_id=s.pending_id,
            code=s.code,
            flags=int(s.flags),
            timeout=s.timeout,
            result=result.value,
            created_at=self.now,
            user_data=s.user_data,
        )
        self.rejected[s.id] = row
        self.new_rejections.append({c: getattr(row, c) for c in RejectedTransfer.__table__.columns.keys()})

    def write(self) -> None:
        insert_rows(self.session, Transfer.__table__, self.new_transfers)
        insert_rows(self.session, RejectedTransfer.__table__, self.new_rejections)
        changed = self.balances.changed
        late = {a: v for a, v in changed.items() if a in self.locked.late}
        changed = {a: v for a, v in changed.items() if a not in late}
        for account_id, values in late.items():  # posted columns only (Locked.late says why)
            base = self.locked.balances[account_id]
            self.locked.increments[account_id] = [
                n - b + i
                for n, b, i in zip(values, base, self.locked.increments.get(account_id, [0] * 4), strict=True)
            ]
        if changed:
            update_rows(
                self.session,
                Account.__table__,
                "id",
                [
                    {"id": account_id, **dict(zip(BALANCE_FIELDS, values, strict=True))}
                    for account_id, values in changed.items()
                ],
            )
            # Account objects this session already holds are now stale: reload on next use.
            _expire(self.session, changed)
        self.locked.balances.update({a: list(v) for a, v in changed.items()})


def _expire(session, account_ids) -> None:
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Account) and obj.id in account_ids:
            session.expire(obj, BALANCE_FIELDS)


def storable(s: TransferSpec) -> bool:
    """Whether the columns of ``rejected_transfers`` can hold this transfer's fields."""
    texts = ((s.id, ID_LENGTH), (s.pending_id, ID_LENGTH), (s.code, CODE_LENGTH), (s.user_data, ID_LENGTH))
    return (
        -INT64_MAX <= s.amount <= INT64_MAX
        and -INT32_MAX <= s.timeout <= INT32_MAX
        and all(value is None or len(value) <= limit for value, limit in texts)
    )


def create_transfers(
    session,
    specs: Sequence[TransferSpec],
    now: int | None = None,
    snapshots: dict | None = None,
    *,
    expiry: bool = False,
    locked: "Locked | None" = None,
) -> list[R]:
    """Create a batch of transfers in the caller's database transaction; one result each.

    ``now`` (µs, database clock) is for tests that move the clock; by default the database's.
    ``snapshots``, if given, is filled with {index of a chain's first transfer: {account id:
    available balance right after that chain}} so receipts can show each one's new balance.
    ``expiry``: the batch is the expiry job's voids of holds past their timeout, the only
    transfers that may resolve an expired hold (``ledger.expiry``).
    ``locked``: the batch's accounts, already locked and read by ``lock_accounts`` (the caller
    read them for its own checks under the same locks); it must cover every account of
    ``specs``. Its late accounts' postings wait for ``Locked.apply_late``.
    """
    if not specs:
        return []
    now = db_clock_us(session) if now is None else now
    batch = _Batch(session, specs, now, snapshots, expiry, locked)
    results = batch.run()
    batch.write()
    return results
