"""Allowances attacked from outside (the API with real keys, USSD, the worker's jobs): each test
here once showed a lost promise (money, an event, an identity) and now holds."""

from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from tests.api_helpers import execute_all, get, make_key, post
from tests.escrow_helpers import funded_customer
from tests.test_allowances import asked, charge, events, period_over, state
from tests.ussd_helpers import CUSTOMER, MERCHANT, person
from ussd_app.database import is_postgres
from ussd_app.extensions import db
from ussd_app.payments import allowances as al

TERMS = {"phone": "0712000111", "limit": 200_00, "max_charge": 5_00, "period": "week", "description": "News"}


def test_a_merchant_hears_approved_when_the_first_hold_is_made_in_a_later_period(backend_app):
    """Approved with no money: paused. The money comes, the next period's hold is made and
    charges are taken: the merchant, who waits for ``allowance.approved`` to start charging,
    must hear it then (it was sent only for hold number 1, which was refused)."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert state(allowance_id) == "paused"
    from tests.helpers import fund

    fund(customer.account_id, 500_00)
    period_over(allowance_id)
    from worker import jobs

    jobs.after_allowance_batch()
    assert state(allowance_id) == "active"
    assert charge(allowance_id, merchant, 1_00, 1).ok
    approved = events("allowance.approved")
    assert [e["allowance"] for e in approved] == [allowance_id]


@pytest.fixture
def key(app, config, merchant):
    config(API_RATE_PER_MINUTE=1_000_000)
    funded_customer()
    return make_key(merchant)


def test_an_allowance_id_with_anything_after_it_is_not_that_allowance(client, key):
    """Ids are compared whole: ``<id>EXTRA`` is no allowance (it was cut to 32 characters and
    answered, charged and echoed as the real one)."""
    made = post(client, "/allowances", key, TERMS)
    assert made.status_code == 201, made.json
    allowance_id = made.json["id"]
    assert get(client, f"/allowances/{allowance_id}", key).status_code == 200
    alias = allowance_id + "EXTRA"
    seen = get(client, f"/allowances/{alias}", key)
    assert (seen.status_code, seen.json["error"]["code"]) == (404, "not_found")
    charged = post(client, f"/allowances/{alias}/charges", key, {"amount": 1_00})
    assert (charged.status_code, charged.json["error"]["code"]) == (404, "not_found")
    settled = post(client, f"/allowances/{alias}/settle", key, {})
    assert (settled.status_code, settled.json["error"]["code"]) == (404, "not_found")


def test_another_merchants_charge_does_not_wait_on_the_allowances_lock(backend_app):
    """Another merchant's charge on an allowance answers not found at once, even while its
    merchant's charge holds the row: it takes no lock on a row that is not its own (else it
    waits, a timing oracle that the id exists and is being charged, and it holds the real
    merchant's charges up while it waits)."""
    if not is_postgres(db.session):
        pytest.skip("SQLite's transactions hold the whole database")
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    other = person("+254700000003", "Duka Kuu", pin="3333", role="merchant", till="654321")
    allowance_id = asked(customer, merchant)
    engine = create_engine(str(db.engine.url.render_as_string(hide_password=False)))
    holder = engine.connect()
    try:
        holder.begin()
        holder.execute(text("SELECT id FROM allowances WHERE id = :id FOR UPDATE"), {"id": allowance_id})
        db.session.execute(text("SET LOCAL lock_timeout = '2s'"))
        outcome = al.charge(db.session, allowance_id, other.account_id, 1_00, None, charge_id="x-1")
        db.session.rollback()
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()
    assert outcome.code == "allowance_not_found"


@pytest.mark.parametrize("language", ["en", "sw"])
def test_the_settlement_sms_fits_one_segment_with_as_many_charges_as_its_amount_allows(app, language):
    """A settlement of 1-cent charges counts as many charges as its amount has minor units
    (8 digits at the largest per-transfer limit), not the 2 digits the shared segment test
    assumes: the Kiswahili text ran to 163 characters, a second segment per settlement."""
    from tests.test_sms_segments import longest
    from ussd_app import limits
    from ussd_app.i18n import t
    from ussd_app.messages import allowances as texts
    from ussd_app.ussd.gsm7 import length

    biggest = max(limits.tier_limits(tier).per_transfer for tier in ("basic", "full"))
    fields = {**longest(app), "count": biggest}
    for english in (texts.SETTLED, texts.SETTLED_ENDED):
        text = t(language, english, domain="sms", **fields)
        assert length(text) <= 160, (length(text), text)


def test_charges_racing_a_settlement_the_period_end_and_a_cancel_count_each_shilling_once(backend_app):
    """On PostgreSQL: charges, the merchant's settle, the maintenance job at the period's end
    and the customer's cancel all at once: every charge taken is in exactly one settlement
    (none in two, none in neither), the merchant is paid their sum less the fee, the customer
    pays exactly that, and the ledger checks."""
    if not is_postgres(db.session):
        pytest.skip("a race needs PostgreSQL's row locks (SQLite runs one writer at a time)")
    from sqlalchemy import func, select

    from tests.escrow_helpers import FUNDS, at_once, cash_in
    from tests.test_allowances import ledger_ok_without_deposits, the
    from tests.ussd_helpers import AGENT, available
    from ussd_app.payments.models import RequestStatus, TransferRequest
    from worker import jobs

    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant, limit=100_00, max_charge=1_00)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    ends = the(allowance_id).period_ends_at
    merchant_account_id, customer_id = merchant.account_id, customer.id
    merchant_before = available(merchant.account_id)

    def one(n, now):
        def call():
            outcome = al.charge_many(
                db.session, allowance_id, merchant_account_id, [(1_00, None, f"r-{n}")], now
            )
            db.session.commit()
            return outcome[0].code

        return call

    def settle():
        done = al.settle(db.session, allowance_id, why=al.Why.MERCHANT)
        db.session.commit()
        return done is not None

    def maintenance():
        return jobs.settle_allowances(now=ends + timedelta(seconds=1))

    def cancel():
        from ussd_app.users import User

        done = al.cancel(db.session, db.session.get(User, customer_id), allowance_id)
        db.session.commit()
        return done

    before_end = ends - timedelta(microseconds=1)
    calls = [one(n, before_end) for n in range(20)] + [settle, maintenance, cancel]
    at_once(backend_app, *calls)
    for _ in range(3):
        execute_all()
        jobs.after_allowance_batch()
        jobs.settle_allowances(now=ends + timedelta(seconds=1))
    execute_all()
    jobs.after_allowance_batch()
    allowance = the(allowance_id)
    assert allowance.state == "cancelled"
    taken = db.session.execute(
        select(func.coalesce(func.sum(al.AllowanceCharge.amount), 0)).where(
            al.AllowanceCharge.allowance_id == allowance_id
        )
    ).scalar_one()
    settled = al.settlements(db.session, allowance_id)
    posted = [db.session.get(TransferRequest, s.id) for s in settled]
    db.session.commit()
    assert all(p.status == RequestStatus.ACCEPTED.value for p in posted)
    assert sum(s.amount for s in settled) == taken  # each charge in one settlement, once
    assert sum(p.amount for p in posted if p.kind == "allowance_post") == taken
    fees = sum(p.payee_fee for p in posted if p.kind == "allowance_post")
    assert available(merchant.account_id) == merchant_before + taken - fees
    assert available(allowance.customer_account_id) == FUNDS - taken  # nothing still held
    ledger_ok_without_deposits()


def test_a_tab_of_one_charge_says_1_charge(backend_app):
    """The settlement SMS of a single charge (a cancel after one article is common) read
    'for 1 charges'."""
    from tests.escrow_helpers import cash_in, sms_to
    from tests.ussd_helpers import AGENT

    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    assert charge(allowance_id, merchant, 3_00, 1).ok
    assert al.settle(db.session, allowance_id, why=al.Why.MERCHANT) is not None
    db.session.commit()
    execute_all()
    text = sms_to(customer.phone)[-1]
    assert "paid to MAMA MBOGA for 1 charge, " in text, text


def test_a_merchant_settling_after_each_charge_does_not_eat_the_customers_daily_limit(backend_app):
    """Each settlement posts part of the period's hold and holds the rest anew; each new hold
    counted whole against the customer's day, so a merchant settling after every KES 1
    charge used up the customer's daily limit (nothing else could be sent today, and the
    allowance's own next hold was refused). The period's limit counts once: what was posted,
    plus what is held."""
    from tests.escrow_helpers import cash_in
    from tests.ussd_helpers import AGENT
    from ussd_app import limits
    from worker import jobs

    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant, limit=9_000_00, max_charge=100_00)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    daily = limits.tier_limits(customer.tier).daily
    for n in range(5):
        assert charge(allowance_id, merchant, 1_00, n).ok
        assert al.settle(db.session, allowance_id, why=al.Why.MERCHANT) is not None
        db.session.commit()
        execute_all()
        jobs.after_allowance_batch()
        execute_all()
        jobs.after_allowance_batch()
        assert state(allowance_id) == "active"
    db.session.expire_all()
    left = limits.left_today(db.session, customer.account_id, customer.tier)
    db.session.commit()
    assert left == daily - 9_000_00  # KES 5 posted + KES 8,995 held: the limit, once


def test_ten_settlements_in_an_hour_do_not_hold_the_customers_next_payment_for_review(backend_app):
    """Each renewed hold counted as one more payment in the velocity rules: ten merchant
    settlements in an hour (VELOCITY_MAX_COUNT) held the customer's next send for review, and
    the allowance's own next hold with it. A settled hold counts as none."""
    from tests.escrow_helpers import cash_in
    from tests.ussd_helpers import AGENT
    from ussd_app import limits
    from ussd_app.clock import utcnow
    from worker import jobs

    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant, limit=100_00, max_charge=1_00)
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    for n in range(12):
        assert charge(allowance_id, merchant, 1_00, n).ok
        assert al.settle(db.session, allowance_id, why=al.Why.MERCHANT) is not None
        db.session.commit()
        execute_all()
        jobs.after_allowance_batch()
        execute_all()
        jobs.after_allowance_batch()
        assert state(allowance_id) == "active", n
    db.session.expire_all()
    count, value = limits.sent_last_hour(db.session, [customer.account_id], utcnow())[customer.account_id]
    db.session.commit()
    assert (count, value) == (1, 100_00)  # the live hold: 12 posted + 88 held


def test_a_monthly_allowance_begun_on_the_31st_keeps_its_day_after_february(backend_app):
    """Approved on 31 January: the period ends 28 February (the month is short), then 31
    March, not 28 March and the 28th for ever after (each period began where the last ended
    and a short month's day stuck)."""
    from datetime import datetime

    from tests.escrow_helpers import cash_in
    from tests.test_allowances import the
    from tests.ussd_helpers import AGENT
    from worker import jobs

    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    cash_in(customer, person(**AGENT))
    allowance_id = asked(customer, merchant, period="month")
    assert al.approve(db.session, customer, allowance_id)
    db.session.commit()
    execute_all()
    began = datetime(2027, 1, 31, 9, 0)
    allowance = db.session.get(al.Allowance, allowance_id)
    allowance.decided_at, allowance.period_starts_at = began, began
    allowance.period_ends_at = al.period_end(began, "month")
    db.session.commit()
    assert the(allowance_id).period_ends_at == datetime(2027, 2, 28, 9, 0)
    jobs.settle_allowances(now=datetime(2027, 2, 28, 9, 0, 1))  # nothing charged: rolls on
    assert the(allowance_id).period_ends_at == datetime(2027, 3, 31, 9, 0)


def test_cancelling_while_the_merchants_settlement_is_posted_does_not_say_nothing_was_charged(app):
    """The merchant settled KES 15 (posting queued) and the customer cancels meanwhile: the
    END screen said 'Nothing was charged' (it read the tab, emptied by the settlement), then
    the SMS said KES 15 paid. It quotes the settlement being posted."""
    from tests.escrow_helpers import PIN, sms_to
    from tests.test_ussd_allowances import ALLOWANCES, JUMA, Cast, active, dial, work
    from tests.test_ussd_allowances import charge as ussd_charge

    cast = Cast(app)
    allowance_id = active(cast)
    for n in range(1, 4):
        assert ussd_charge(allowance_id, cast.shop, 5_00, f"R{n}", n).ok
    assert al.settle(db.session, allowance_id, why=al.Why.MERCHANT) is not None
    db.session.commit()  # the worker has not posted it yet
    phone = dial(cast.client)
    for value in (ALLOWANCES, "2", "1", "2", "1"):
        phone.send(value)
    assert phone.send(PIN) == (
        "END Allowance to Mama Mboga cancelled. Settled now: KES 15.00 for 3 charges. You will get an SMS."
    )
    work()
    assert "KES 15.00 paid to MAMA MBOGA for 3 charges" in sms_to(JUMA)[-1]


# -- an allowance's id again, from someone else or for other terms ------------------------


def _started_under(allowance_id: str, customer, merchant, *, limit: int, period: str) -> al.Allowance:
    made = al.start(db.session, customer, merchant, limit=limit, period=period, allowance_id=allowance_id)
    db.session.commit()
    return made


def _holds_of(account_id: int) -> list:
    from sqlalchemy import select

    from ussd_app.payments.models import TransferRequest

    return list(
        db.session.execute(
            select(TransferRequest.id).where(TransferRequest.debit_account_id == account_id)
        ).scalars()
    )


def test_starting_under_an_id_anothers_allowance_holds_is_refused_not_handed_back(backend_app):
    """Asha's allowance is recorded under an id; Juma's start under the same id returned Asha's
    allowance as if it were his ("active once the money is held" on his phone, nothing of his
    recorded, and the balance check skipped for it). Another customer, merchant, limit or
    period under a recorded id is a conflict; the same customer's same terms again (a retried
    hop) is still the first one, with one hold."""
    from tests.test_ussd_allowances import Cast

    cast = Cast(backend_app)
    juma, merchant = cast.juma, cast.merchant
    asha = person(phone="+254712000333", name="Asha Njeri", pin="1357")
    other_shop = person("+254700000003", "Duka Kuu", pin="3333", role="merchant", till="654321")
    taken = _started_under("al_taken", asha, merchant, limit=50_00, period="day")
    for who, shop, limit, period in (
        (juma, merchant, 50_00, "day"),  # another customer, Asha's very terms
        (asha, other_shop, 50_00, "day"),  # Asha, another merchant
        (asha, merchant, 60_00, "day"),  # another limit
        (asha, merchant, 50_00, "week"),  # another period
    ):
        with pytest.raises(al.ConflictingAllowance):
            al.start(db.session, who, shop, limit=limit, period=period, allowance_id="al_taken")
        db.session.rollback()
    assert _holds_of(juma.account_id) == []
    again = _started_under("al_taken", asha, merchant, limit=50_00, period="day")
    assert (again.id, again.customer_account_id, again.limit_amount) == (taken.id, asha.account_id, 50_00)
    assert _holds_of(asha.account_id) == ["al_taken.h1"]


def test_a_merchants_asked_allowance_id_cannot_be_started_as_ones_own(backend_app):
    """An allowance a merchant asked for (awaiting the customer's approval) is not the customer's
    until approved: starting under its id, even by that customer on the same terms, does not
    hand it back as started (it has no hold; the customer was told it is active)."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    from tests.test_allowances import asked

    allowance_id = asked(customer, merchant)
    asked_one = db.session.get(al.Allowance, allowance_id)
    with pytest.raises(al.ConflictingAllowance):
        al.start(
            db.session,
            customer,
            merchant,
            limit=asked_one.limit_amount,
            period=asked_one.period,
            allowance_id=allowance_id,
        )
    db.session.rollback()
    assert state(allowance_id) == "awaiting_approval"


def test_the_menu_says_so_when_the_minted_id_is_taken_and_never_says_active(app, monkeypatch):
    """On USSD: the id minted at the confirm screen is found recorded for another customer, or
    for this customer on other terms (a first session's 100 a week, then 50 a day). The screen
    said "Allowance to Mama Mboga active" for terms nobody recorded; it says something went
    wrong and nothing was started, and no 500."""
    from tests.escrow_helpers import PIN
    from tests.test_ussd_allowances import ALLOWANCES, TILL, Cast, dial

    cast = Cast(app)
    monkeypatch.setattr(al, "new_id", lambda: "al_minted")
    phone = dial(cast.client)
    for value in (ALLOWANCES, "1", TILL, "100", "2", "1"):
        phone.send(value)
    assert phone.send(PIN).startswith("END Allowance to Mama Mboga active")
    mine = db.session.get(al.Allowance, "al_minted")
    assert (mine.limit_amount, mine.period) == (100_00, "week")
    db.session.commit()
    # The same customer, other terms, the same id: refused, his allowance as it was.
    phone = dial(cast.client)
    for value in (ALLOWANCES, "1", TILL, "50", "1", "1"):
        phone.send(value)
    assert phone.send(PIN) == "END Sorry, something went wrong. Nothing was sent. Please try again later."
    db.session.expire_all()
    mine = db.session.get(al.Allowance, "al_minted")
    assert (mine.limit_amount, mine.period) == (100_00, "week")
    db.session.commit()
    # Another customer whose session minted the same id: refused too, Juma's untouched.
    wanjiru = person(phone="+254712000222", name="Wanjiru Kamau", pin="9753")
    from tests.helpers import fund

    fund(wanjiru.account_id, 500_00)
    phone = dial(cast.client, "+254712000222")
    for value in (ALLOWANCES, "1", TILL, "100", "2", "1"):
        phone.send(value)
    assert phone.send("9753") == "END Sorry, something went wrong. Nothing was sent. Please try again later."
    assert _holds_of(wanjiru.account_id) == []
    db.session.expire_all()
    assert db.session.get(al.Allowance, "al_minted").customer_phone == CUSTOMER["phone"]


def test_two_resumed_sessions_starting_one_allowance_at_once_both_say_it_started(app):
    """Two sessions of one number take the same offer to continue a start (the id minted in the
    first) and send the PIN at once. The PIN hop locks the caller's row, so the second finds
    the first's allowance once it commits: the same customer's same terms, the first one, as a
    replay is; never a failed insert ("Sorry, something went wrong" for an allowance started,
    inviting a second) nor a conflict."""
    from tests.escrow_helpers import PIN, at_once
    from tests.test_ussd_allowances import ALLOWANCES, TILL, Cast, Screens, dial, only_allowance
    from tests.ussd_helpers import is_resume_offer

    cast = Cast(app)
    first = dial(cast.client)
    for value in (ALLOWANCES, "1", TILL, "100", "2"):
        first.send(value)
    phones = [Screens(cast.client, CUSTOMER["phone"]) for _ in range(2)]
    assert all(is_resume_offer(phone.dial()) for phone in phones)  # both offered, then both take it
    for phone in phones:
        assert phone.send("1").startswith("CON Allow Mama Mboga (123456) up to KES 100.00 a week?")
        assert phone.send("1").startswith("CON Enter your PIN")
    answers = at_once(app, *[lambda p=p: p.send(PIN) for p in phones])
    assert all(a.startswith("END Allowance to Mama Mboga active") for a in answers), answers
    assert only_allowance().limit_amount == 100_00


def test_asking_under_an_id_anothers_allowance_holds_is_refused_not_handed_back(backend_app):
    """``ask`` under a recorded id handed that allowance back whoever asked: another merchant's
    request, or one to another number, came back as the caller's (its terms, its customer). The
    API derives the id from the caller's key, so only a caller of the library could; now the
    same merchant's same request again (a retry) is the first one, anything else a conflict."""
    customer, merchant = person(**CUSTOMER), person(**MERCHANT)
    other_shop = person("+254700000003", "Duka Kuu", pin="3333", role="merchant", till="654321")
    other_customer = person(phone="+254712000333", name="Asha Njeri", pin="1357")
    allowance_id = asked(customer, merchant)
    first = db.session.get(al.Allowance, allowance_id)
    terms = dict(
        limit=first.limit_amount,
        max_charge=first.max_charge,
        period=first.period,
        description=first.description,
        reference=first.reference,
    )
    for shop, phone, changed in (
        (other_shop, customer.phone, {}),  # another merchant, the very terms
        (merchant, other_customer.phone, {}),  # another number
        (merchant, customer.phone, {"limit": first.limit_amount + 1}),  # other terms
        (merchant, customer.phone, {"reference": "SOMEONE-ELSE"}),
    ):
        with pytest.raises(al.ConflictingAllowance):
            al.ask(db.session, shop, phone, allowance_id=allowance_id, **{**terms, **changed})
        db.session.rollback()
    again = al.ask(db.session, merchant, customer.phone, allowance_id=allowance_id, **terms)
    assert (again.id, again.merchant_account_id, again.customer_phone) == (
        allowance_id,
        merchant.account_id,
        customer.phone,
    )
    assert state(allowance_id) == "awaiting_approval"
