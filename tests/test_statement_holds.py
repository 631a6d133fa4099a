"""The mini statement shows what moved a person's available balance, once (issue 15 item 18,
attack on the fixes): a hold is one line, "(held)" while held, named after who finally got it;
the posting that resolves it is not a second debit; what came back (a void, the part a balance
limit returned) is a "+" line "(returned)". Through /ussd and the real worker jobs."""

import pytest

from tests.escrow_helpers import (
    FUNDS,
    PIN,
    buy_protected,
    cash_in,
    later,
    posted_send,
    sms_to,
    the_request,
)
from tests.sms_helpers import gateway  # noqa: F401  (a fixture)
from tests.ussd_helpers import Phone, available
from ussd_app.extensions import db
from ussd_app.payments import holds
from ussd_app.payments.models import RequestKind, transaction_code
from ussd_app.tariffs import quote
from ussd_app.ussd import gsm7
from worker import jobs

JUMA = "+254712000111"
NEWCOMER = "0712000999"


@pytest.fixture
def juma(customer, agent):
    """The cast's customer with KES 10,000 cashed in at the cast's agent."""
    return cash_in(customer, agent)


def statement(client, number=JUMA, pin=PIN, *menu) -> list[str]:
    """The statement SMS's lines (all of them; the screen shows those that fit)."""
    screen = Phone(client, number).walk(*(menu or ("2", "2")), pin)
    assert gsm7.fits(screen[4:]), screen
    body = sms_to(number)[-1]
    assert body.splitlines()[0] in ("Tuma mini statement:", "Taarifa fupi ya Tuma:"), body
    return body.splitlines()[1:]


def ends(lines: list[str], code: str) -> list[str]:
    """The line ends (amount and name) of ``code``'s lines."""
    return [line.split(" ", 2)[2] for line in lines if line.split(" ")[1] == code]


def send_unregistered(client, amount: str):
    phone = Phone(client, "0712000111")
    phone.walk("1", NEWCOMER, "1", amount, "1")
    assert phone.send(PIN).startswith("END Sending"), phone
    assert jobs.execute_transfers() == 1
    return the_request(RequestKind.SEND_UNREGISTERED)


def test_a_confirmed_protected_purchase_is_one_debit(client, juma, merchant):
    hold = buy_protected(client)
    assert ends(statement(client), hold.code) == ["-KES 300.00 Mama Mboga (held)"]
    Phone(client, "0712000111").walk("3", "1", "1", PIN)  # confirm delivery
    assert jobs.execute_transfers() == 1
    lines = statement(client)
    assert ends(lines, hold.code) == ["-KES 300.00 Mama Mboga"]
    assert [x for x in lines if "-KES 300.00" in x] == [x for x in lines if hold.code in x], lines
    # The merchant: one line, what reached them (net of their fee), once it is theirs.
    merchant_lines = statement(client, "+254700000002", "2222", "2")
    assert [x.split(" ", 2)[2] for x in merchant_lines] == ["+KES 298.50 Juma Otieno"], merchant_lines


def test_a_protected_purchase_refunded_comes_back_and_the_merchant_sees_nothing(
    client, runner, juma, merchant
):
    hold = buy_protected(client)
    Phone(client, "0712000111").walk("3", "1", "2", PIN)  # dispute
    result = runner.invoke(args=["disputes", "decide", "--code", hold.code, "--for", "buyer"])
    assert result.exit_code == 0, result.output
    lines = statement(client)
    assert ends(lines, hold.code) == ["-KES 300.00 Mama Mboga"]
    assert [x.split(" ", 2)[2] for x in lines if x not in [y for y in lines if hold.code in y]][0] == (
        "+KES 300.00 Mama Mboga (returned)"
    )
    merchant_screen = Phone(client, "0700000002").walk("2", "2222")
    assert hold.code not in merchant_screen and "300.00" not in merchant_screen, merchant_screen


def test_a_send_to_a_number_that_registered_is_one_debit_named_after_them(client, juma):
    hold = send_unregistered(client, "5000")
    fee = quote("send", 5_000_00)
    total = f"KES {(5_000_00 + fee) // 100:,}.{(5_000_00 + fee) % 100:02d}"
    assert ends(statement(client), hold.code) == [f"-{total} +254712000999 (held)"]
    assert Phone(client, NEWCOMER).walk("1", "Neo", "Mwangi", "2468", "2468").startswith("END Welcome")
    assert jobs.execute_transfers() == 1
    lines = statement(client)
    assert ends(lines, hold.code) == [f"-{total} Neo Mwangi"]
    assert not any("-KES 5,000.00" in x for x in lines), lines  # the posting is no second debit
    assert [x.split(" ", 2)[2] for x in statement(client, "+254712000999", "2468")] == [
        "+KES 5,000.00 Juma Otieno"
    ]


def test_the_part_a_balance_limit_returned_is_a_plus_line(client, app, juma, monkeypatch):
    monkeypatch.setitem(app.config, "LIMITS_BASIC_MAJOR", "70000,150000,2000")  # the newcomer: KES 2,000
    hold = send_unregistered(client, "5000")
    fee = quote("send", 5_000_00)
    Phone(client, NEWCOMER).walk("1", "Neo", "Mwangi", "2468", "2468")
    assert jobs.execute_transfers() == 1
    resolution = holds.resolution_id(hold.id)
    lines = statement(client)
    total = f"KES {(5_000_00 + fee) // 100:,}.{(5_000_00 + fee) % 100:02d}"
    assert ends(lines, hold.code) == [f"-{total} Neo Mwangi"]
    assert ends(lines, transaction_code(resolution)) == ["+KES 3,000.00 Neo Mwangi (returned)"]
    assert len(lines) == 3, lines  # and the deposit: nothing else
    assert available(juma) == FUNDS - 2_000_00 - fee


def test_a_send_to_an_unregistered_number_refunded_is_a_plus_line(client, juma):
    hold = send_unregistered(client, "500")
    assert holds.resolve_due(db.session, now=later(8))
    db.session.commit()
    lines = statement(client)
    fee = quote("send", 500_00)
    assert ends(lines, hold.code) == [f"-KES {(500_00 + fee) / 100:,.2f} +254712000999"]
    assert ends(lines, transaction_code(holds.resolution_id(hold.id))) == [
        "+KES 500.00 +254712000999 (returned)"
    ]


def buy_airtime(client, number="0799000111", amount="250"):
    phone = Phone(client, "0712000111")
    phone.walk("7", "2", number, amount, "1")
    assert phone.send(PIN).startswith("END Buying")
    assert jobs.execute_transfers() == 1
    return the_request(RequestKind.AIRTIME)


def test_airtime_sent_is_one_line_and_refused_airtime_comes_back(client, juma, gateway):  # noqa: F811
    gateway.airtime.fail("+254799000222")
    sent = buy_airtime(client)
    assert ends(statement(client), sent.code) == ["-KES 250.00 +254799000111 (held)"]
    assert jobs.buy_airtime() == {"sent": 1, "failed": 0, "retry": 0}
    assert ends(statement(client), sent.code) == ["-KES 250.00 +254799000111"]
    assert not any("-KES 250.00" in x and sent.code not in x for x in statement(client))


def test_refused_airtime_is_a_plus_line_in_kiswahili_too(client, juma, gateway):  # noqa: F811
    gateway.airtime.fail("+254799000222")
    assert Phone(client, "0712000111").walk("2", "4", "2").startswith("END ")  # Kiswahili
    phone = Phone(client, "0712000111")
    phone.walk("7", "2", "0799000222", "60", "1")
    assert phone.send(PIN).startswith("END ")
    assert jobs.execute_transfers() == 1
    refused = the_request(RequestKind.AIRTIME)
    assert jobs.buy_airtime() == {"sent": 0, "failed": 1, "retry": 0}
    lines = statement(client)
    assert ends(lines, refused.code) == ["-KES 60.00 +254799000222"]
    assert ends(lines, transaction_code(holds.resolution_id(refused.id))) == [
        "+KES 60.00 +254799000222 (imerudishwa)"
    ]


WANJIRU = "+254712000222"


@pytest.fixture
def wrong_send(juma, second_customer):
    """Juma sent KES 500 to Wanjiru by mistake, and asked for it back (a reversal hold)."""
    return posted_send(juma, second_customer.account_id).code


def reverse(client, code: str):
    phone = Phone(client, "0712000111")
    phone.walk("2", "5", code, "1")
    assert phone.send(PIN).startswith("END Reversal of")
    assert jobs.execute_transfers() == 1
    return the_request(RequestKind.REVERSAL)


def wanjiru_decides(client, choice: str):
    phone = Phone(client, "0712000222")
    phone.walk("3", "1", choice)
    assert phone.send("9753").startswith("END ")
    assert jobs.execute_transfers() == 1


def test_a_reversal_agreed_is_one_line_each_side(client, wrong_send):
    hold = reverse(client, wrong_send)
    assert ends(statement(client, WANJIRU, "9753"), hold.code) == ["-KES 500.00 Juma Otieno (held)"]
    assert ends(statement(client), hold.code) == ["+KES 500.00 Wanjiru Kamau (held)"]
    wanjiru_decides(client, "1")
    resolution = transaction_code(holds.resolution_id(hold.id))
    wanjiru = statement(client, WANJIRU, "9753")
    assert ends(wanjiru, hold.code) == ["-KES 500.00 Juma Otieno"] and ends(wanjiru, resolution) == []
    juma = statement(client)
    assert ends(juma, hold.code) == [] and ends(juma, resolution) == ["+KES 500.00 Wanjiru Kamau"]


def test_a_reversal_refused_comes_back_to_the_recipient(client, wrong_send):
    hold = reverse(client, wrong_send)
    wanjiru_decides(client, "2")
    void = transaction_code(holds.resolution_id(hold.id))
    wanjiru = statement(client, WANJIRU, "9753")
    assert ends(wanjiru, hold.code) == ["-KES 500.00 Juma Otieno"]
    assert ends(wanjiru, void) == ["+KES 500.00 Juma Otieno (returned)"]
    juma = statement(client)  # nothing of Juma's moved: no line for the hold or its void
    assert ends(juma, hold.code) == [] and ends(juma, void) == []
