"""Tariffs: versions the operator sets without a deploy, and the fee charged is the one the
customer saw when they confirmed."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.sms_helpers import agent_with_float, execute, outbox, person
from ussd_app import tariffs
from ussd_app.extensions import db
from ussd_app.ledger import Account
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.tariffs import quote


def kes(major: int) -> int:
    return major * 100


def write(tmp_path, document, name="bands.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_default_tariff_is_shaped_like_kenyas(app):
    assert quote("send", kes(1)) == 0
    assert quote("send", kes(100)) == 0  # micropayments stay free
    assert quote("send", kes(101)) == kes(7)
    assert quote("send", kes(1_000)) == kes(13)
    assert quote("send", kes(250_000)) == kes(108)  # above the last bound: the last band
    for kind in ("deposit", "float_issue", "registration", "balance", "buy_goods", "pay_bill"):
        assert quote(kind, kes(5_000)) == 0
    tariff = tariffs.in_force()
    assert tariff.id is None  # nothing stored yet: the built-in defaults
    assert quote("withdrawal", kes(3_000)) == kes(52)
    assert tariffs.commission("withdrawal", kes(3_000)) == kes(21)
    assert tariff.payee_fee("buy_goods", kes(1_000)) == kes(5)  # 0.5% for the merchant ...
    assert tariff.payee_fee("buy_goods", kes(1_000_000)) == kes(200)  # ... capped at KES 200
    with pytest.raises(ValueError):
        quote("teleport", kes(10))


def test_operator_shows_sets_and_lists_versions(runner, tmp_path):
    shown = runner.invoke(args=["tariffs", "show"])
    assert shown.exit_code == 0, shown.output
    # Ids come from a sequence, which PostgreSQL does not rewind between tests: read them.
    [seeded] = tariffs.versions(db.session)
    assert f"in force: version {seeded.id}\n" in shown.output  # the defaults, seeded
    document = tariffs.default_document()
    document["send"]["bands"][1][1] = kes(9)  # KES 101-500 now costs KES 9
    result = runner.invoke(args=["tariffs", "set", "--file", write(tmp_path, document), "--note", "Dec"])
    assert result.exit_code == 0, result.output
    [_, added] = tariffs.versions(db.session)
    assert f"tariff version {added.id} in force" in result.output
    assert quote("send", kes(200)) == kes(9)
    listing = runner.invoke(args=["tariffs", "show", "--all"])
    assert f"  version {seeded.id} " in listing.output and f"* version {added.id} " in listing.output
    assert "Dec" in listing.output


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d["send"]["bands"].__setitem__(0, [kes(100), kes(1)]), "must stay free"),
        (lambda d: d["send"]["bands"].__setitem__(1, [kes(50), kes(7)]), "bounds must rise"),
        (lambda d: d["withdrawal"]["bands"].__setitem__(0, [kes(100), kes(11), kes(20)]), "share of the fee"),
        (lambda d: d["send"].__setitem__("bands", [[kes(100), 0.5]]), "whole number"),
        (lambda d: d.__setitem__("send", {"band": []}), "unknown keys"),
    ],
)
def test_a_bad_tariff_file_is_refused_and_changes_nothing(runner, tmp_path, change, complaint):
    document = tariffs.default_document()
    change(document)
    result = runner.invoke(args=["tariffs", "set", "--file", write(tmp_path, document)])
    assert result.exit_code != 0
    assert complaint in result.output
    assert tariffs.in_force().id is None
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    assert "refused" in runner.invoke(args=["tariffs", "set", "--file", str(garbled)]).output


def test_a_version_starts_at_its_effective_time(app):
    tariffs.ensure_seeded(db.session)
    later = tariffs.default_document()
    later["send"]["bands"][1][1] = kes(8)
    start = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    tariffs.add_version(db.session, later, effective_from=start)
    db.session.commit()
    assert quote("send", kes(200)) == kes(7)  # not yet
    assert tariffs.in_force(db.session, at=start).fee("send", kes(200)) == kes(8)


def test_the_fee_charged_is_the_one_quoted_when_the_customer_confirmed(app, runner, tmp_path):
    agent = agent_with_float()
    amina = person("+254711000001", "Amina Wanjiku")
    baraka = person("+254711000002", "Baraka Otieno")
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=amina.account_id,
        amount=kes(5_000),
    )
    db.session.commit()
    execute()
    # Amina confirms a KES 1,000 send under version 1 (fee KES 13) ...
    tariffs.ensure_seeded(db.session)
    confirmed = tariffs.in_force(db.session)
    request_id = record_request(
        db.session,
        request_id=mint_request_id(),
        kind="send",
        debit_account_id=amina.account_id,
        credit_account_id=baraka.account_id,
        amount=kes(1_000),
        fee=confirmed.fee("send", kes(1_000)),
        tariff_version_id=confirmed.id,
    ).id
    db.session.commit()
    # ... then the operator raises that band before the worker runs.
    dearer = tariffs.default_document()
    dearer["send"]["bands"][2][1] = kes(40)
    assert runner.invoke(args=["tariffs", "set", "--file", write(tmp_path, dearer)]).exit_code == 0
    assert quote("send", kes(1_000)) == kes(40)

    execute()

    request = db.session.get(TransferRequest, request_id)
    assert (request.status, request.fee, request.tariff_version_id) == ("accepted", kes(13), confirmed.id)
    wallet = db.session.execute(select(Account).where(Account.id == amina.account_id)).scalar_one()
    assert wallet.available == kes(5_000) - kes(1_000) - kes(13)
    (receipt,) = [m.body for m in outbox(phone=amina.phone) if m.transfer_request_id == request_id]
    assert "Transaction cost, KES 13.00." in receipt
