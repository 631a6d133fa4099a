"""Allowances: a customer lets a merchant charge small sums, up to a limit a period, with the
PIN given once (issue 18; DESIGN.md "Small money").

```
approve (PIN, once)     customer --pending--> merchant       hold = what is left of the period
charge, charge, ...     tab lines, each checked against what is left and max_charge:
                        no ledger posting, no SMS, no PIN
settle                  ONE partial post of the hold = the tab's sum (the ledger releases the
                        rest; a tab of nothing voids the hold); ONE SMS to the customer and ONE
                        ``allowance.settled`` event to the merchant, never one per charge
next period             a new hold if the allowance goes on and the money is there, else
                        ``paused`` and the customer is told (tried again at the next period)
```

Vocabulary: a **charge** is one tab line (``AllowanceCharge``); the **tab** is the charges not
settled yet (``tab_amount``, ``tab_count``); a **settlement** is the one post (or void) of the
hold that turns a tab into money (``AllowanceSettlement``, keyed by that request's id).
``charged``/``charge_count`` count the whole period, so a merchant who settles mid-period
cannot charge more than the limit in that period: the next hold is what is left of it.

States (``State``), each moved only by compare-and-set (UPDATE ... WHERE state = <from>):

- ``awaiting_approval`` (the merchant asked through the API) -> ``approving`` (the customer
  approved with the PIN: the period's hold is recorded), ``declined``, ``expired``
  (``ALLOWANCE_ASK_SECONDS`` unanswered), ``cancelled``;
- ``approving`` (a hold is queued) -> ``active`` once the worker accepted it, ``paused`` if
  it was refused (no money, or over a limit);
- ``active`` (charges are taken) -> ``settling`` (a settlement's post is queued; the next hold
  follows once it is posted), ``cancelled``/``expired`` (settled for the last time);
- ``settling`` -> ``approving`` (the next hold recorded), or ``active`` without a hold when the
  period has nothing left (charges are then refused until the period ends);
- ``paused`` -> ``approving`` at the next period's start (tried again), ``cancelled``, ``expired``.

Racing charges: a charge locks the allowance's row (``FOR UPDATE``; SQLite's transactions
are ``BEGIN IMMEDIATE``), checks what is left, adds to the tab and inserts its tab line in the
same transaction: charges racing for the last shillings queue on that lock and never take
more than what is left. A settlement moves the row out of ``active`` in the same way, so a
charge is either in the settled tab or refused, never lost. A charge's id derives from the
caller's idempotency key: the same charge twice is one tab line.

Ids derive from the allowance's, so every step is safe twice: hold ``<id>.h<n>``, its
settlement ``<id>.h<n>.r`` (``holds.resolution_id``), whose transaction code is what the
customer's SMS quotes and what the receipt-check SMS verifies.

The worker executes the holds and settlements (``payments/execute.py``; the kinds table says
``sms/`` writes nothing for them) and then calls ``after_batch`` (after a batch that held one
of them: ``moved_by_any``); the maintenance job calls ``settle_due`` and ``after_batch``.
Nothing here commits.

| module | what |
| --- | --- |
| ``records.py`` | states, words, the tables, and the writers every part uses |
| ``customer.py`` | asking and deciding: ask, approve, start, decline, cancel; My approvals' reads |
| ``charges.py`` | charging: tab lines under the row lock |
| ``settlement.py`` | settling, the next period's hold, pauses: the worker's side |
"""

from .charges import charge, charge_many
from .customer import (
    approve,
    ask,
    asked_today,
    awaiting,
    cancel,
    decline,
    of_customer,
    owned,
    recent_charges,
    start,
)
from .records import (
    FINAL,
    LIVE,
    Allowance,
    AllowanceCharge,
    AllowanceError,
    AllowanceSettlement,
    ChargeOutcome,
    ConflictingAllowance,
    Period,
    Refusal,
    State,
    Why,
    hold_id,
    left,
    merchant_name,
    new_id,
    period_end,
)
from .settlement import after_batch, last_settlement, moved_by_any, settle, settle_due, settlements

__all__ = [
    "FINAL",
    "LIVE",
    "Allowance",
    "AllowanceCharge",
    "AllowanceError",
    "AllowanceSettlement",
    "ChargeOutcome",
    "ConflictingAllowance",
    "Period",
    "Refusal",
    "State",
    "Why",
    "after_batch",
    "approve",
    "ask",
    "asked_today",
    "awaiting",
    "cancel",
    "charge",
    "charge_many",
    "decline",
    "hold_id",
    "last_settlement",
    "left",
    "merchant_name",
    "moved_by_any",
    "new_id",
    "of_customer",
    "owned",
    "period_end",
    "recent_charges",
    "settle",
    "settle_due",
    "settlements",
    "start",
]
