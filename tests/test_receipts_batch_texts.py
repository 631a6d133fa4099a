"""A batch's receipts read the same, character for character, whether the formatters answer from
their caches (``messages._money``, ``_when``, ``_sms_name``, ``receipts._facts``) or work each
one out afresh as they did before they had caches: one batch executed both ways on the same
rows, rolled back in between, every outbox row compared."""

from datetime import datetime

import pytest
from sqlalchemy import select

from tests.sms_helpers import agent_with_float, person, send
from ussd_app import messages
from ussd_app.extensions import db
from ussd_app.messages import receipts as texts
from ussd_app.payments import execute
from ussd_app.sms.outbox import OutboxMessage

MOMENT = datetime(2026, 3, 31, 21, 5, 7)  # 00:05 the next day in Nairobi: the date turns


def run_batch() -> list[tuple[str, str]]:
    """Execute every queued request in one batch, read its outbox rows in id order, roll back."""
    session = db.session
    first = session.execute(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())).scalar() or 0
    requests = execute._take_queued(session, 500)
    execute.execute_requests(session, requests)
    session.flush()
    query = select(OutboxMessage.phone, OutboxMessage.body).where(OutboxMessage.id > first)
    rows = session.execute(query.order_by(OutboxMessage.id)).all()
    session.rollback()
    return [tuple(row) for row in rows]


def uncached(patch) -> None:
    money, when = messages._money.__wrapped__, messages._when.__wrapped__
    patch.setattr(messages, "_money", money)
    patch.setattr(messages, "_when", when)
    patch.setattr(messages, "_sms_name", messages._sms_name.__wrapped__)
    patch.setattr(texts, "_money", money)
    patch.setattr(texts, "_when", when)
    patch.setattr(texts, "_facts", texts._facts.__wrapped__)


@pytest.mark.usefixtures("app")
def test_a_batch_reads_the_same_with_and_without_the_formatters_caches(monkeypatch):
    monkeypatch.setattr(execute, "utcnow", lambda: MOMENT)
    agent = agent_with_float()
    amina = person("+254712000501", "Amina Hassan")
    baraka = person("+254712000502", "Baraka Otieno", language="sw")
    long_name = person("+254712000503", "Wanjiru Nyambura-Kamau Wambui", language="sw")
    shop = person("+254712000504", "Duka Bora", role="merchant", till="123456", language="sw")
    other_agent = person("+254712000505", "Wakala Mkuu", role="agent")
    broke = person("+254712000506", "Zawadi Ñandú")
    for customer, amount in ((amina, 30_000_00), (baraka, 12_345_67), (long_name, 999_00)):
        send(agent, customer, amount)
    # In one batch with the cash-ins: sends of the same and of different amounts, each payee's
    # kind, both languages, a name cut short, one with letters outside GSM-7, a refusal.
    send(amina, baraka, 1_250_00)
    send(amina, baraka, 1_250_00)
    send(baraka, long_name, 7_00)
    send(long_name, shop, 450_50)
    send(amina, other_agent, 100_00)
    send(broke, amina, 200_00)
    send(amina, broke, 3_000_00)
    db.session.commit()

    for cache in (messages._money, messages._when, messages._sms_name, texts._facts):
        cache.cache_clear()
    with monkeypatch.context() as patch:
        uncached(patch)
        before = run_batch()
    cold = run_batch()
    warm = run_batch()
    assert len(before) >= 14
    assert any("Imethibitishwa" in body for _, body in before)
    assert any(" 01/04/26 " in body or "01/04/26" in body for _, body in before)
    assert cold == before
    assert warm == before
