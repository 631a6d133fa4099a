"""Allowances on USSD (issue 18 item 1), through the webhook: an allowance a merchant asked for
is approved with the PIN in My approvals and the worker makes it active; a customer starts one
from the menu (till, the merchant's name, the limit, the period, the PIN); My allowances shows
what is left after charges, the charges five a screen, and cancels with the PIN (settled at
once: one SMS). Wrong input says why, a wrong PIN counts, 0 goes back, every screen fits."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.api_helpers import execute_all
from tests.escrow_helpers import FUNDS, PIN, cash_in, ledger_ok, sms_to
from tests.test_ussd_secrets import leaks_in_redis
from tests.ussd_helpers import (
    AGENT,
    CUSTOMER,
    CUSTOMER_MENU_ITEMS,
    MERCHANT,
    SECOND_CUSTOMER,
    Phone,
    available,
    fresh,
    is_resume_offer,
    person,
)
from ussd_app.clock import utcnow
from ussd_app.extensions import db
from ussd_app.payments import allowances as al
from ussd_app.users import create_user, find_by_phone
from ussd_app.ussd import gsm7

JUMA = CUSTOMER["phone"]
# The customer menu's items (flows/home.py), found by name.
ALLOWANCES = next(key for key, name in CUSTOMER_MENU_ITEMS.items() if name == "Allowances")
APPROVALS = next(key for key, name in CUSTOMER_MENU_ITEMS.items() if name == "My approvals")
TILL = MERCHANT["till"]


class Screens(Phone):
    """A phone that checks every screen it is shown: CON/END, and 160 GSM-7 characters."""

    def post(self, text: str) -> str:
        body = super().post(text)
        assert gsm7.fits(body[4:]), (gsm7.length(body[4:]), body)
        return body


def dial(client, number=JUMA) -> Screens:
    """A new session at the home menu (an unfinished one is not resumed)."""
    return fresh(client, number, kind=Screens)[0]


def work():
    """What the worker does after a hop recorded something: batches of transfers (an
    allowance's hold or settlement among them), each followed by ``allowances.after_batch``
    (active, or paused and told; a settlement's one SMS)."""
    execute_all()
    db.session.remove()


def allowance(allowance_id: str) -> al.Allowance:
    db.session.expire_all()
    found = db.session.get(al.Allowance, allowance_id)
    db.session.commit()
    return found


def only_allowance() -> al.Allowance:
    db.session.expire_all()
    found = db.session.execute(select(al.Allowance)).scalar_one()
    db.session.commit()
    return found


def asked(merchant, *, limit=100_00, most=5_00, period="week", allowance_id="al_test1") -> str:
    """The merchant asks Juma for an allowance (as the API does)."""
    al.ask(
        db.session,
        merchant,
        JUMA,
        limit=limit,
        max_charge=most,
        period=period,
        description="Daily articles",
        reference=None,
        allowance_id=allowance_id,
    )
    db.session.commit()
    return allowance_id


def charge(allowance_id: str, shop: int, amount: int, reference: str, n: int):
    """The merchant (its account ``shop``) charges, as the API does."""
    outcome = al.charge(db.session, allowance_id, shop, amount, reference, charge_id=f"ch_{allowance_id}_{n}")
    db.session.commit()
    return outcome


class Cast:
    """Juma with KES 10,000 (cashed in at Ali's), Mama Mboga's till, and a phone line to
    ``app``'s webhook."""

    def __init__(self, app):
        self.client = app.test_client()
        self.agent = person(**AGENT)
        self.juma = person(**CUSTOMER)
        self.merchant = person(**MERCHANT)
        cash_in(self.juma, self.agent)
        # Plain numbers: they outlive the sessions the worker's jobs end.
        self.account = self.juma.account_id
        self.shop = self.merchant.account_id


@pytest.fixture
def cast(backend_app):
    """The cast on SQLite and on PostgreSQL: for the tests where money moves."""
    return Cast(backend_app)


@pytest.fixture
def people(app):
    """The cast on the default database: for the tests of screens."""
    return Cast(app)


def active(cast, *, limit="100", period="2") -> str:
    """Juma starts an allowance to Mama Mboga from the menu; the worker makes it active."""
    phone = dial(cast.client)
    phone.send(ALLOWANCES)
    phone.send("1")
    phone.send(TILL)
    phone.send(limit)
    phone.send(period)
    phone.send("1")
    assert phone.send(PIN).startswith("END Allowance to Mama Mboga active")
    work()
    found = only_allowance()
    assert found.state == al.State.ACTIVE
    return found.id


# -- the menu --------------------------------------------------------------------------------


def test_the_customer_menu_offers_allowances_on_its_next_page(people):
    client = people.client
    phone = Screens(client, JUMA)
    assert phone.dial().endswith("\n9. My requests\n98. More")
    assert phone.send("98").endswith(f"\n{ALLOWANCES}. Allowances\n0. Back")
    assert phone.send(ALLOWANCES) == "CON Allowances\n1. Start an allowance\n2. My allowances"
    # The item works from the first page too, and in Kiswahili.
    assert dial(client).send(ALLOWANCES) == "CON Allowances\n1. Start an allowance\n2. My allowances"
    juma = find_by_phone(db.session, JUMA)
    juma.language = "sw"
    db.session.commit()
    phone = dial(client)
    assert phone.send("98").endswith(f"\n{ALLOWANCES}. Vibali vya malipo\n0. Rudi")
    assert phone.send(ALLOWANCES) == "CON Vibali vya malipo\n1. Anzisha kibali\n2. Vibali vyangu"
    assert dial(client).send(ALLOWANCES).startswith("CON Vibali vya malipo\n")


def test_merchants_and_agents_have_no_allowances_menu(people):
    client = people.client
    for number in (MERCHANT["phone"], AGENT["phone"]):
        phone = Screens(client, number)
        assert "Allowances" not in phone.dial()
        assert "Allowances" not in phone.send("98")


def test_a_locked_customer_cannot_start_one(people):
    client = people.client
    juma = find_by_phone(db.session, JUMA)
    juma.locked_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    assert Screens(client, JUMA).dial().startswith("END Your PIN is locked")


# -- start one from the menu -----------------------------------------------------------------


def test_start_an_allowance_from_the_menu_and_the_worker_makes_it_active(cast):
    client = cast.client
    phone = dial(client)
    phone.send(ALLOWANCES)
    assert phone.send("1") == "CON Start an allowance\nEnter till number"
    assert phone.send(TILL) == ("CON Allowance to Mama Mboga\nEnter the limit per period")
    assert phone.send("100") == (
        "CON How often does the limit of KES 100.00 start again?\n1. Daily\n2. Weekly\n3. Monthly"
    )
    assert phone.send("2") == (
        "CON Allow Mama Mboga (123456) up to KES 100.00 a week? Charges are free; the merchant"
        " pays the fee.\n1. Confirm\n2. Cancel"
    )
    assert phone.send("1") == "CON Enter your PIN to allow Mama Mboga up to KES 100.00 a week"
    assert phone.send("1111") == (
        "CON Wrong PIN. 2 tries left.\nEnter your PIN to allow Mama Mboga up to KES 100.00 a week"
    )
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 0
    done = phone.send(PIN)
    assert done == (
        "END Allowance to Mama Mboga active once the money is held. You will get one SMS per settlement."
    )
    assert phone.repeat() == done  # the gateway's retry records nothing twice
    started = only_allowance()
    assert (started.state, started.limit_amount, started.max_charge, started.period) == (
        al.State.APPROVING,
        100_00,
        100_00,
        "week",
    )
    assert started.merchant_account_id == cast.shop
    assert find_by_phone(db.session, JUMA).pin_failures == 0  # the right PIN reset the count
    work()
    assert only_allowance().state == al.State.ACTIVE
    assert available(cast.account) == FUNDS - 100_00  # the week's limit is held
    # My allowances says so.
    phone = dial(client)
    phone.send(ALLOWANCES)
    assert phone.send("2") == "CON My allowances\n1. Mama Mboga: KES 100.00 left"
    ledger_ok()


def test_wrong_input_on_the_way_says_why_and_0_goes_back(people):
    client = people.client
    create_user(
        db.session,
        phone="+254700000003",
        name="Kisumu Water",
        role="merchant",
        pin="2222",
        till="888880",
        paybill=True,
    )
    db.session.commit()
    phone = dial(client)
    phone.send(ALLOWANCES)
    phone.send("1")
    prompt = "Start an allowance\nEnter till number"
    assert phone.send("12") == f"CON A till number is 5 to 7 digits.\n{prompt}"
    assert phone.send("999999") == f"CON Till 999999 is not on Tuma.\n{prompt}"
    assert phone.send("888880") == f"CON 888880 is not a merchant's till.\n{prompt}"
    amount = "Allowance to Mama Mboga\nEnter the limit per period"
    assert phone.send(TILL) == f"CON {amount}"
    for wrong in ("000", "abc", "12.50", "-5", "99999999999"):
        assert phone.send(wrong) == f"CON Enter a whole amount, like 500.\n{amount}"
    assert phone.send("0") == f"CON {prompt}"  # back to the till
    assert phone.send(TILL) == f"CON {amount}"
    phone.send("50")
    assert phone.send("7").startswith("CON Invalid choice.\nHow often")
    assert phone.send("1").startswith("CON Allow Mama Mboga (123456) up to KES 50.00 a day?")
    assert phone.send("0").startswith("CON How often does the limit of KES 50.00")
    assert phone.send("3").startswith("CON Allow Mama Mboga (123456) up to KES 50.00 a month?")
    assert phone.send("2") == "END Cancelled. Nothing was sent."
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 0


def test_the_limit_is_checked_against_the_customers_own_limits_before_the_pin(config, people):
    client = people.client
    config(LIMITS_BASIC_MAJOR="1000,2000,5000")
    phone = dial(client)
    phone.send(ALLOWANCES)
    phone.send("1")
    phone.send(TILL)
    assert phone.send("1500") == (
        "CON Over your limit of KES 1,000.00 per transaction.\n"
        "Allowance to Mama Mboga\nEnter the limit per period"
    )
    assert phone.send("1000").startswith("CON How often does the limit of KES 1,000.00")


def test_not_enough_money_to_hold_the_limit(people):
    client = people.client
    phone = dial(client)
    for value in (ALLOWANCES, "1", TILL, "20000", "3", "1"):
        phone.send(value)
    assert phone.send(PIN) == ("END Not enough money to hold KES 20,000.00. Your balance is KES 10,000.00.")
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 0


def test_three_wrong_pins_lock_the_account_and_start_nothing(people):
    client = people.client
    phone = dial(client)
    for value in (ALLOWANCES, "1", TILL, "100", "2", "1"):
        phone.send(value)
    phone.send("1111")
    phone.send("2222")
    assert phone.send("3333").startswith("END Your PIN is locked")
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 0
    assert Screens(client, JUMA).dial().startswith("END Your PIN is locked")


def test_a_dropped_session_resumes_at_the_confirm_screen_and_no_pin_is_kept(redis, people):
    client = people.client
    phone = dial(client)
    for value in (ALLOWANCES, "1", TILL, "100", "2"):
        phone.send(value)
    again = Screens(client, JUMA)
    assert again.dial() == ("CON Continue starting an allowance to Mama Mboga?\n1. Yes\n2. No, start again")
    assert again.send("1").startswith("CON Allow Mama Mboga (123456) up to KES 100.00 a week?")
    again.send("1")
    assert again.send(PIN).startswith("END Allowance to Mama Mboga active")
    # Recorded: the first session's snapshot is not offered again, and no PIN is stored.
    assert not is_resume_offer(Screens(client, JUMA).dial())
    assert leaks_in_redis(redis) == []


def test_an_allowance_approved_meanwhile_is_never_continued(people):
    """The offer to continue is checked against what was recorded (``views.already_recorded``):
    a session offered a start the first session then approved ends instead of a second one."""
    client = people.client
    first = dial(client)
    for value in (ALLOWANCES, "1", TILL, "100", "2"):
        first.send(value)
    second = Screens(client, JUMA)
    assert is_resume_offer(second.dial())  # offered while still unfinished
    first.send("1")
    assert first.send(PIN).startswith("END Allowance to Mama Mboga active")
    assert second.send("1") == "END What you started last time is already done. Check your SMS."
    assert db.session.execute(select(func.count()).select_from(al.Allowance)).scalar_one() == 1


# -- My approvals ----------------------------------------------------------------------------


def test_approve_in_my_approvals_with_the_pin_then_the_worker_makes_it_active(cast):
    client = cast.client
    allowance_id = asked(cast.merchant)
    phone = dial(client)
    assert phone.send(APPROVALS) == (
        "CON Waiting for your approval:\n1. Allow Mama Mboga KES 100.00 a week, max KES 5.00 each"
    )
    assert phone.send("1") == (
        "CON Allow Mama Mboga to charge up to KES 100.00 a week, at most KES 5.00 a charge?"
        " The limit is held each period.\nDaily articles\n1. Approve\n2. Decline"
    )
    assert phone.send("1") == "CON Enter your PIN to approve"
    assert phone.send("0000").startswith("CON Wrong PIN. 2 tries left.")
    assert allowance(allowance_id).state == al.State.AWAITING_APPROVAL
    assert phone.send(PIN) == (
        "END Approved. The allowance is active once the money is held. You will get one SMS per settlement."
    )
    assert allowance(allowance_id).state == al.State.APPROVING
    work()
    assert allowance(allowance_id).state == al.State.ACTIVE
    assert available(cast.account) == FUNDS - 100_00
    assert dial(client).send(APPROVALS) == "END Nothing is waiting for your approval."
    ledger_ok()


def test_approving_over_the_customers_own_limit_is_refused_before_the_pin(config, people):
    client = people.client
    config(LIMITS_BASIC_MAJOR="1000,2000,5000")
    allowance_id = asked(people.merchant, limit=1_500_00)
    phone = dial(client)
    phone.send(APPROVALS)
    phone.send("1")
    assert phone.send("1") == ("CON Over your limit of KES 1,000.00 per transaction.\n1. Approve\n2. Decline")
    assert allowance(allowance_id).state == al.State.AWAITING_APPROVAL


def test_an_allowance_whose_limit_cannot_be_held_shows_as_paused(cast):
    client = cast.client
    allowance_id = asked(cast.merchant, limit=20_000_00, most=10_00, period="month")
    phone = dial(client)
    for value in (APPROVALS, "1", "1"):
        phone.send(value)
    assert phone.send(PIN).startswith("END Approved.")
    work()  # the hold is refused: Juma has KES 10,000
    assert allowance(allowance_id).state == al.State.PAUSED
    assert sms_to(JUMA)[-1].startswith("Allowance for MAMA MBOGA paused")
    assert available(cast.account) == FUNDS
    phone = dial(client)
    phone.send(ALLOWANCES)
    assert phone.send("2") == "CON My allowances\n1. Mama Mboga: paused"
    assert phone.send("1") == (
        "CON Mama Mboga\nKES 20,000.00 a month, KES 20,000.00 left\n"
        "Paused: not enough money to hold the limit.\n1. Latest charges\n2. Cancel allowance"
    )
    assert phone.send("1") == "CON No charges yet."
    phone.send("0")
    phone.send("2")
    phone.send("1")
    assert phone.send(PIN) == (
        "END Allowance to Mama Mboga cancelled. Nothing was charged; any money held is yours again."
    )
    assert allowance(allowance_id).state == al.State.CANCELLED
    ledger_ok()


def test_decline_in_my_approvals(people):
    client = people.client
    allowance_id = asked(find_by_phone(db.session, MERCHANT["phone"]))
    phone = dial(client)
    phone.send(APPROVALS)
    phone.send("1")
    phone.send("2")
    assert phone.send(PIN) == "END Declined."
    assert allowance(allowance_id).state == al.State.DECLINED


def test_a_long_merchant_name_gives_way_to_the_figures(people):
    client = people.client
    long_name = create_user(
        db.session,
        phone="+254700000004",
        name="Nairobi Evening Chronicle Digital Edition",
        role="merchant",
        pin="2222",
        till="777777",
    )
    db.session.commit()
    asked(long_name, limit=10_000_00, most=1_000_00, period="month")
    line = dial(client).send(APPROVALS).splitlines()[1]
    assert line.endswith("KES 10,000.00 a month, max KES 1,000.00 each"), line
    assert gsm7.length(line) <= len("1. ") + 60


# -- My allowances ---------------------------------------------------------------------------


def test_my_allowances_shows_what_is_left_after_charges_and_the_charges_five_a_screen(cast):
    client = cast.client
    allowance_id = active(cast)
    for n in range(1, 8):
        assert charge(allowance_id, cast.shop, 2_00, f"ART-{n}", n).ok
    phone = dial(client)
    phone.send(ALLOWANCES)
    assert phone.send("2") == "CON My allowances\n1. Mama Mboga: KES 86.00 left"
    details = phone.send("1")
    assert re.fullmatch(
        r"CON Mama Mboga\nKES 100\.00 a week, KES 86\.00 left\n"
        r"Until \d\d/\d\d/\d\d \d\d:\d\d: 7 charges\n1\. Latest charges\n2\. Cancel allowance",
        details,
    ), details
    first = phone.send("1")
    lines = first[4:].splitlines()
    assert len(lines) == 6 and lines[-1] == "98. More", first
    for line, n in zip(lines, range(7, 2, -1), strict=False):  # newest first
        assert re.fullmatch(rf"\d\d/\d\d \d\d:\d\d KES 2\.00 ART-{n}", line), line
    second = phone.send("98")
    assert [line.split()[-1] for line in second[4:].splitlines()] == ["ART-2", "ART-1"]
    assert phone.send("98") == "CON Invalid.\n" + second[4:]  # nothing older
    assert phone.send("0") == first  # back a screen
    assert phone.send("0") == details
    assert phone.send("0") == "CON My allowances\n1. Mama Mboga: KES 86.00 left"
    # Juma's allowances are his: another customer sees none of them.
    person(**SECOND_CUSTOMER)
    other = dial(client, SECOND_CUSTOMER["phone"])
    other.send(ALLOWANCES)
    assert other.send("2") == "END You have no allowances."


def test_cancel_with_the_pin_settles_what_was_charged_with_one_sms(cast):
    client = cast.client
    allowance_id = active(cast)
    for n in range(1, 4):
        assert charge(allowance_id, cast.shop, 5_00, f"R{n}", n).ok
    before = len(sms_to(JUMA))
    phone = dial(client)
    for value in (ALLOWANCES, "2", "1"):
        phone.send(value)
    assert phone.send("2") == (
        "CON Cancel your allowance to Mama Mboga? What it charged this period is settled now."
        "\n1. Confirm\n2. Cancel"
    )
    assert phone.send("2") == "END Nothing changed. Your allowance goes on."
    assert allowance(allowance_id).state == al.State.ACTIVE
    phone = dial(client)
    for value in (ALLOWANCES, "2", "1", "2", "1"):
        phone.send(value)
    assert phone.send("1234").startswith("CON Wrong PIN. 2 tries left.\nEnter your PIN to cancel")
    assert allowance(allowance_id).state == al.State.ACTIVE
    assert phone.send(PIN) == (
        "END Allowance to Mama Mboga cancelled. Settled now: KES 15.00 for 3 charges. You will get an SMS."
    )
    work()
    assert allowance(allowance_id).state == al.State.CANCELLED
    assert available(cast.account) == FUNDS - 15_00  # the rest of the hold is back
    assert len(sms_to(JUMA)) == before + 1  # one SMS for the settlement, none per charge
    assert available(cast.shop) > 0
    phone = dial(client)
    phone.send(ALLOWANCES)
    assert phone.send("2") == "END You have no allowances."
    ledger_ok()


def test_kiswahili_screens(people):
    client = people.client
    juma = find_by_phone(db.session, JUMA)
    juma.language = "sw"
    db.session.commit()
    phone = dial(client)
    assert phone.send(ALLOWANCES) == "CON Vibali vya malipo\n1. Anzisha kibali\n2. Vibali vyangu"
    assert phone.send("1") == "CON Anzisha kibali\nWeka nambari ya till"
    assert phone.send(TILL) == "CON Kibali kwa Mama Mboga\nWeka kikomo kwa kipindi"
    assert phone.send("100") == (
        "CON Kikomo cha KES 100.00 kianze upya mara ngapi?\n1. Kila siku\n2. Kila wiki\n3. Kila mwezi"
    )
    assert phone.send("3") == (
        "CON Ruhusu Mama Mboga (123456) hadi KES 100.00 kwa mwezi? Malipo ni bure; mfanyabiashara"
        " analipa ada.\n1. Thibitisha\n2. Ghairi"
    )
    assert phone.send("1") == "CON Weka PIN yako kuruhusu Mama Mboga hadi KES 100.00 kwa mwezi"
    assert phone.send(PIN) == (
        "END Kibali kwa Mama Mboga kitaanza pesa zikishikiliwa. Utapata SMS moja kwa kila malipo ya jumla."
    )
    # A merchant's ask, in My approvals.
    asked(people.merchant, allowance_id="al_test2")
    phone = dial(client)
    assert phone.send(APPROVALS) == (
        "CON Zinasubiri idhini yako:\n1. Ruhusu Mama Mboga KES 100.00 kwa wiki, hadi KES 5.00/malipo"
    )
    assert phone.send("1") == (
        "CON Ruhusu Mama Mboga kutoza hadi KES 100.00 kwa wiki, isizidi KES 5.00 kwa malipo? Kiasi"
        " hicho hushikiliwa kila kipindi.\nDaily articles\n1. Idhinisha\n2. Kataa"
    )
