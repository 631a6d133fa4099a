"""Tips and donations (issue 18 item 2): a customer tips a cause by USSD; small tips send no
SMS to either party (the code is on the END screen and in the statement); the cause gets one
digest SMS a day; anyone texts ``TOTAL <code>`` to learn what a cause received this month."""

import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.escrow_helpers import FUNDS, PIN, cash_in, funded_customer, ledger_ok, sms_to
from tests.sms_helpers import outbox
from tests.ussd_helpers import CUSTOMER, MERCHANT, Phone, available, options, screen
from tests.worker_helpers import run_burst_worker
from ussd_app.extensions import db
from ussd_app.payments.models import RequestKind, RequestStatus, TransferRequest
from ussd_app.payments.tips import TipDigest
from ussd_app.users import find_by_phone
from worker import jobs

CAUSE_PHONE, CAUSE_CODE, CAUSE_PIN = "+254700000055", "55555", "5555"
STRANGER = "+254712000909"


def create_cause(runner, *, language="en", name="Mtoto Fund", phone=CAUSE_PHONE, code=CAUSE_CODE):
    """A cause, opened the way the operator does it (the CLI)."""
    args = ["accounts", "create", "--role", "cause", "--phone", phone, "--name", name]
    result = runner.invoke(args=[*args, "--pin", CAUSE_PIN, "--till", code, "--language", language])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"created cause {name} {phone}")
    return find_by_phone(db.session, phone)


@pytest.fixture
def cause(runner):
    """Mtoto Fund, a cause with code 55555."""
    return create_cause(runner)


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def tip_menu(phone: Phone) -> str:
    """Dial and choose Tip or donate, wherever the menu has it (paging with 98)."""
    body = phone.dial()
    for _ in range(3):
        found = {label: number for number, label in options(body).items()}
        if "Tip or donate" in found:
            return phone.send(found["Tip or donate"])
        body = phone.send("98")
    raise AssertionError(f"no Tip or donate in the customer menu: {body}")


def tip(client, amount: str, *, number="0712000111", code=CAUSE_CODE, pin=PIN) -> str:
    """A whole tip by USSD; the END screen."""
    phone = Phone(client, number)
    assert tip_menu(phone) == "CON Tip or donate\nEnter the cause's code"
    assert phone.send(code).startswith("CON Tip ")
    assert phone.send(amount).startswith(f"CON Tip KES {amount}.00 to ")
    assert phone.send("1").startswith("CON Enter your PIN to tip")
    return phone.send(pin)


def text_us(client, phone: str, body: str, _ids=iter(range(1, 10_000))):
    fields = {"from": phone, "to": "22384", "text": body, "id": f"at-tips-{next(_ids)}"}
    assert client.post("/sms/inbound", data=fields).status_code == 200
    return sms_to(phone)[-1]


def tips() -> list[TransferRequest]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(TransferRequest)
            .where(TransferRequest.kind == RequestKind.TIP.value)
            .order_by(TransferRequest.created_at)
        ).scalars()
    )


def test_three_small_tips_reach_the_cause_with_no_sms_and_total_tells_their_sum(backend_app):
    client, runner = backend_app.test_client(), backend_app.test_cli_runner()
    juma = funded_customer()
    cause = create_cause(runner)
    cause_account = cause.account_id
    before = len(outbox())

    phone = Phone(client, "0712000111")
    assert tip_menu(phone) == "CON Tip or donate\nEnter the cause's code"
    assert phone.send(CAUSE_CODE) == "CON Tip Mtoto Fund\nEnter amount"
    assert phone.send("5") == "CON Tip KES 5.00 to Mtoto Fund (55555)?\nFree: no fee.\n1. Confirm\n2. Cancel"
    assert phone.send("1") == "CON Enter your PIN to tip KES 5.00 to Mtoto Fund"
    ends = [phone.send(PIN)]
    ends += [tip(client, "5"), tip(client, "5")]
    run_burst_worker()  # the real worker: the batch, then any SMS it wrote

    recorded = tips()
    assert [(t.amount, t.fee, t.status) for t in recorded] == [(5_00, 0, RequestStatus.ACCEPTED.value)] * 3
    assert ends == [
        f"END Tipping KES 5.00 to Mtoto Fund. Code {t.code}. No SMS for small tips: see My account."
        for t in recorded
    ]
    assert available(cause_account) == 15_00
    assert available(juma) == FUNDS - 15_00
    # No SMS to either party: not the tipper's receipt, not the cause's.
    assert len(outbox()) == before
    assert sms_to(CAUSE_PHONE) == []

    # Anyone may ask what the cause has received this month, in any spelling.
    month = datetime.now(ZoneInfo(backend_app.config["TIMEZONE"])).strftime("01/%m/%y")
    expected = f"Tips and donations to MTOTO FUND (code 55555) since {month}: 3, total KES 15.00."
    assert text_us(client, STRANGER, "TOTAL 55555") == expected
    assert text_us(client, STRANGER, "total 55555") == expected
    assert text_us(client, CUSTOMER["phone"], "  Total   55555 ") == expected

    # The tipper's statement shows each tip under its code.
    statement = screen(Phone(client, "0712000111").walk("2", "2", PIN))
    for t in recorded:
        assert f"{t.code} -KES 5.00 Mtoto Fund" in statement
    ledger_ok()


def test_a_tip_above_the_silent_max_is_priced_like_a_send_and_gets_receipts(client, juma, cause):
    phone = Phone(client, "0712000111")
    tip_menu(phone)
    phone.send(CAUSE_CODE)
    # Above the free band: the send's fee, said before the PIN.
    assert phone.send("150") == (
        "CON Tip KES 150.00 to Mtoto Fund (55555)?\nFee: KES 7.00\n1. Confirm\n2. Cancel"
    )
    phone.send("1")
    end = phone.send(PIN)
    assert jobs.execute_transfers() == 1
    [request] = tips()
    assert end == (
        f"END Tipping KES 150.00 to Mtoto Fund. Code {request.code}. "
        "You will receive an SMS confirmation shortly."
    )
    assert (request.amount, request.fee) == (150_00, 7_00)
    [to_cause] = sms_to(CAUSE_PHONE)
    assert to_cause.startswith(
        f"{request.code} Confirmed. Tip of KES 150.00 from JUMA OTIENO +254712000111 on "
    )
    assert to_cause.endswith("New balance is KES 150.00.")
    to_juma = sms_to(CUSTOMER["phone"])[-1]
    assert to_juma.startswith(f"{request.code} Confirmed. You gave KES 150.00 to MTOTO FUND (55555) on ")
    assert "Transaction cost, KES 7.00." in to_juma
    assert available(juma) == FUNDS - 157_00
    ledger_ok()


def test_the_silent_max_is_a_setting(client, juma, cause, config):
    config(TIP_SILENT_MAX_MAJOR=3)
    end = tip(client, "5")
    assert end.endswith("You will receive an SMS confirmation shortly.")
    jobs.execute_transfers()
    assert len(sms_to(CAUSE_PHONE)) == 1


def test_only_a_cause_takes_tips(client, juma, cause, merchant):
    phone = Phone(client, "0712000111")
    tip_menu(phone)
    assert phone.send(MERCHANT["till"]) == (
        "CON 123456 is a business till, not a cause. Pay it with Buy goods.\n"
        "Tip or donate\nEnter the cause's code"
    )
    assert phone.send("77777") == (
        "CON No cause has code 77777 on Tuma.\nTip or donate\nEnter the cause's code"
    )
    assert phone.send("0712000222") == (
        "CON Tips go to a cause's code. To send to a person, use Send money.\n"
        "Tip or donate\nEnter the cause's code"
    )
    assert phone.send("12ab").startswith("CON A cause's code is 5 to 7 digits.")
    assert phone.send(CAUSE_CODE) == "CON Tip Mtoto Fund\nEnter amount"
    assert phone.send("0").startswith("CON Tip or donate")  # back to the code
    assert tips() == []


def test_total_never_tells_a_merchants_takings(client, juma, cause, merchant):
    # The merchant has takings: the answer is the same as for an unknown code or garbage.
    Phone(client, "0712000111").walk("5", MERCHANT["till"], "250", "1", PIN)
    assert jobs.execute_transfers() == 1
    answers = {
        text_us(client, STRANGER, words)
        for words in ("TOTAL 123456", "TOTAL 77777", "TOTAL banana", "TOTAL", "total 12 3456x")
    }
    assert answers == {
        "Tuma has no cause with that code. To see what a cause has received, send TOTAL and its code."
    }
    assert "250" not in next(iter(answers))


def test_amounts_and_limits_are_said_before_the_pin(client, juma, cause, config):
    config(LIMITS_BASIC_MAJOR="50,60,100000")  # per transfer, per day, balance
    phone = Phone(client, "0712000111")
    tip_menu(phone)
    phone.send(CAUSE_CODE)
    assert phone.send("0").startswith("CON Tip or donate")
    phone.send(CAUSE_CODE)
    assert phone.send("2.5").startswith("CON Enter a whole amount, like 20.\nTip Mtoto Fund")
    assert phone.send("0000").startswith("CON Enter a whole amount, like 20.")
    assert phone.send("51").startswith("CON Over your limit of KES 50.00 per transaction.\nTip Mtoto Fund")
    assert phone.send("1").startswith("CON Tip KES 1.00 to Mtoto Fund (55555)?")  # from KES 1
    assert phone.send("2") == "END Cancelled. Nothing was sent."
    # Tips count against the daily limit: after KES 50 today, KES 11 more is over it.
    assert tip(client, "50").startswith("END Tipping KES 50.00")
    jobs.execute_transfers()
    other = Phone(client, "0712000111")
    tip_menu(other)
    other.send(CAUSE_CODE)
    assert other.send("11").startswith(
        "CON Over your daily limit of KES 60.00: KES 10.00 left today, fees included."
    )


def test_a_refused_tip_still_tells_the_tipper(client, customer, agent, cause):
    """Two tips recorded before the worker runs, the second more than is left: the first is
    silent, the second is refused and the tipper told (a refusal is never silent). A second
    tip typed at the menus is refused at its PIN (the first's, queued, counts against the
    balance); one recorded by another way (the library, as a standing order's) reaches the
    worker, which refuses it."""
    from ussd_app.payments.emoney import issue_float
    from ussd_app.payments.submit import mint_request_id, record_request

    issue_float(db.session, agent, 10_00, "BANK-2")
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=RequestKind.DEPOSIT.value,
        debit_account_id=agent.account_id,
        credit_account_id=customer.account_id,
        amount=10_00,
    )
    db.session.commit()
    jobs.execute_transfers()
    before = sms_to(CUSTOMER["phone"])
    assert tip(client, "8").startswith("END Tipping KES 8.00")
    assert tip(client, "8").startswith("END Not enough money")  # KES 2.00 left
    [first] = tips()
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind=first.kind,
        debit_account_id=first.debit_account_id,
        credit_account_id=first.credit_account_id,
        amount=first.amount,
        fee=first.fee,
    )
    db.session.commit()
    jobs.execute_transfers()
    accepted, refused = tips()
    assert (accepted.status, refused.status) == ("accepted", "rejected")
    [told] = sms_to(CUSTOMER["phone"])[len(before) :]
    assert told.startswith(f"{refused.code} Failed: tip of KES 8.00 not sent. Not enough money")
    assert sms_to(CAUSE_PHONE) == []
    ledger_ok_with_float(10_00)


def ledger_ok_with_float(deposits: int) -> None:
    from ussd_app.ledger.check import check

    failed = [f for f in check(db.session, trust_deposits_total=deposits) if not f.ok]
    assert not failed, failed


def _morning_after(day_of, hour: int = 9) -> datetime:
    """Naive UTC for ``hour`` o'clock (Nairobi) on the day after the local day of ``day_of``."""
    tz = ZoneInfo("Africa/Nairobi")
    local_day = day_of.replace(tzinfo=UTC).astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(local_day, time(hour), tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def test_the_digest_goes_once_a_day_to_each_cause_in_its_language(client, runner, juma, redis):
    create_cause(runner, language="sw", name="Maji Safi", phone="+254700000056", code="56565")
    create_cause(runner)  # tipped nothing: no digest
    for amount in ("5", "7"):
        tip(client, amount, code="56565")
    assert jobs.execute_transfers() == 2
    [first, _] = tips()
    morning = _morning_after(first.executed_at)

    assert jobs.write_tip_digests(now=morning - timedelta(hours=2)) == 0  # before the digest hour
    assert jobs.write_tip_digests(now=morning) == 1
    assert jobs.write_tip_digests(now=morning) == 0  # the day is marked done
    redis.flushdb()  # the mark lost: the row's key still makes it once
    assert jobs.write_tip_digests(now=morning + timedelta(hours=3)) == 0
    [digest] = sms_to("+254700000056")
    day = (morning - timedelta(days=1)).replace(tzinfo=UTC).astimezone(ZoneInfo("Africa/Nairobi"))
    assert digest.startswith(f"Tuma: michango kwa MAJI SAFI tarehe {day:%d/%m/%y}: 2, jumla KES 12.00.")
    assert digest.endswith("Salio sasa KES 12.00.")
    assert sms_to(CAUSE_PHONE) == []
    db.session.expire_all()
    [row] = db.session.execute(select(TipDigest)).scalars()
    assert (row.tips, row.amount) == (2, 12_00)


def test_two_digest_jobs_side_by_side_write_one_digest(backend_app):
    client, runner = backend_app.test_client(), backend_app.test_cli_runner()
    funded_customer()
    create_cause(runner)
    tip(client, "5")
    jobs.execute_transfers()
    [request] = tips()
    morning = _morning_after(request.executed_at)
    db.session.remove()
    start, counts = threading.Barrier(2), []

    def job():
        with backend_app.app_context():
            start.wait()
            counts.append(jobs.write_tip_digests(now=morning))
            db.session.remove()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(counts) == [0, 1]
    assert len(sms_to(CAUSE_PHONE)) == 1


def test_a_cause_has_its_own_menu_with_balance_and_statement(client, juma, cause):
    tip(client, "5")
    jobs.execute_transfers()
    phone = Phone(client, "0700000055")
    assert options(phone.dial()) == {"1": "Balance", "2": "Statement", "3": "My account"}
    assert phone.dial().startswith("CON Tuma Cause\n")
    assert "KES 5.00" in Phone(client, "0700000055").walk("1", CAUSE_PIN)
    statement = Phone(client, "0700000055").walk("2", CAUSE_PIN)
    assert "+KES 5.00 Juma Otieno" in statement


def test_a_cause_needs_its_code_and_is_never_paid_as_a_till(client, runner, juma):
    args = ["accounts", "create", "--role", "cause", "--phone", CAUSE_PHONE, "--name", "Mtoto Fund"]
    no_code = runner.invoke(args=[*args, "--pin", CAUSE_PIN])
    assert no_code.exit_code != 0 and "a cause needs a code" in no_code.output
    create_cause(runner)
    phone = Phone(client, "0712000111")
    phone.walk("5")
    assert phone.send(CAUSE_CODE).startswith(f"CON Till {CAUSE_CODE} is not on Tuma.")


def test_the_back_office_shows_a_cause_and_its_code(client, cause):
    from tests.admin_helpers import login, operator

    operator()
    login(client)
    page = client.get("/admin/accounts?q=Mtoto").get_data(as_text=True)
    assert "<td>cause</td>" in page and "code 55555" in page


def test_a_tariff_may_not_charge_small_tips(app):
    from ussd_app import tariffs

    document = tariffs.default_document()
    assert tariffs.quote("tip", 100_00) == 0 and tariffs.quote("tip", 101_00) == 7_00
    document["tip"] = {"bands": [[50_00, 0], [100_00, 1_00], [1_000_00, 5_00]]}
    with pytest.raises(tariffs.InvalidTariff, match="tip: up to KES 100 must stay free"):
        tariffs.validate(document)


def test_a_stored_tariff_without_tips_refuses_them_before_the_pin(client, juma, cause):
    """A tariff the operator stored before tips existed has no entry for them: tips are not
    taken (never free by accident, never a 500) until the operator prices them."""
    from ussd_app import tariffs

    document = tariffs.default_document()
    del document["tip"]
    tariffs.add_version(db.session, document, effective_from=datetime(2000, 1, 1), note="before tips")
    db.session.commit()
    phone = Phone(client, "0712000111")
    tip_menu(phone)
    phone.send(CAUSE_CODE)
    assert phone.send("5") == "END Tips cannot be taken right now. Nothing was sent."
    assert tips() == []


def test_the_tippers_code_checks_as_genuine_by_sms(client, juma, cause):
    end = tip(client, "5")
    jobs.execute_transfers()
    [request] = tips()
    assert f"Code {request.code}." in end
    reply = text_us(client, CUSTOMER["phone"], request.code)
    assert reply.startswith(f"{request.code} is genuine: KES 5.00 to MTOTO FUND +254700000055 on ")
    assert reply.endswith("Status: completed.")
