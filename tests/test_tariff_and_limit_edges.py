"""Every tariff band edge and every limit edge, table-driven: exactly at the edge, and one minor
unit over it. Tariffs from the built-in defaults and from a stored version; limits and velocity
rules as the worker enforces them."""

import pytest
from sqlalchemy import select

from tests.sms_helpers import agent_with_float, execute, outbox, person, send
from ussd_app import tariffs
from ussd_app.extensions import db
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import SEND_BANDS, WITHDRAWAL_BANDS

# -- tariffs --------------------------------------------------------------------------------


def _edges(bands, value):
    """(amount, expected) at each band's upper bound and one minor unit over it (the next band,
    or the last band above the last bound), and the least amount there is (one minor unit)."""
    cases = [(1, value(bands[0]))]
    for i, band in enumerate(bands):
        cases.append((band[0], value(band)))
        cases.append((band[0] + 1, value(bands[min(i + 1, len(bands) - 1)])))
    return cases


SEND_EDGES = _edges(SEND_BANDS, lambda b: b[1])
WITHDRAWAL_FEE_EDGES = _edges(WITHDRAWAL_BANDS, lambda b: b[1])
WITHDRAWAL_COMMISSION_EDGES = _edges(WITHDRAWAL_BANDS, lambda b: b[2])


@pytest.fixture(params=["defaults", "stored"])
def tariff(request, app):
    """The built-in defaults, or the same document stored as a version (the JSON path)."""
    if request.param == "stored":
        tariffs.ensure_seeded(db.session)
        db.session.commit()
    found = tariffs.in_force()
    assert (found.id is None) == (request.param == "defaults")
    return found


def test_send_fee_at_and_one_minor_unit_over_every_band_edge(tariff):
    got = [(amount, tariff.fee("send", amount)) for amount, _ in SEND_EDGES]
    assert got == SEND_EDGES
    assert tariff.fee("send", 100_00) == 0 and tariff.fee("send", 100_01) == 7_00  # micropayments free


def test_withdrawal_fee_and_commission_at_and_one_minor_unit_over_every_band_edge(tariff):
    assert [(a, tariff.fee("withdrawal", a)) for a, _ in WITHDRAWAL_FEE_EDGES] == WITHDRAWAL_FEE_EDGES
    assert [
        (a, tariff.commission("withdrawal", a)) for a, _ in WITHDRAWAL_COMMISSION_EDGES
    ] == WITHDRAWAL_COMMISSION_EDGES


@pytest.mark.parametrize("kind", ["buy_goods", "pay_bill"])
@pytest.mark.parametrize(
    ("amount", "merchant_fee"),
    [
        (1, 0),  # 0.5% of one minor unit rounds down
        (199, 0),
        (200, 1),  # the first minor unit of fee
        (39_999_99, 199_99),
        (40_000_00, 200_00),  # exactly at the cap
        (40_000_01, 200_00),  # one over: capped
        (10_000_000_00, 200_00),
    ],
)
def test_merchant_payments_are_free_for_the_customer_and_a_capped_percentage_for_the_merchant(
    tariff, kind, amount, merchant_fee
):
    assert tariff.fee(kind, amount) == 0
    assert tariff.payee_fee(kind, amount) == merchant_fee


# -- limits ---------------------------------------------------------------------------------

# Basic tier: KES 1,000 a transfer, 2,000 a day, 5,000 held; velocity off unless a case sets it.
BASE = {
    "LIMITS_BASIC_MAJOR": "1000,2000,5000",
    "VELOCITY_MAX_COUNT": 0,
    "VELOCITY_MAX_VALUE_MAJOR": 0,
}
SEND, BUY, DEPOSIT = "send", "buy_goods", "deposit"

# name: (config, earlier requests, the request at the edge, (status, result), SMS words)
# A request is (kind, payer, payee, amount in minor units); fees are quoted as the menus do.
# Send fees: KES 501-1,000 costs 13, KES 101-500 costs 7; buying goods and deposits are free.
LIMIT_EDGES = {
    "per transfer, at": ({}, [], (SEND, "amina", "baraka", 1_000_00), ("accepted", None), None),
    "per transfer, one over": (
        {},
        [],
        (SEND, "amina", "baraka", 1_000_01),
        ("rejected", "limit_transaction_exceeded"),
        "Over your limit of KES 1,000.00 a transaction by KES 0.01.",
    ),
    "daily, at": (
        {"LIMITS_BASIC_MAJOR": "2000,2000,5000"},
        [(BUY, "amina", "till", 1_999_99)],
        (BUY, "amina", "till", 1),
        ("accepted", None),
        None,
    ),
    "daily, one over": (
        {"LIMITS_BASIC_MAJOR": "2000,2000,5000"},
        [(BUY, "amina", "till", 1_999_99)],
        (BUY, "amina", "till", 2),
        ("rejected", "limit_daily_exceeded"),
        "Over your daily limit of KES 2,000.00 by KES 0.01.",
    ),
    "daily with fees, at": (
        {},
        [(SEND, "amina", "baraka", 987_00)],  # + 13 = 1,000
        (SEND, "amina", "baraka", 987_00),  # 2,000 with its fee
        ("accepted", None),
        None,
    ),
    "daily with fees, one over": (
        {},
        [(SEND, "amina", "baraka", 987_00)],
        (SEND, "amina", "baraka", 987_01),
        ("rejected", "limit_daily_exceeded"),
        "Over your daily limit of KES 2,000.00 by KES 0.01.",
    ),
    "balance by deposit, at": ({}, [], (DEPOSIT, "agent", "baraka", 5_000_00), ("accepted", None), None),
    "balance by deposit, one over": (
        {},
        [],
        (DEPOSIT, "agent", "baraka", 5_000_01),
        ("rejected", "limit_balance_exceeded"),
        None,
    ),
    "balance by send, at": (
        {},
        [(DEPOSIT, "agent", "baraka", 4_500_00)],
        (SEND, "amina", "baraka", 500_00),
        ("accepted", None),
        None,
    ),
    "balance by send, one over": (
        {},
        [(DEPOSIT, "agent", "baraka", 4_500_00)],
        (SEND, "amina", "baraka", 500_01),
        ("rejected", "limit_balance_exceeded"),
        "BARAKA OTIENO cannot receive it: over their balance limit.",
    ),
    "velocity count, at": (
        {"VELOCITY_MAX_COUNT": 2},
        [(SEND, "amina", "baraka", 50_00)],
        (SEND, "amina", "baraka", 50_00),
        ("accepted", None),
        None,
    ),
    "velocity count, one over": (
        {"VELOCITY_MAX_COUNT": 2},
        [(SEND, "amina", "baraka", 50_00), (SEND, "amina", "baraka", 50_00)],
        (SEND, "amina", "baraka", 50_00),
        ("review", "velocity_count"),
        "On hold:",
    ),
    "velocity value, at": (
        {"VELOCITY_MAX_VALUE_MAJOR": 1_500},
        [(SEND, "amina", "baraka", 1_000_00)],
        (SEND, "amina", "baraka", 500_00),
        ("accepted", None),
        None,
    ),
    "velocity value, one over": (
        {"VELOCITY_MAX_VALUE_MAJOR": 1_500},
        [(SEND, "amina", "baraka", 1_000_00)],
        (SEND, "amina", "baraka", 500_01),
        ("review", "velocity_value"),
        "On hold:",
    ),
}


@pytest.fixture
def config(app):
    saved = dict(app.config)
    app.config.update(BASE)
    yield app.config.update
    app.config.clear()
    app.config.update(saved)


@pytest.fixture
def people(config):
    agent = agent_with_float()
    found = {
        "agent": agent,
        "amina": person("+254711000001", "Amina Wanjiku"),
        "baraka": person("+254711000002", "Baraka Otieno"),
        "till": person("+254700000002", "Mama Mboga", role="merchant", till="123456"),
    }
    deposit_id = record_request(
        db.session,
        request_id=mint_request_id(),
        kind=DEPOSIT,
        debit_account_id=agent.account_id,
        credit_account_id=found["amina"].account_id,
        amount=4_000_00,
    ).id
    db.session.commit()
    execute()
    assert db.session.get(TransferRequest, deposit_id).status == "accepted"
    return found


@pytest.mark.parametrize("name", LIMIT_EDGES)
def test_every_limit_at_its_edge_and_one_minor_unit_over(config, people, name):
    settings, earlier, edge, (status, result), sms = LIMIT_EDGES[name]
    config(**settings)
    for kind, payer, payee, amount in earlier:
        request_id = send(people[payer], people[payee], amount, kind)
        execute()
        assert db.session.get(TransferRequest, request_id).status == "accepted", (name, kind, amount)
    kind, payer, payee, amount = edge
    request_id = send(people[payer], people[payee], amount, kind)
    execute()
    db.session.expire_all()
    request = db.session.execute(select(TransferRequest).where(TransferRequest.id == request_id)).scalar_one()
    assert (request.status, request.result if status != "accepted" else None) == (status, result)
    if sms is not None:
        told = [m.body for m in outbox(phone=people[payer].phone) if m.transfer_request_id == request_id]
        assert len(told) == 1 and sms in told[0], told
