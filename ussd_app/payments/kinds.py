"""The one table of kinds: what each kind of transfer request does, one row per kind.

Every module that treats kinds differently reads it here: the legs a request posts
(``legs.py``), how a hold resolves and what it becomes when it falls due (``holds.py``), the
daily and balance limits (``limits.py``), the built-in tariff (``tariffs.py``) and who hears
which receipt (``sms/receipts.py``). Adding a kind is one row here plus its message templates
(an entry in ``messages/receipts.py: RECEIPTS``, its Kiswahili in the sms catalogue) and, if it
has a fee, its bands in the tariff; if merchants' systems should hear of it, its ``events``.

Phases, in the ledger's words: a ``single`` request posts at once; a ``pending`` one holds the
money (its main leg is a PENDING transfer); a ``post`` or ``void`` request resolves the hold of
the kind it ``resolves`` (named by ``pending_request_id``). Each pending kind has exactly one
posting and one voiding kind (tests/test_kinds.py holds the table against the legs).

The stored values (``transfer_requests.kind``) are the ``RequestKind`` values; the derived sets
below hold those strings, so they compare with a stored kind as they are.
"""

import enum
from dataclasses import dataclass

from .models import RequestKind


class Phase(enum.StrEnum):
    SINGLE = "single"  # one posted transfer (with its fee, commission and payee-fee legs)
    PENDING = "pending"  # a hold: the main leg is a PENDING transfer
    POST = "post"  # posts the hold it resolves (all of it, or what fits: ``posts_what_fits``)
    VOID = "void"  # voids the hold it resolves: the money goes back to the hold's payer


class Side(enum.StrEnum):
    PAYER = "payer"  # the request's debit account
    PAYEE = "payee"  # its credit account


@dataclass(frozen=True)
class Events:
    """The webhook events (``ussd_app/events``) a kind's outcome sends to a merchant's system:
    the event type when the request posts, and when it is refused (None: no event), and which
    side of the request is the merchant whose endpoint hears of it. The other side is the
    counterparty the event names (masked): the payer of a payment, the recipient of a payout."""

    posted: str | None = None
    failed: str | None = None
    merchant: Side = Side.PAYEE
    # What the event calls the request's ``reference``: a payment's own reference, or for an
    # allowance's settlement (whose reference is the allowance's id) ``allowance``.
    reference_as: str = "reference"


PAYMENT_RECEIVED = Events(posted="payment.received")


@dataclass(frozen=True)
class KindSpec:
    kind: RequestKind
    phase: Phase
    # For a post or void: the pending kind whose hold it resolves.
    resolves: RequestKind | None = None
    # Spends from the payer's daily limit and counts for the velocity rules (amount + fee).
    # A hold counts when it is made; its post or void is not counted again.
    counted: bool = False
    # Posts money into the payee's account, so the payee's balance limit applies (when the
    # payee is a customer). A hold is not a credit (it is credited when posted), nor is a void
    # (it only gives back what was held from the payer).
    credits_payee: bool = False
    # A post that, when the payee's balance limit has room for only part of the hold, posts
    # that part and sends the rest back to the payer (none: the hold is voided). A hold must
    # resolve, so it cannot simply be refused.
    posts_what_fits: bool = False
    # Free for the payer in the built-in tariff (no bands).
    free: bool = False
    # In the built-in tariff the payee (a merchant) pays a capped percentage.
    payee_pays: bool = False
    # For a pending kind: the setting holding how long it is held (seconds), and whether it is
    # posted or voided when it falls due (None: it never falls due; something else resolves it).
    hold_setting: str | None = None
    on_due: Phase | None = None
    # For a post: the hold was to suspense, and the post pays it on to the account named when
    # it is posted (the newly registered customer), in the same chain.
    pays_on: bool = False
    # For a post: charges the payee's fee quoted with the hold (the merchant of a protected
    # purchase pays it when the money is theirs).
    payee_fee_on_post: bool = False
    # The entry of ``messages.receipts.RECEIPTS`` with this kind's templates, one per party that
    # hears of it ("" means the kind's own value).
    receipts: str = ""
    # The sender's receipt may take two SMS segments (306 characters); every other SMS fits one.
    two_segments: bool = False
    # Who is told when the ledger refuses the request: the payer, or for a hold the payee asked
    # for (a reversal) the payee. (A limit's refusal is told to the payer: sms/limit_receipts.py.)
    failure_to: Side = Side.PAYER
    # The payer's receipt is followed by an invitation to the unregistered number in
    # ``reference`` (its language unknown: English).
    invites: bool = False
    # The payee waits at an agent's counter: a refusal by their balance limit is told to them too.
    payee_told_of_balance_refusal: bool = False
    # The payer is a business's own system (the merchant API): it learns every outcome from the
    # API (and its webhooks), never by one SMS per request, so it gets no receipt nor refusal SMS.
    payer_is_api: bool = False
    # The webhook events its outcome emits (``Events``); None: merchants' systems never hear of it.
    events: Events | None = None
    # The setting (major units) up to which a posted request sends no receipt to either party
    # (a tip: an SMS costs more than the tip; the payer reads the code on the END screen and in
    # the statement, the payee a daily digest). A refusal is still told. None: always receipts.
    silent_up_to: str | None = None
    # The module that made the request tells people itself, so ``sms/`` writes no receipt,
    # failure or limit SMS for it (allowances: one SMS per settlement, never one per hold).
    told_by_its_flow: bool = False

    def __post_init__(self):
        if not self.receipts:
            object.__setattr__(self, "receipts", self.kind.value)


K, P = RequestKind, Phase
ROWS: tuple[KindSpec, ...] = (
    KindSpec(K.SEND, P.SINGLE, counted=True, credits_payee=True, two_segments=True),
    KindSpec(K.FLOAT_ISSUE, P.SINGLE, credits_payee=True, free=True),  # trust deposit -> e-float
    KindSpec(
        K.DEPOSIT,  # cash-in: an agent's e-float to a customer
        P.SINGLE,
        credits_payee=True,
        free=True,
        two_segments=True,
        payee_told_of_balance_refusal=True,
    ),
    KindSpec(K.WITHDRAWAL, P.SINGLE, counted=True, credits_payee=True, two_segments=True),
    KindSpec(
        K.BUY_GOODS,
        P.SINGLE,
        counted=True,
        credits_payee=True,
        free=True,
        payee_pays=True,
        two_segments=True,
        events=PAYMENT_RECEIVED,
    ),
    KindSpec(
        K.PAY_BILL,
        P.SINGLE,
        counted=True,
        credits_payee=True,
        free=True,
        payee_pays=True,
        two_segments=True,
        events=PAYMENT_RECEIVED,
    ),
    # Customer -> a creator or cause (payments/tips.py): an ordinary transfer, priced like a send
    # (free up to the free band), silent up to TIP_SILENT_MAX_MAJOR.
    KindSpec(
        K.TIP,
        P.SINGLE,
        counted=True,
        credits_payee=True,
        two_segments=True,
        silent_up_to="TIP_SILENT_MAX_MAJOR",
    ),
    # Sender -> suspense, for a number not on Tuma yet: paid on when it registers, else back.
    KindSpec(
        K.SEND_UNREGISTERED,
        P.PENDING,
        counted=True,
        hold_setting="SUSPENSE_HOLD_SECONDS",
        on_due=P.VOID,
        two_segments=True,
        invites=True,
    ),
    KindSpec(
        K.SUSPENSE_POST,
        P.POST,
        resolves=K.SEND_UNREGISTERED,
        credits_payee=True,
        posts_what_fits=True,
        pays_on=True,
    ),
    KindSpec(K.SUSPENSE_VOID, P.VOID, resolves=K.SEND_UNREGISTERED),
    # Buyer -> merchant, held until delivery is confirmed (or it falls due: the merchant is paid).
    KindSpec(
        K.PROTECTED_PURCHASE,
        P.PENDING,
        counted=True,
        hold_setting="PROTECTED_HOLD_SECONDS",
        on_due=P.POST,
        two_segments=True,
    ),
    KindSpec(
        K.PROTECTED_POST,
        P.POST,
        resolves=K.PROTECTED_PURCHASE,
        credits_payee=True,
        posts_what_fits=True,
        payee_fee_on_post=True,
        events=PAYMENT_RECEIVED,  # the money is the merchant's now (a hold is not a payment)
    ),
    KindSpec(K.PROTECTED_VOID, P.VOID, resolves=K.PROTECTED_PURCHASE),  # a dispute decided for the buyer
    # The recipient of a wrong send -> its sender, held until the recipient or the operator
    # decides (falling due: the recipient keeps the money). The sender asked for it.
    KindSpec(
        K.REVERSAL, P.PENDING, hold_setting="REVERSAL_HOLD_SECONDS", on_due=P.VOID, failure_to=Side.PAYEE
    ),
    KindSpec(K.REVERSAL_POST, P.POST, resolves=K.REVERSAL, credits_payee=True, posts_what_fits=True),
    KindSpec(K.REVERSAL_VOID, P.VOID, resolves=K.REVERSAL),
    # Customer -> airtime clearing, held while Africa's Talking sends it; its answer resolves it.
    KindSpec(K.AIRTIME, P.PENDING, counted=True),
    KindSpec(K.AIRTIME_POST, P.POST, resolves=K.AIRTIME, credits_payee=True, two_segments=True),
    KindSpec(K.AIRTIME_VOID, P.VOID, resolves=K.AIRTIME),
    # The merchant API (ussd_app/api). A payout is not counted against a customer's daily
    # limit (its payer is a business); the customer's balance limit applies as to any credit.
    KindSpec(
        K.PAYOUT,
        P.SINGLE,
        credits_payee=True,
        payer_is_api=True,
        events=Events(posted="payout.posted", failed="payout.failed", merchant=Side.PAYER),
    ),
    # A refund's ``reference`` is the code of the payment it gives back; payments/refunds.py
    # checks, under the batch's locks, that no more is refunded than that payment brought in.
    KindSpec(
        K.REFUND,
        P.SINGLE,
        credits_payee=True,
        free=True,
        payer_is_api=True,
        events=Events(posted="refund.posted", failed="refund.failed", merchant=Side.PAYER),
    ),
    # Allowances (payments/allowances/): the period's limit held customer -> merchant, counted
    # against the customer's day when held; the merchant's charges are tab lines, no transfer.
    # The allowance's period end (or a settlement) resolves the hold, never a hold timeout.
    KindSpec(K.ALLOWANCE, P.PENDING, counted=True, free=True, told_by_its_flow=True),
    # One settlement: the tab's sum posted from the hold (the rest released), the merchant
    # paying the tariff's fee on it; one SMS to the customer from allowances.py.
    KindSpec(
        K.ALLOWANCE_POST,
        P.POST,
        resolves=K.ALLOWANCE,
        credits_payee=True,
        posts_what_fits=True,
        free=True,
        payee_pays=True,
        payee_fee_on_post=True,
        told_by_its_flow=True,
        events=Events(posted="allowance.settled", reference_as="allowance"),
    ),
    KindSpec(K.ALLOWANCE_VOID, P.VOID, resolves=K.ALLOWANCE, free=True, told_by_its_flow=True),
)
del K, P

KINDS: dict[RequestKind, KindSpec] = {row.kind: row for row in ROWS}


def spec(kind: str) -> KindSpec:
    """The row of ``kind`` (a RequestKind or its stored value); KeyError for an unknown kind."""
    return KINDS[kind]


def resolution(hold_kind: str, phase: Phase) -> RequestKind:
    """The kind that posts (``Phase.POST``) or voids (``Phase.VOID``) a hold of ``hold_kind``."""
    for row in ROWS:
        if row.resolves == hold_kind and row.phase == phase:
            return row.kind
    raise KeyError(f"no {phase} kind resolves {hold_kind}")


def on_due(hold_kind: str) -> RequestKind:
    """What a hold of ``hold_kind`` becomes when it falls due; KeyError if it never does."""
    phase = spec(hold_kind).on_due
    if phase is None:
        raise KeyError(f"{hold_kind} never falls due")
    return resolution(hold_kind, phase)


def _values(test) -> frozenset[str]:
    return frozenset(row.kind.value for row in ROWS if test(row))


HOLD_KINDS = _values(lambda row: row.phase == Phase.PENDING)
POSTING_KINDS = _values(lambda row: row.phase == Phase.POST)
# Kinds whose request takes amount + fee from its debit account when executed (posted, or held).
# A post or void of a hold takes nothing more: the hold is in debits_pending already, and a
# void's debit account is the hold's payee (submit.spendable_statement).
DEBITS_PAYER_KINDS = _values(lambda row: row.phase in (Phase.SINGLE, Phase.PENDING))
VOIDING_KINDS = _values(lambda row: row.phase == Phase.VOID)
COUNTED_KINDS = _values(lambda row: row.counted)
# Refused to an agent or merchant an operator has locked (limits.check_batch: ``payee_locked``):
# every counted payment, and an allowance's settlement (its hold was counted when made; the
# settlement is what pays the merchant, so it waits, held, until the lock is lifted).
PAYS_A_BUSINESS = COUNTED_KINDS | {RequestKind.ALLOWANCE_POST.value}
CREDITED_KINDS = _values(lambda row: row.credits_payee)
POSTS_WHAT_FITS = _values(lambda row: row.posts_what_fits)
# Kinds whose outcome sends a webhook event (ussd_app/events/emit.py).
EVENT_KINDS = _values(lambda row: row.events is not None)
FREE_KINDS = _values(lambda row: row.free)
PAYEE_PAYS_KINDS = _values(lambda row: row.payee_pays)
API_PAYER_KINDS = _values(lambda row: row.payer_is_api)
# RECEIPTS entries whose sender's receipt may take two segments.
TWO_SEGMENTS = frozenset(row.receipts for row in ROWS if row.two_segments)
