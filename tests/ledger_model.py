"""A small pure-Python reference model of the ledger's rules, for the property test.

Written from the rules in ussd_app/ledger/engine.py's docstring, not from its code: one
transfer at a time, plain dicts, no batching, no database. If the engine and this model
disagree, one of them is wrong.
"""

from dataclasses import dataclass, field

from ussd_app.ledger import AccountFlags
from ussd_app.ledger import TransferFlags as F
from ussd_app.ledger import TransferResult as R

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


@dataclass
class ModelAccount:
    flags: int
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0

    def as_tuple(self):
        return (self.dp, self.dpo, self.cp, self.cpo)


@dataclass
class Model:
    accounts: dict = field(default_factory=dict)
    transfers: dict = field(default_factory=dict)  # id -> (spec, stored amount, expires_at)
    rejected: dict = field(default_factory=dict)  # id -> (spec, result)
    resolved: dict = field(default_factory=dict)  # pending id -> (flags, time) of the resolution

    @staticmethod
    def same(spec, stored_spec, stored_amount) -> bool:
        void = bool(spec.flags & F.VOID_PENDING_TRANSFER)
        return (
            spec.debit_account_id in (None, stored_spec.debit_account_id)
            and spec.credit_account_id in (None, stored_spec.credit_account_id)
            and (spec.amount == stored_amount or (void and spec.amount == 0))
            and (spec.code, spec.pending_id, spec.timeout, int(spec.flags), spec.user_data)
            == (
                stored_spec.code,
                stored_spec.pending_id,
                stored_spec.timeout,
                int(stored_spec.flags),
                stored_spec.user_data,
            )
        )

    def _one(self, s, accounts, transfers, resolved, now, expiry):
        """Check ``s`` and apply it to the given (scratch) state; return (result, record)."""
        if not s.id:
            return R.ID_MUST_NOT_BE_EMPTY, None
        if s.id in transfers:
            stored_spec, amount, _ = transfers[s.id]
            return (R.EXISTS if self.same(s, stored_spec, amount) else R.EXISTS_WITH_DIFFERENT_FIELDS), None
        if s.id in self.rejected:
            stored_spec, result = self.rejected[s.id]
            return (
                result if self.same(s, stored_spec, stored_spec.amount) else R.EXISTS_WITH_DIFFERENT_FIELDS
            ), None
        kinds = [f for f in (F.PENDING, F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER) if s.flags & f]
        if len(kinds) > 1:
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE, None
        if kinds and kinds[0] != F.PENDING:
            post = kinds[0] == F.POST_PENDING_TRANSFER
            if s.pending_id is None:
                return R.PENDING_ID_MUST_BE_SET, None
            if s.pending_id == s.id:
                return R.PENDING_ID_MUST_BE_DIFFERENT, None
            if s.timeout:
                return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, None
            if post and s.amount <= 0:
                return R.AMOUNT_MUST_BE_POSITIVE, None
            if s.pending_id not in transfers:
                return R.PENDING_TRANSFER_NOT_FOUND, None
            p, p_amount, p_expires = transfers[s.pending_id]
            if not p.flags & F.PENDING:
                return R.PENDING_TRANSFER_NOT_PENDING, None
            if s.debit_account_id not in (None, p.debit_account_id) or s.credit_account_id not in (
                None,
                p.credit_account_id,
            ):
                return R.PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS, None
            if s.amount > p_amount:
                return R.EXCEEDS_PENDING_TRANSFER_AMOUNT, None
            if not post and s.amount not in (0, p_amount):
                return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT, None
            if s.pending_id in resolved:
                flags, at = resolved[s.pending_id]
                if flags & F.POST_PENDING_TRANSFER:
                    return R.PENDING_TRANSFER_ALREADY_POSTED, None
                if p_expires is not None and at >= p_expires:
                    return R.PENDING_TRANSFER_EXPIRED, None
                return R.PENDING_TRANSFER_ALREADY_VOIDED, None
            if p_expires is not None and now >= p_expires and (post or not expiry):
                return R.PENDING_TRANSFER_EXPIRED, None
            d, c = accounts[p.debit_account_id], accounts[p.credit_account_id]
            amount = s.amount if post else p_amount
            d.dp -= p_amount
            c.cp -= p_amount
            if post:
                d.dpo += amount
                c.cpo += amount
            return R.OK, (s, amount, None)

        if s.debit_account_id == s.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT, None
        if s.pending_id is not None:
            return R.PENDING_ID_MUST_NOT_BE_SET, None
        pending = bool(s.flags & F.PENDING)
        if (s.timeout and not pending) or s.timeout < 0:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER, None
        if s.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE, None
        if s.debit_account_id not in accounts:
            return R.DEBIT_ACCOUNT_NOT_FOUND, None
        if s.credit_account_id not in accounts:
            return R.CREDIT_ACCOUNT_NOT_FOUND, None
        d, c = accounts[s.debit_account_id], accounts[s.credit_account_id]
        for fits, result in (
            (not pending or d.dp + s.amount <= INT64_MAX, R.OVERFLOWS_DEBITS_PENDING),
            (not pending or c.cp + s.amount <= INT64_MAX, R.OVERFLOWS_CREDITS_PENDING),
            (d.dpo + s.amount <= INT64_MAX, R.OVERFLOWS_DEBITS_POSTED),
            (c.cpo + s.amount <= INT64_MAX, R.OVERFLOWS_CREDITS_POSTED),
            (d.dp + d.dpo + s.amount <= INT64_MAX, R.OVERFLOWS_DEBITS),
            (c.cp + c.cpo + s.amount <= INT64_MAX, R.OVERFLOWS_CREDITS),
            (s.timeout <= INT32_MAX and now + s.timeout * 1_000_000 <= INT64_MAX, R.OVERFLOWS_TIMEOUT),
        ):
            if not fits:
                return result, None
        if d.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and d.dp + d.dpo + s.amount > d.cpo:
            return R.EXCEEDS_CREDITS, None
        if c.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and c.cp + c.cpo + s.amount > c.dpo:
            return R.EXCEEDS_DEBITS, None
        if pending:
            d.dp += s.amount
            c.cp += s.amount
            expires = now + s.timeout * 1_000_000 if s.timeout else None
        else:
            d.dpo += s.amount
            c.cpo += s.amount
            expires = None
        return R.OK, (s, s.amount, expires)

    def create(self, specs, now, expiry=False) -> list:
        """``expiry``: these are the expiry job's voids (the only resolutions of an expired hold)."""
        results = []
        i = 0
        while i < len(specs):
            j = i
            while j < len(specs) - 1 and specs[j].flags & F.LINKED:
                j += 1
            results += self._chain(specs[i : j + 1], now, expiry)
            i = j + 1
        return results

    def _chain(self, chain, now, expiry):
        import copy

        accounts = copy.deepcopy(self.accounts)
        transfers = dict(self.transfers)
        resolved = dict(self.resolved)
        open_chain = bool(chain[-1].flags & F.LINKED)
        outcomes = []
        failed_at = None
        for k, s in enumerate(chain):
            result, record = self._one(s, accounts, transfers, resolved, now, expiry)
            outcomes.append(result)
            if record is not None:
                transfers[s.id] = record
                if s.pending_id is not None:
                    resolved[s.pending_id] = (int(s.flags), now)
            if result != R.OK:  # any result but ok fails the chain, exists included
                failed_at = k
                break
        if failed_at is None and open_chain:
            failed_at = len(chain) - 1
        if failed_at is None:
            self.accounts, self.transfers, self.resolved = accounts, transfers, resolved
            return outcomes
        final = []
        for k, s in enumerate(chain):
            if open_chain and k == len(chain) - 1:
                result = R.LINKED_EVENT_CHAIN_OPEN
            elif k == failed_at:
                result = outcomes[k]
            else:
                result = R.LINKED_EVENT_FAILED
            final.append(result)
            if (
                result not in (R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_MUST_NOT_BE_EMPTY)
                and s.id not in self.rejected
                and s.id not in self.transfers
                and -INT64_MAX <= s.amount <= INT64_MAX  # what a column can hold is recorded
                and -INT32_MAX <= s.timeout <= INT32_MAX
            ):
                self.rejected[s.id] = (s, result)
        return final

    def expired_holds(self, now):
        return sorted(
            (
                tid
                for tid, (s, _, exp) in self.transfers.items()
                if s.flags & F.PENDING and exp is not None and exp <= now and tid not in self.resolved
            ),
            key=lambda tid: (self.transfers[tid][2], tid),
        )
