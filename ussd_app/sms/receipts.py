"""Receipts: who gets which SMS for a request the worker executed, written to the outbox in
the batch's transaction (the text of each is ``messages/receipts.py``'s).

One receipt per registered party of a posted request (the payer's says what is left of today's
limit), except a small tip's (``payments/tips.py``: none); the invitation to an unregistered
number money was sent to; the payer's failure when the ledger refused (the payee never hears
of a refused request, except for the kinds whose row in ``payments/kinds.py`` says the payee
hears it). A refusal by the limits is ``sms/limit_receipts.py``'s.
"""

from .. import limits
from ..ledger import Account, TransferResult
from ..messages import receipts as texts
from ..messages import refusals
from ..payments import kinds
from ..payments.models import RequestKind
from ..payments.tips import silent
from ..users import HolderRow, Role, User, holder_rows
from .outbox import add_sms


class People:
    """The registered holders of the accounts in a batch, looked up in one query, and what
    each payer had already sent today before the batch (one more query, which also reads the
    holders' tiers and operators' locks again: ``read_spent``). The holders are
    ``users.HolderRow``s: everything here only reads them."""

    def __init__(self, session, requests, now=None, *, spent=True):
        ids = {r.debit_account_id for r in requests} | {r.credit_account_id for r in requests}
        self.by_account = holder_rows(session, ids)
        self._session = session
        self._requests = requests
        self._spent: dict[int, int] = {}
        # {account id: available balance right after the request being written}, set by the
        # caller from the ledger's snapshots, so each receipt shows its own new balance.
        self.balances_after: dict[int, int] = {}
        # The ledger's ``Locked`` of the batch, if the caller has it: the balances it wrote.
        self._locked = None
        # True once ``read_spent`` has read the tiers and operators' locks again (for the worker:
        # under the batch's account locks); ``limits.check_batch`` relies on it.
        self.current = False
        if spent:
            self.read_spent(session, now)

    def read_spent(self, session, now=None, locked=None) -> None:
        """What each payer had sent today, and every holder's tier and operator's lock as they
        are now, in one statement (``limits.holders_now``). The worker reads the holders before
        it locks the batch's accounts (their names and languages: no account lock guards a
        user's row, and that read stays out of the time a busy wallet is held) and this under
        the locks, so a tier lowered or raised, or an operator's lock, committed while the
        batch waited for a busy wallet applies to the whole batch: its limits, and what the
        payer's receipt says is left today. The spending is read before the batch's statuses
        change, then kept current as receipts are written, so two sends in one batch each
        report what was left after them; the limit check uses it too (``spent_before``).
        ``locked``: the ledger's ``Locked`` of the batch."""
        payers = {r.debit_account_id for r in self._requests if r.debit_account_id in self.by_account}
        holders, spent = limits.holders_now(session, self.by_account, payers, now)
        for account_id, (tier, locked_until) in holders.items():
            holder = self.by_account[account_id]
            holder.tier, holder.locked_until = tier, locked_until
        self._spent = dict.fromkeys(payers, 0) | spent
        self._locked = locked
        self.current = True

    def restart_day(self, session, now) -> None:
        """Read again what each payer sent on ``now``'s day (before the batch), for receipts
        of a batch executed after the local midnight that followed its limit check."""
        self._spent = limits.spent_today(session, list(self._spent), now)

    def spent_before(self, account_ids) -> dict[int, int]:
        """{payer: posted amount + fee today before the batch} for ``account_ids``, holders'
        accounts of this batch's payers (``limits.spent_today``'s figures, read once)."""
        return {a: self._spent[a] for a in account_ids}

    def get(self, account_id: int) -> HolderRow | None:
        return self.by_account.get(account_id)

    def balance(self, user: HolderRow) -> int:
        """``user``'s available balance right after the request, else as it stands now."""
        if user.account_id in self.balances_after:
            return self.balances_after[user.account_id]
        if self._locked is not None and (available := self._locked.available(user.account_id)) is not None:
            return available  # as the ledger left it: what the row says now
        return self._session.get(Account, user.account_id).available

    def spend(self, request) -> int:
        """Count ``request`` (just posted) against its payer's day; what is left, minor units."""
        spent = self._spent.get(request.debit_account_id, 0)
        if request.kind in kinds.COUNTED_KINDS:
            spent += request.amount + request.fee
        self._spent[request.debit_account_id] = spent
        payer = self.get(request.debit_account_id)
        return max(0, limits.daily_limit(payer.tier if payer is not None else None) - spent)


def payee_party(user: User) -> str:
    return {Role.MERCHANT.value: "merchant", Role.AGENT.value: "agent"}.get(user.role, "recipient")


def write(session, user: User, body: str | None, request) -> None:
    """``body`` (None: nothing) to ``user``, about ``request``, in the caller's transaction."""
    if body is not None:
        add_sms(session, phone=user.phone, body=body, transfer_request_id=request.id)


def write_posted(session, request, people: People) -> None:
    """One receipt per registered party of a posted request; none for a kind told by its own
    flow (``told_by_its_flow``) nor for a small tip (its kind's ``silent_up_to``:
    payments/tips.py), which still count against the payer's day. No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    # A kind whose own module tells people (allowances: one SMS per settlement), or a small tip
    # (payments/tips.py): no receipt, but still counted against the payer's day.
    if kinds.spec(request.kind).told_by_its_flow or silent(request.kind, request.amount):
        if payer is not None:
            people.spend(request)  # the next receipt in the batch says what is left today
        return
    # The request's facts: the same in both receipts, read and copied once.
    known = texts.facts(request) if payer is not None or payee is not None else None
    if payer is not None:
        left = people.spend(request)
        body = texts.posted(
            request, "sender", payer, payee, known=known, balance=people.balance(payer), left_today=left
        )
        write(session, payer, body, request)
    if kinds.spec(request.kind).invites and payer is not None and request.reference:
        # The recipient is not on Tuma: no wallet, no language; tell them how to collect it.
        add_sms(
            session,
            phone=request.reference,
            body=texts.invite(request, payer),
            transfer_request_id=request.id,
        )
    if payee is not None:
        body = texts.posted(
            request, payee_party(payee), payee, payer, known=known, balance=people.balance(payee)
        )
        write(session, payee, body, request)


def write_rejected(session, request, result: TransferResult, people: People) -> None:
    """The payer's failure message (the payee never hears of a refused request). No commit."""
    payer, payee = people.get(request.debit_account_id), people.get(request.credit_account_id)
    if kinds.spec(request.kind).failure_to == kinds.Side.PAYEE:
        payer, payee = payee, payer
    row = kinds.spec(request.kind)
    if payer is None or row.payer_is_api or row.told_by_its_flow:  # the API, or its flow, says it
        return  # e.g. an operator's float issue: the operator sees the result on the CLI
    write(session, payer, texts.failed(request, payer, payee, result.value, people.balance(payer)), request)
    if request.kind == RequestKind.WITHDRAWAL.value and payee is not None:
        # The agent at the counter pays out only after an SMS: tell him none is coming.
        write(session, payee, refusals.not_made_agent(request, payee, payer), request)
    elif request.kind == RequestKind.DEPOSIT.value and payee is not None:
        # The customer at the counter has handed over cash: tell her it was not deposited.
        write(session, payee, refusals.deposit_not_made(request, payee, payer), request)
