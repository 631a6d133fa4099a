"""Fraud controls: the SIM-swap check through the real SDK and the local gateway's insight (a
recent swap, an old one, a slow gateway, a failing one), by itself and as the gate on every flow
that moves a customer's money through the real /ussd webhook; and name look-up throttling on
real Redis and in send money."""

import time

import pytest
from sqlalchemy import func, select

from tests import sms_helpers
from tests.helpers import fund
from tests.ussd_helpers import Phone, person
from ussd_app import fraud
from ussd_app.extensions import db
from ussd_app.fraud import SimSwap
from ussd_app.payments.models import TransferRequest
from ussd_app.queues import ALL_QUEUES, get_queue
from ussd_app.sms.outbox import OutboxMessage
from ussd_app.users import create_user

gateway = sms_helpers.gateway  # the fixture: a local Africa's Talking, the SDK pointed at it

PHONE = "+254711000001"
SMALL = 500_00  # KES 500
LARGE = 50_000_00  # KES 50,000, above the default KES 10,000 threshold


def test_small_payments_never_ask_and_never_wait(gateway):
    gateway.sim_swaps.swap(PHONE)
    gateway.sim_swaps.hang()
    assert fraud.check_sim_swap(PHONE, SMALL) == SimSwap.OK
    assert fraud.check_sim_swap(PHONE, 10_000_00) == SimSwap.OK  # at the threshold: still small
    assert gateway.sim_swaps.checks == 0


def test_a_large_transfer_asks_once_then_uses_the_cached_answer(gateway):
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.OK
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.OK
    assert gateway.sim_swaps.checks == 1


@pytest.mark.parametrize(
    ("days_ago", "verdict"), [(0, SimSwap.BLOCKED), (2, SimSwap.BLOCKED), (5, SimSwap.OK)]
)
def test_a_recent_swap_blocks_large_transfers(gateway, days_ago, verdict):
    gateway.sim_swaps.swap(PHONE, days_ago=days_ago)
    assert fraud.check_sim_swap(PHONE, LARGE) == verdict
    assert fraud.check_sim_swap("+254711000002", LARGE) == SimSwap.OK  # someone else's SIM
    assert fraud.check_sim_swap(PHONE, SMALL) == SimSwap.OK


def test_a_gateway_that_does_not_answer_in_time_gives_unknown_for_large_only(gateway, config):
    config(SIM_SWAP_TIMEOUT_SECONDS=0.2)
    gateway.sim_swaps.hang()
    started = time.monotonic()
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.UNKNOWN
    assert time.monotonic() - started < 5
    assert fraud.check_sim_swap(PHONE, SMALL) == SimSwap.OK
    gateway.sim_swaps.release()
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.OK  # "no answer" was not cached


def test_a_refusing_or_unreachable_gateway_is_unknown(gateway, config):
    config(AT_API_KEY="")  # the gateway answers 401
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.UNKNOWN
    config(AT_API_KEY="test-key", AT_API_URL="http://127.0.0.1:9")  # nothing listens there
    assert fraud.check_sim_swap(PHONE, LARGE) == SimSwap.UNKNOWN


def test_cancelling_at_the_name_screen_slows_the_next_look_ups(app, config):
    config(NAME_CANCEL_LIMIT=3, NAME_DELAY_SECONDS=60, NAME_LOOKUP_LIMIT=10)
    for _ in range(3):
        assert fraud.lookup_delay_or_block(PHONE) == 0
        assert fraud.look_up_name(PHONE, cancel=True) == 0  # looked up, then left
    assert fraud.lookup_delay_or_block(PHONE) == 0  # three cancels are allowed
    assert fraud.look_up_name(PHONE, cancel=True) == 0
    first = fraud.lookup_delay_or_block(PHONE)
    assert 55 <= first <= 60
    assert fraud.look_up_name(PHONE, cancel=True) == first  # refused: nothing counted
    config(NAME_DELAY_SECONDS=0)  # the wait is over
    assert fraud.look_up_name(PHONE, cancel=True) == 0
    config(NAME_DELAY_SECONDS=60)
    assert 115 <= fraud.lookup_delay_or_block(PHONE) <= 120  # doubles with each cancel
    assert fraud.lookup_delay_or_block("+254711000002") == 0  # only that number
    assert fraud.lookup_delay_or_block("0711 000 001") == fraud.lookup_delay_or_block(PHONE)  # any spelling


def test_too_many_look_ups_block_until_the_window_ends(app, config):
    config(NAME_LOOKUP_LIMIT=5, NAME_WINDOW_SECONDS=3600)
    for _ in range(5):
        assert fraud.lookup_delay_or_block(PHONE) == 0
        assert fraud.look_up_name(PHONE) == 0  # looked up, then sent: no cancel
    assert 3500 < fraud.lookup_delay_or_block(PHONE) <= 3600
    assert 3500 < fraud.look_up_name(PHONE) <= 3600


def test_no_pin_or_secret_reaches_redis(app, redis):
    fraud.look_up_name(PHONE, cancel=True)
    keys = {k.decode() for k in redis.keys("tuma:fraud:*")}
    assert keys == {f"tuma:fraud:{kind}:{PHONE}" for kind in ("lookups", "cancels", "last_lookup")}


PIN = "8642"
JUMA = "+254712000111"
BLOCKED = (
    "END For your safety this transfer is blocked: your SIM card was changed recently. "
    "Nothing was sent. Visit a Tuma agent with your ID."
)
UNKNOWN = "END We could not complete a security check. Nothing was sent. Please try again in a few minutes."
LARGE_TYPED, SMALL_TYPED = "20000", "500"  # as typed, in KES; the threshold is KES 10,000


@pytest.fixture
def people(customer, second_customer, agent, merchant):
    """The cast (Juma with KES 100,000, Wanjiru to send to, the agent, the till) and a pay-bill
    number."""
    fund(customer.account_id, 100_000_00)
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


# Each flow that moves a customer's money, from the home menu to just before the PIN.
FLOWS = {
    "send": lambda amount: ("1", "0712000222", amount, "1"),
    "send_unregistered": lambda amount: ("1", "0799999999", "1", amount, "1"),
    "withdrawal": lambda amount: ("4", "0700000101", amount, "1"),
    "buy_goods": lambda amount: ("5", "123456", amount, "1"),
    "protected_purchase": lambda amount: ("5", "123456", amount, "3"),
    "pay_bill": lambda amount: ("6", "888880", "ACC1", amount, "1"),
}


def pay(client, flow: str, amount: str) -> str:
    return Phone(client, "0712000111").walk(*FLOWS[flow](amount), PIN)


def recorded() -> list[tuple[str, int]]:
    db.session.expire_all()
    rows = db.session.execute(select(TransferRequest.kind, TransferRequest.amount)).all()
    db.session.commit()
    return sorted(tuple(row) for row in rows)  # a table has no order (PostgreSQL's changes with updates)


def nothing_happened():
    assert recorded() == []
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0
    assert all(get_queue(name).count == 0 for name in ALL_QUEUES)


@pytest.mark.parametrize("flow", FLOWS)
def test_a_recent_sim_swap_blocks_a_large_transfer_and_nothing_is_recorded(client, gateway, people, flow):
    gateway.sim_swaps.swap(JUMA, days_ago=1)
    assert pay(client, flow, LARGE_TYPED) == BLOCKED
    nothing_happened()
    assert gateway.sim_swaps.checks == 1
    # The same customer's small payments are not asked about and go through.
    assert pay(client, flow, SMALL_TYPED).startswith("END ")
    assert recorded() == [(flow, 500_00)]
    assert gateway.sim_swaps.checks == 1


@pytest.mark.parametrize("flow", FLOWS)
def test_an_old_sim_swap_lets_a_large_transfer_through(client, gateway, people, flow):
    gateway.sim_swaps.swap(JUMA, days_ago=5)  # the window is 72 hours
    assert pay(client, flow, LARGE_TYPED) != BLOCKED
    assert recorded() == [(flow, 20_000_00)]
    assert gateway.sim_swaps.checks == 1


def test_the_threshold_itself_is_small_and_one_shilling_over_is_large(client, gateway, people):
    gateway.sim_swaps.swap(JUMA)
    assert pay(client, "send", "10000").startswith("END Sending KES 10,000.00")
    assert pay(client, "send", "10001") == BLOCKED
    assert recorded() == [("send", 10_000_00)]


def test_the_check_comes_after_the_pin(client, gateway, people):
    """A wrong PIN never costs an insight query, and learns nothing about the SIM."""
    gateway.sim_swaps.swap(JUMA)
    phone = Phone(client, "0712000111")
    phone.walk(*FLOWS["send"](LARGE_TYPED))
    assert "Wrong PIN" in phone.send("0000")
    assert gateway.sim_swaps.checks == 0
    assert phone.send(PIN) == BLOCKED
    assert gateway.sim_swaps.checks == 1
    nothing_happened()


def test_a_slow_gateway_does_not_block_small_payments_and_refuses_large_ones_for_now(
    client, gateway, people, config
):
    config(SIM_SWAP_TIMEOUT_SECONDS=0.3)
    gateway.sim_swaps.hang()
    started = time.monotonic()
    assert pay(client, "send", SMALL_TYPED).startswith("END Sending KES 500.00")
    assert pay(client, "buy_goods", SMALL_TYPED).startswith("END Paying KES 500.00")
    assert gateway.sim_swaps.checks == 0  # small payments never ask
    assert pay(client, "send", LARGE_TYPED) == UNKNOWN
    assert time.monotonic() - started < 5  # bounded by the timeout, not by the gateway
    assert recorded() == [("buy_goods", 500_00), ("send", 500_00)]
    gateway.sim_swaps.release()
    assert pay(client, "send", LARGE_TYPED).startswith("END Sending KES 20,000.00")  # "unknown" is not kept


@pytest.mark.parametrize(
    "failure",
    [{"AT_API_KEY": ""}, {"AT_API_URL": "http://127.0.0.1:9"}],  # the gateway refuses; nothing listens
    ids=["refusing", "unreachable"],
)
def test_a_failing_gateway_does_not_block_small_payments(client, gateway, people, config, failure):
    config(**failure)
    assert pay(client, "send", SMALL_TYPED).startswith("END Sending KES 500.00")
    assert pay(client, "withdrawal", SMALL_TYPED).startswith("END Withdrawing KES 500.00")
    assert pay(client, "withdrawal", LARGE_TYPED) == UNKNOWN
    assert recorded() == [("send", 500_00), ("withdrawal", 500_00)]


def test_the_sim_swap_refusal_in_kiswahili(client, gateway, people):
    from ussd_app.users import find_by_phone

    find_by_phone(db.session, JUMA).language = "sw"
    db.session.commit()
    gateway.sim_swaps.swap(JUMA)
    assert pay(client, "send", LARGE_TYPED) == (
        "END Muamala huu umezuiwa kwa usalama wako: laini yako ilibadilishwa hivi karibuni. "
        "Hakuna kilichotumwa. Mwone wakala wa Tuma na kitambulisho."
    )
    nothing_happened()


# -- name look-ups ------------------------------------------------------------------------


def look_up_and_cancel(client, number="0712000111", recipient="0712000222") -> str:
    phone = Phone(client, number)
    body = phone.walk("1", recipient)
    if body.startswith("END"):
        return body
    assert body == "CON Send to Wanjiru Kamau\nEnter amount"
    assert phone.send("100").startswith("CON Send KES 100.00 to Wanjiru Kamau")
    assert phone.send("2") == "END Cancelled. Nothing was sent."
    return body


def test_cancelling_at_the_name_screen_again_and_again_is_slowed_down(client, people, config):
    config(NAME_CANCEL_LIMIT=3, NAME_DELAY_SECONDS=120)
    for _ in range(4):  # three cancels are allowed, and the look-up after them
        assert look_up_and_cancel(client).startswith("CON ")
    assert look_up_and_cancel(client) == "END Too many look-ups. Try again in 2 min."
    # Refused before the name is read: the refusal is not a look-up, nor can it be cancelled.
    assert look_up_and_cancel(client) == "END Too many look-ups. Try again in 2 min."
    assert recorded() == []
    # Another number is not slowed down.
    person("+254712000333", "Akinyi Odhiambo", pin="1357")
    assert look_up_and_cancel(client, "0712000333").startswith("CON ")


def test_look_ups_that_end_in_a_send_are_not_slowed_down_until_the_hourly_cap(client, people, config):
    config(NAME_CANCEL_LIMIT=0, NAME_LOOKUP_LIMIT=4)
    for _ in range(4):
        assert pay(client, "send", SMALL_TYPED).startswith("END Sending")
    assert Phone(client, "0712000111").walk("1", "0712000222") == (
        "END Too many look-ups. Try again in 60 min."
    )
    # Looking up an unregistered number also tells whether it is on Tuma: counted as well.
    assert Phone(client, "0712000111").walk("1", "0799999999").startswith("END Too many")


def test_the_refusal_in_kiswahili(client, people, config):
    from ussd_app.users import find_by_phone

    find_by_phone(db.session, JUMA).language = "sw"
    db.session.commit()
    config(NAME_LOOKUP_LIMIT=1)
    Phone(client, "0712000111").walk("1", "0712000222", "00")  # back home: nothing to resume
    assert Phone(client, "0712000111").walk("1", "0712000222") == (
        "END Maombi mengi mno ya kutafuta majina. Jaribu tena baada ya dakika 60."
    )


def _merchant_asks_juma(client, amount: str) -> None:
    shop = Phone(client, "0700000002")
    shop.walk("5", "0712000111", amount, "Goods", "1")
    assert shop.send("2222").startswith("END Request sent")


def _approvals(client) -> Phone:
    phone = Phone(client, "0712000111")
    assert phone.walk("3").startswith("CON Waiting for your approval:\n1. ")
    phone.send("1")
    return phone


def test_approving_a_large_payment_request_after_a_sim_swap_is_blocked(client, gateway, people):
    """My approvals moves money too: the same gate as the menus, after the PIN."""
    gateway.sim_swaps.swap(JUMA, days_ago=1)
    _merchant_asks_juma(client, LARGE_TYPED)
    phone = _approvals(client)
    phone.send("1")  # approve
    assert phone.send(PIN) == BLOCKED
    assert gateway.sim_swaps.checks == 1
    assert recorded() == []  # nothing paid
    # Declining moves nothing: never asked about, always possible.
    phone = _approvals(client)
    phone.send("2")
    assert phone.send(PIN) == "END Declined."
    assert gateway.sim_swaps.checks == 1


def test_approving_a_small_payment_request_never_asks(client, gateway, people):
    gateway.sim_swaps.swap(JUMA, days_ago=1)
    _merchant_asks_juma(client, SMALL_TYPED)
    phone = _approvals(client)
    phone.send("1")
    assert phone.send(PIN) == "END Approved. You will receive an SMS confirmation."
    assert gateway.sim_swaps.checks == 0
    assert [kind for kind, _ in recorded()] == ["buy_goods"]
