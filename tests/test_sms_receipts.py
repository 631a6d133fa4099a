"""Receipts as people get them: through the worker, the outbox, the real africastalking SDK
and the local gateway, each party in their own language."""

import re

from sqlalchemy import select

from tests import sms_helpers
from tests.sms_helpers import Person, agent_with_float, execute, outbox, person, send
from ussd_app import limits
from ussd_app.extensions import db
from ussd_app.messages import inbound, when
from ussd_app.messages.receipts import FAILED, REASON_OTHER, REASONS, RECEIPTS
from ussd_app.money import format_amount
from ussd_app.payments.models import TransferRequest
from ussd_app.tariffs import quote
from ussd_app.users import find_by_phone
from worker import jobs

gateway = sms_helpers.gateway  # the fixture

GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€")


def septets(text: str) -> int:
    assert all(c in GSM7 or c in GSM7_EXTENDED for c in text), f"not GSM-7: {text!r}"
    return sum(2 if c in GSM7_EXTENDED else 1 for c in text)


def deliver():
    """What the SMS worker does after the transfer batch: hand the outbox to the gateway."""
    counts = jobs.send_sms()
    db.session.remove()
    return counts


def request_row(request_id):
    db.session.expire_all()
    return db.session.get(TransferRequest, request_id)


def only(gateway, phone):
    [message] = gateway.inbox(phone)
    return message.message


def test_send_gives_sender_and_recipient_their_receipts_through_the_gateway(app, gateway):
    agent = agent_with_float()
    amina = person("+254712000001", "Amina Hassan")
    baraka = person("+254712000002", "Baraka Otieno")
    send(agent, amina, 10_000_00)
    execute()
    deliver()
    rid = send(amina, baraka, 1_250_00)
    execute()
    assert deliver()["sent"] == 2

    request = request_row(rid)
    fee = quote("send", 1_250_00)
    left = limits.daily_limit("basic") - 1_250_00 - fee
    date, time_ = when(request.executed_at)
    assert re.fullmatch(r"[A-Z2-7]{10}", request.code)
    # Amina's first receipt was for the cash-in; the send's is the latest.
    amina_inbox = [m.message for m in gateway.inbox("+254712000001")]
    assert amina_inbox[-1] == (
        f"{request.code} Confirmed. KES 1,250.00 sent to BARAKA OTIENO +254712000002 on {date} at {time_}. "
        f"New balance is {format_amount(10_000_00 - 1_250_00 - fee)}. "
        f"Transaction cost, {format_amount(fee)}. "
        f"Amount you can transact within the day is {format_amount(left)}."
    )
    assert only(gateway, "+254712000002") == (
        f"{request.code} Confirmed. You have received KES 1,250.00 from AMINA HASSAN +254712000001 "
        f"on {date} at {time_}. New balance is KES 1,250.00."
    )
    # The gateway's answer is on the row: message id, status and cost.
    rows = outbox(transfer_request_id=rid)
    assert {r.status for r in rows} == {"sent"}
    assert all(r.gateway_message_id.startswith("ATXid_") and r.cost == "KES 0.8000" for r in rows)
    delivered = {m.id for m in gateway.inbox() if m.message.startswith(request.code)}
    assert {r.gateway_message_id for r in rows} == delivered
    assert all(m.sender == "TUMA" for m in gateway.inbox())


def test_each_party_reads_the_receipt_in_their_own_language(gateway, customer, second_customer):
    customer.language = "sw"  # the cast's customer reads Kiswahili; the second customer English
    juma = Person(customer.phone, customer.account_id)
    wanjiru = Person(second_customer.phone, second_customer.account_id)
    agent = agent_with_float()
    send(agent, juma, 5_000_00)
    execute()
    rid = send(juma, wanjiru, 700_00)
    execute()
    deliver()

    code = request_row(rid).code
    juma_says = gateway.inbox("+254712000111")[-1].message
    assert juma_says.startswith(
        f"{code} Imethibitishwa. KES 700.00 imetumwa kwa WANJIRU KAMAU +254712000222 tarehe "
    )
    assert "Gharama ya muamala, KES 13.00." in juma_says
    left = format_amount(limits.daily_limit("basic") - 700_00 - 13_00)
    assert f"Kiasi unachoweza kutuma leo ni {left}." in juma_says
    wanjiru_reads = only(gateway, "+254712000222")
    assert wanjiru_reads.startswith(
        f"{code} Confirmed. You have received KES 700.00 from JUMA OTIENO +254712000111"
    )
    # The cash-in receipt Juma got was in Kiswahili too.
    cash_in = gateway.inbox("+254712000111")[0].message
    assert "Umepokea KES 5,000.00 kutoka kwa ALI AGENT +254700000101" in cash_in


def test_merchant_and_agent_payees_get_their_own_templates(app, gateway):
    agent = agent_with_float()
    shop = person("+254712000021", "Duka Bora", role="merchant", till="123456", language="sw")
    other_agent = person("+254712000022", "Wakala Mkuu", role="agent")
    amina = person("+254712000023", "Amina Hassan")
    send(agent, amina, 3_000_00)
    execute()
    to_shop = send(amina, shop, 450_00)
    to_agent = send(amina, other_agent, 100_00)
    execute()
    deliver()

    shop_code, agent_code = request_row(to_shop).code, request_row(to_agent).code
    assert only(gateway, "+254712000021").startswith(
        f"{shop_code} Imethibitishwa. KES 450.00 kutoka kwa AMINA HASSAN +254712000023"
    )
    assert "Salio jipya la till ni KES 450.00." in only(gateway, "+254712000021")
    assert only(gateway, "+254712000022").startswith(
        f"{agent_code} Confirmed. KES 100.00 received from AMINA HASSAN +254712000023"
    )
    assert only(gateway, "+254712000022").endswith("New float balance is KES 100.00.")


def test_float_issue_tells_the_agent_in_their_language(app, gateway):
    agent_with_float(250_000_00, phone="+254712000031", name="Wakala Juma", language="sw")
    deliver()
    message = only(gateway, "+254712000031")
    assert re.fullmatch(
        r"[A-Z2-7]{10} Imethibitishwa\. E-float ya KES 250,000\.00 imetolewa kwako tarehe \d\d/\d\d/\d\d "
        r"saa \d\d:\d\d\. Salio jipya la float ni KES 250,000\.00\.",
        message,
    )


def test_insufficient_funds_tells_only_the_sender_why(app, gateway):
    amina = person("+254712000041", "Amina Hassan")
    baraka = person("+254712000042", "Baraka Otieno", language="sw")
    db.session.commit()
    rid = send(amina, baraka, 200_00)
    execute()
    deliver()

    code = request_row(rid).code
    assert only(gateway, "+254712000041").startswith(
        f"{code} Failed: KES 200.00 not sent. Not enough money for KES 200.00 plus KES 7.00 cost. "
    )
    assert only(gateway, "+254712000041").endswith("Balance KES 0.00.")
    assert gateway.inbox("+254712000042") == []


def test_left_today_counts_every_posted_send_of_the_day_in_batch_order(app, gateway):
    basic = app.config["LIMITS_BASIC_MAJOR"]
    app.config["LIMITS_BASIC_MAJOR"] = "1000,1000,100000"  # per transfer, daily, balance
    try:
        agent = agent_with_float()
        amina = person("+254712000051", "Amina Hassan")
        baraka = person("+254712000052", "Baraka Otieno")
        send(agent, amina, 5_000_00)
        execute()
        first = send(amina, baraka, 300_00)
        execute()
        second, third = send(amina, baraka, 400_00), send(amina, baraka, 250_00)
        execute()  # one batch: each receipt reports what was left after it
        deliver()

        # Receipts go out in the order the worker executed the requests; each reports the
        # limit minus everything posted today up to and including itself.
        fee = quote("send", 300_00)  # 300, 400 and 250 fall in the same band
        receipts = [m.message for m in gateway.inbox("+254712000051")][1:]
        spent, expected, reported = 0, [], []
        for text in receipts:
            amount = re.search(r"Confirmed\. KES ([\d,]+)\.00 sent", text).group(1)
            spent += int(amount.replace(",", "")) * 100 + fee
            expected.append(format_amount(max(0, 1_000_00 - spent)))
            reported.append(re.search(r"within the day is (KES [\d,.]+)\.$", text).group(1))
        assert len(receipts) == 3 and reported == expected
        assert reported[0] == format_amount(1_000_00 - 300_00 - fee)
        assert reported[-1] == format_amount(1_000_00 - 950_00 - 3 * fee)
        assert limits.left_today(db.session, amina.account_id) == 1_000_00 - 950_00 - 3 * fee
        assert {request_row(r).status for r in (first, second, third)} == {"accepted"}
    finally:
        app.config["LIMITS_BASIC_MAJOR"] = basic


def test_receipts_fit_one_segment_except_the_senders_which_fit_two(app, gateway):
    agent = agent_with_float()
    long_a = person("+254712000061", "Wanjiku Nyambura-Kamau")
    long_b = person("+254712000062", "Omondi Odhiambo-Okoth", language="sw")
    for who in (long_a, long_b):  # an agent checked their IDs: large amounts, long receipts
        find_by_phone(db.session, who.phone).tier = "full"
    db.session.commit()
    send(agent, long_a, 300_000_00)
    send(agent, long_b, 300_000_00)
    execute()
    send(long_a, long_b, 123_456_00)
    send(long_b, long_a, 123_456_00)
    execute()
    send(long_a, long_b, 900_000_00)  # refused: more than she has
    execute()
    deliver()

    for message in gateway.inbox():
        text = message.message
        # The sender's receipt and the failure message may take two segments; the rest one.
        two = ("Amount you can transact", "unachoweza", "Failed.", "Imeshindikana.")
        limit = 306 if any(marker in text for marker in two) else 160
        assert septets(message.message) <= limit, (septets(message.message), message.message)
    bodies = [r.body for r in outbox()]
    # float issue 1, two cash-ins 2 x 2, two sends 2 x 2, one refusal 1
    assert len(bodies) == len(gateway.inbox()) == 1 + 4 + 4 + 1


def test_every_message_has_its_kiswahili(app):
    from ussd_app.i18n import catalog

    sw = catalog("sw", "sms")
    english = [t for parties in RECEIPTS.values() for t in parties.values()]
    english += [FAILED, REASON_OTHER, *REASONS.values()]
    # ... and every other SMS template (messages/: an upper-case constant, or in one).
    from tests.test_sms_segments import templates

    english += [text for path, text in templates()]
    english += [inbound.HELP, *inbound.LOCKED_REPLIES.values(), *inbound.STATUSES]
    assert len(english) > 15
    for message in english:
        assert message in sw, message
        assert set(re.findall(r"{\w+}", sw[message])) == set(re.findall(r"{\w+}", message))


def test_outbox_rows_are_written_with_the_posting_not_after(app):
    agent = agent_with_float()
    amina = person("+254712000071", "Amina Hassan")
    db.session.commit()
    rid = send(agent, amina, 100_00)
    assert outbox(transfer_request_id=rid) == []
    execute()
    rows = outbox(transfer_request_id=rid)
    assert [r.status for r in rows] == ["pending", "pending"]
    status = db.session.execute(select(TransferRequest.status).where(TransferRequest.id == rid)).scalar_one()
    assert status == "accepted"
