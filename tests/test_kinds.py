"""The table of kinds (ussd_app/payments/kinds.py) names every kind of transfer request once,
and what it says of each kind is what that kind's legs do in the ledger."""

from collections import Counter

import pytest

from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, TransferFlags, house_account
from ussd_app.payments import kinds
from ussd_app.payments.kinds import Phase
from ussd_app.payments.models import RequestKind, TransferRequest
from ussd_app.payments.submit import mint_request_id

PAYER, PAYEE = 1, 2


def _request(kind: RequestKind, *, amount=100, fee=0, payee_fee=0) -> TransferRequest:
    return TransferRequest(
        id=mint_request_id(),
        code="X",
        kind=kind.value,
        debit_account_id=PAYER,
        credit_account_id=PAYEE,
        amount=amount,
        fee=fee,
        commission=0,
        payee_fee=payee_fee,
        pending_request_id="h",
        status="queued",
        attempts=0,
    )


def _legs(request):
    from ussd_app.payments.legs import HouseAccounts, legs_for

    return legs_for(request, HouseAccounts(db.session))


def test_every_kind_has_exactly_one_row():
    assert Counter(row.kind for row in kinds.ROWS) == Counter(set(RequestKind))
    assert set(kinds.KINDS) == set(RequestKind)
    for kind in RequestKind:
        assert kinds.spec(kind.value) is kinds.spec(kind) is kinds.KINDS[kind]
    with pytest.raises(KeyError):
        kinds.spec("no_such_kind")


def test_holds_posts_and_voids_agree_with_the_legs_each_kind_posts(app):
    """Pending: the main leg is a PENDING transfer. Post and void: the main leg posts or voids
    the hold named by the request. Single: nothing pending, nothing resolved."""
    for kind in RequestKind:
        legs = _legs(_request(kind))
        flags = [leg.flags for leg in legs]
        phase = kinds.spec(kind).phase
        assert (flags[0] & TransferFlags.PENDING != 0) == (phase == Phase.PENDING), kind
        assert any(f & TransferFlags.POST_PENDING_TRANSFER for f in flags) == (phase == Phase.POST), kind
        assert any(f & TransferFlags.VOID_PENDING_TRANSFER for f in flags) == (phase == Phase.VOID), kind
        assert (legs[0].pending_id == "h") == (phase in (Phase.POST, Phase.VOID)), kind
        assert (kind.value in kinds.HOLD_KINDS) == (phase == Phase.PENDING)
        assert (kind.value in kinds.POSTING_KINDS) == (phase == Phase.POST)
        assert (kind.value in kinds.VOIDING_KINDS) == (phase == Phase.VOID)


def test_credited_kinds_are_the_kinds_whose_legs_post_money_to_the_payee(app):
    """A kind credits its payee when one of its legs posts money into the payee's account: a
    plain transfer into it, or the posting of a hold (whose credit side is the payee). That is
    where the payee's balance limit applies (ussd_app/limits.py)."""
    for kind in RequestKind:
        credits = any(
            leg.flags & TransferFlags.POST_PENDING_TRANSFER
            or (
                leg.credit_account_id == PAYEE
                and not leg.flags & (TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)
            )
            for leg in _legs(_request(kind))
        )
        assert credits == kinds.spec(kind).credits_payee, kind
        assert (kind.value in kinds.CREDITED_KINDS) == credits


def test_a_post_with_nothing_that_fits_voids_the_hold_and_only_posts_may_post_what_fits(app):
    for kind in RequestKind:
        row = kinds.spec(kind)
        if row.posts_what_fits:
            assert row.phase == Phase.POST and row.credits_payee, kind
        if row.phase == Phase.POST:
            legs = _legs(_request(kind, amount=0))
            assert legs == [legs[0]] and legs[0].flags == TransferFlags.VOID_PENDING_TRANSFER, kind


def test_what_a_post_pays_on_and_charges_the_payee_is_what_its_legs_do(app):
    """A post that ``pays_on`` pays suspense on to the new customer in the same chain; one with
    ``payee_fee_on_post`` charges the merchant's fee quoted with the hold."""
    suspense = house_account(db.session, AccountKind.SUSPENSE).id
    for kind in RequestKind:
        row = kinds.spec(kind)
        legs = _legs(_request(kind, payee_fee=5))
        pays_on = any(leg.debit_account_id == suspense and leg.credit_account_id == PAYEE for leg in legs)
        charges = any(leg.code == "payee_fee" for leg in legs)
        assert pays_on == row.pays_on, kind
        assert charges == (row.payee_fee_on_post or row.phase == Phase.SINGLE), kind
        assert not (row.pays_on or row.payee_fee_on_post) or row.phase == Phase.POST, kind


def test_each_hold_has_one_post_and_one_void_and_falls_due_into_one_of_them():
    for row in kinds.ROWS:
        if row.phase in (Phase.POST, Phase.VOID):
            assert kinds.spec(row.resolves).phase == Phase.PENDING, row.kind
        else:
            assert row.resolves is None, row.kind
        if row.phase != Phase.PENDING:
            assert row.on_due is None and row.hold_setting is None, row.kind
    for hold in kinds.HOLD_KINDS:
        for phase in (Phase.POST, Phase.VOID):
            resolving = [row.kind for row in kinds.ROWS if row.resolves == hold and row.phase == phase]
            assert resolving == [kinds.resolution(hold, phase)], (hold, phase)
    assert kinds.on_due(RequestKind.SEND_UNREGISTERED) == RequestKind.SUSPENSE_VOID  # money back
    assert kinds.on_due(RequestKind.PROTECTED_PURCHASE) == RequestKind.PROTECTED_POST  # merchant paid
    assert kinds.on_due(RequestKind.REVERSAL) == RequestKind.REVERSAL_VOID  # recipient keeps it
    with pytest.raises(KeyError):
        kinds.on_due(RequestKind.AIRTIME)  # Africa's Talking's answer resolves it, not the clock


def test_a_hold_counts_against_the_daily_limit_when_made_never_again_when_resolved():
    for row in kinds.ROWS:
        assert (row.kind.value in kinds.COUNTED_KINDS) == row.counted
        if row.phase in (Phase.POST, Phase.VOID):
            assert not row.counted, row.kind
    assert kinds.COUNTED_KINDS == {
        "send",
        "withdrawal",
        "buy_goods",
        "pay_bill",
        "send_unregistered",
        "protected_purchase",
        "airtime",
        "allowance",  # the period's limit, when it is held (its charges are not transfers)
    }


def test_the_built_in_tariff_charges_the_payer_of_a_free_kind_nothing(app):
    from ussd_app.tariffs import default_document, quote

    document = default_document()
    for kind in kinds.FREE_KINDS:
        assert "bands" not in document[kind] and quote(kind, 1_000_000_00) == 0, kind
    for kind in kinds.PAYEE_PAYS_KINDS:
        assert document[kind]["payee_basis_points"] > 0, kind
    for kind in ("send", "withdrawal"):
        assert kind not in kinds.FREE_KINDS and quote(kind, 1_000_00) > 0


def test_every_kind_names_a_receipts_entry_and_every_entry_has_its_kind():
    from ussd_app.messages.receipts import RECEIPTS

    named = {row.receipts for row in kinds.ROWS}
    assert named == set(RECEIPTS)
    for row in kinds.ROWS:
        if row.two_segments:
            assert "sender" in RECEIPTS[row.receipts], row.kind
        if row.failure_to == kinds.Side.PAYEE:  # the payee asked for it: they hear it failed
            assert row.phase == Phase.PENDING and "failed" in RECEIPTS[row.receipts], row.kind
