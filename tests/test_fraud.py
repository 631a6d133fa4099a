"""Fraud controls the menus call: SIM swap through the real SDK and the local gateway, and
name look-up throttling on real Redis."""

import time

import pytest

from tests import sms_helpers
from ussd_app import fraud
from ussd_app.fraud import SimSwap

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
        fraud.note_name_lookup(PHONE)
        fraud.note_cancel_at_name(PHONE)
    assert fraud.lookup_delay_or_block(PHONE) == 0  # three cancels are allowed
    fraud.note_name_lookup(PHONE)
    fraud.note_cancel_at_name(PHONE)
    first = fraud.lookup_delay_or_block(PHONE)
    assert 55 <= first <= 60
    fraud.note_name_lookup(PHONE)
    fraud.note_cancel_at_name(PHONE)
    assert 115 <= fraud.lookup_delay_or_block(PHONE) <= 120  # doubles with each cancel
    assert fraud.lookup_delay_or_block("+254711000002") == 0  # only that number


def test_too_many_look_ups_block_until_the_window_ends(app, config):
    config(NAME_LOOKUP_LIMIT=5, NAME_WINDOW_SECONDS=3600)
    for _ in range(5):
        assert fraud.lookup_delay_or_block(PHONE) == 0
        fraud.note_name_lookup(PHONE)  # looked up, then sent: no cancel
    assert 3500 < fraud.lookup_delay_or_block(PHONE) <= 3600


def test_no_pin_or_secret_reaches_redis(app, redis):
    fraud.note_name_lookup(PHONE)
    fraud.note_cancel_at_name(PHONE)
    keys = {k.decode() for k in redis.keys("tuma:fraud:*")}
    assert keys == {f"tuma:fraud:{kind}:{PHONE}" for kind in ("lookups", "cancels", "last_lookup")}
