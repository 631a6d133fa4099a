"""Creating transfers: the only code that changes account balances.

``create_transfers`` takes a batch, locks every account it touches in one fixed order (by
id, so two batches can never deadlock), applies the transfers in memory in batch order,
then writes the new transfers, the rejected ids and the new balances. It never commits: the
caller (a worker job) owns the database transaction and writes its outbox rows in it too.

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

from sqlalchemy import select

from ..database import among, db_clock_us, insert_rows, update_rows
from .models import CODE_LENGTH, ID_LENGTH, Account, AccountFlags, RejectedTransfer, Transfer, TransferFlags
from .results import TransferResult as R

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
_RESOLVING = TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER
_KIND_FLAGS = TransferFlags.PENDING | _RESOLVING


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
        void = bool(self.flags & TransferFlags.VOID_PENDING_TRANSFER)
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


class _Batch:
    def __init__(
        self, session, specs: Sequence[TransferSpec], now: int, snapshots: dict | None = None, expiry=False
    ):
        self.snapshots = snapshots
        self.expiry = expiry
        self.session = session
        self.specs = specs
        self.now = now
        ids = {s.id for s in specs if s.id}
        pending_ids = {s.pending_id for s in specs if s.pending_id}

        account_ids = {s.debit_account_id for s in specs} | {s.credit_account_id for s in specs}
        if pending_ids:
            for d, c in session.execute(
                select(Transfer.debit_account_id, Transfer.credit_account_id).where(
                    among(session, Transfer.id, pending_ids)
                )
            ):
                account_ids |= {d, c}
        account_ids.discard(None)
        # Lock in one fixed order; everything read after this sees the latest commits. FOR NO
        # KEY UPDATE (the lock PostgreSQL's own UPDATE of a balance takes) leaves alone the key
        # share locks that inserting a row naming an account takes: a transaction that records
        # a request and then posts it would otherwise deadlock with another doing the same.
        table = Account.__table__
        rows = session.execute(
            select(table.c.id, table.c.flags, *(table.c[f] for f in BALANCE_FIELDS))
            .where(among(session, table.c.id, account_ids))
            .order_by(table.c.id)
            .with_for_update(key_share=True)
        ).all()
        self.flags = {r[0]: r[1] for r in rows}
        self.balances = _Balances({r[0]: list(r[2:]) for r in rows})
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
        if bin(s.flags & _KIND_FLAGS).count("1") > 1:
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE, None
        if s.flags & _RESOLVING:
            return self._check_resolution(s, bal, staged)

        if s.debit_account_id == s.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT, None
        if s.pending_id is not None:
            return R.PENDING_ID_MUST_NOT_BE_SET, None
        pending = bool(s.flags & TransferFlags.PENDING)
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
        if (
            self.flags[s.debit_account_id] & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            and d[0] + d[1] + amount > d[3]
        ):
            return R.EXCEEDS_CREDITS, None
        if (
            self.flags[s.credit_account_id] & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
            and c[2] + c[3] + amount > c[1]
        ):
            return R.EXCEEDS_DEBITS, None
        slot_d, slot_c = (0, 2) if pending else (1, 3)
        d[slot_d] += amount
        c[slot_c] += amount
        return R.OK, self._row(s, s.debit_account_id, s.credit_account_id, amount, expires)

    def _check_resolution(self, s: TransferSpec, bal: _Balances, staged: dict):
        post = bool(s.flags & TransferFlags.POST_PENDING_TRANSFER)
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
        if not _get(p, "flags") & TransferFlags.PENDING:
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
            if flags & TransferFlags.POST_PENDING_TRANSFER:
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
            while j < len(specs) - 1 and specs[j].flags & TransferFlags.LINKED:
                j += 1
            chain = specs[i : j + 1]
            open_chain = bool(chain[-1].flags & TransferFlags.LINKED)
            results.extend(self._run_chain(chain, open_chain))
            if self.snapshots is not None:
                # What each touched account can spend right after this chain, for receipts.
                touched = self.balances.fork()
                for account_id in {a for s in chain for a in (s.debit_account_id, s.credit_account_id)}:
                    if account_id in self.flags:
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
            for obj in list(self.session.identity_map.values()):
                if isinstance(obj, Account) and obj.id in changed:
                    self.session.expire(obj, BALANCE_FIELDS)


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
) -> list[R]:
    """Create a batch of transfers in the caller's database transaction; one result each.

    ``now`` (µs, database clock) is for tests that move the clock; by default the database's.
    ``snapshots``, if given, is filled with {index of a chain's first transfer: {account id:
    available balance right after that chain}} so receipts can show each one's new balance.
    ``expiry``: the batch is the expiry job's voids of holds past their timeout, the only
    transfers that may resolve an expired hold (``ledger.expiry``).
    """
    if not specs:
        return []
    batch = _Batch(session, specs, db_clock_us(session) if now is None else now, snapshots, expiry)
    results = batch.run()
    batch.write()
    return results
