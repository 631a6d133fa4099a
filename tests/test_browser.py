"""In real headless Chromium, against the real stack (gunicorn, a worker process, the local SMS
gateway): on the phone simulator a newcomer registers, gets a deposit from the demo agent and
sends money to a second number, and both inboxes show the receipts; in the back office an
operator signs in, finds that transfer by its code and reads its trail, then decides a disputed
protected purchase. Every page is saved as a screenshot (``tests/browser_helpers.py``), and
``/metrics`` has moved with the traffic, worker included.

Reversals (sent to the wrong number) are decided on the same disputes page once they plug
their decision source in; this test decides a protected-purchase dispute, the kind that exists.
"""

import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from devtools.demo import DEMO_FLOAT_MAJOR
from tests.browser_helpers import (
    SimPhone,
    Stack,
    chromium,
    screenshot,
    seed_demo,
    sign_in,
    skip_without_browser,
    wait_until,
)
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments.models import HoldState, RequestKind, RequestStatus, TransferRequest

pytestmark = pytest.mark.timeout(120)

NEWCOMER = "+254712345601"  # not registered: registers in the simulator
CODE = re.compile(r"\b([A-Z2-7]{10}) Confirmed")


@pytest.fixture
def stack(app, runner):
    skip_without_browser()
    seed_demo(runner)
    db.session.commit()
    running = Stack()
    yield running
    running.stop()


@pytest.fixture
def browser(stack):
    driver = chromium()
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def scrape(stack) -> dict:
    body = requests.get(f"{stack.url}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def total(found, name, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        v for (n, ls), v in found.items() if n == name and all((k, w) in ls for k, w in labels.items())
    )


def on_simulator(browser, stack) -> dict[str, SimPhone]:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.url}/simulator/")
    slots = browser.find_elements(By.CSS_SELECTOR, ".phone-slot")
    phones = {s.get_attribute("data-phone"): SimPhone(browser, s) for s in slots}
    assert set(phones) == {f"+25470000000{n}" for n in range(1, 6)}  # the demo seed's people
    return phones


def test_simulator_and_back_office_in_chromium(stack, browser):
    before = scrape(stack)
    phones = on_simulator(browser, stack)
    agent, wanjiru = phones["+254700000001"], phones["+254700000004"]
    assert "Amina Agent (agent)" in agent.css(".who").text
    newcomer = phones["+254700000003"]
    newcomer.use_number(NEWCOMER)

    # A newcomer registers, typing on the keyboard.
    newcomer.key("*384*7#", "Choose language")
    newcomer.key("1", "Enter your first name")
    newcomer.key("Neema", "Enter your last name")
    newcomer.key("Wafula", "Choose a 4-digit PIN")
    newcomer.key("5739", "Enter the PIN again")
    assert "[session ended]" in newcomer.key("5739", "Welcome to Tuma, Neema! Your account is ready.")

    # The demo agent deposits cash on the agent's own handset.
    agent.key("*384*7#", "Tuma Agent")
    agent.key("1", "Enter the customer's phone number")
    agent.key(NEWCOMER, "Deposit to Neema Wafula")
    agent.key("5000", f"Deposit KES 5,000.00 to Neema Wafula {NEWCOMER}?")
    agent.key("1", "Enter your PIN to deposit")
    agent.key("1111", "Depositing KES 5,000.00 to Neema Wafula.")
    newcomer.wait_sms("you deposited KES 5,000.00 with agent AMINA AGENT")
    agent.wait_sms("You received KES 5,000.00 cash from NEEMA WAFULA")

    # The newcomer sends money to a second number; both inboxes show the receipts.
    newcomer.key("*384*7#", "1. Send money")
    newcomer.key("1", "Enter the recipient's phone number")
    newcomer.key("0700000004", "Send to Wanjiru Kamau")
    newcomer.key("1000", "Send KES 1,000.00 to Wanjiru Kamau +254700000004?")
    newcomer.key("1", "Enter your PIN")
    newcomer.key("5739", "Sending KES 1,000.00 to Wanjiru Kamau.")
    received = wanjiru.wait_sms("You have received KES 1,000.00 from NEEMA WAFULA")
    sent = newcomer.wait_sms("KES 1,000.00 sent to WANJIRU KAMAU")
    code = CODE.search(received).group(1)
    assert CODE.search(sent).group(1) == code

    # Wanjiru buys with protection from the demo merchant, then disputes the delivery.
    wanjiru.key("*384*7#", "5. Buy goods")
    wanjiru.key("5", "Enter till number")
    wanjiru.key("123456", "Pay Mama Mboga")
    wanjiru.key("300", "3. Pay with protection")
    wanjiru.key("3", "Enter your PIN to pay KES 300.00 to Mama Mboga with protection")
    wanjiru.key("4444", "held until you confirm delivery")
    wanjiru.wait_sms("unless you dispute it")
    wanjiru.key("*384*7#", "3. My approvals")  # not the last END's "in My approvals"
    wanjiru.key("3", "Waiting for your approval")
    wanjiru.key("1", "2. Report a problem")
    wanjiru.key("2", "Enter your PIN to report a problem")
    wanjiru.key("4444", "Problem reported.")
    opened = wanjiru.wait_sms("Dispute opened for KES 300.00 (MAMA MBOGA)")
    purchase_code = re.search(r"\b([A-Z2-7]{10}) Dispute opened", opened).group(1)
    phones["+254700000002"].wait_sms(f"{purchase_code} Dispute opened for KES 300.00 (WANJIRU KAMAU)")
    screenshot(browser, "01-simulator")

    db.session.expire_all()
    [send] = db.session.execute(select(TransferRequest).where(TransferRequest.code == code)).scalars()
    assert (send.kind, send.status, send.amount) == ("send", RequestStatus.ACCEPTED.value, 1_000_00)
    db.session.rollback()

    # The back office: a stranger is sent to sign in.
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.url}/admin/transfers")
    assert "/admin/login" in browser.current_url
    screenshot(browser, "02-admin-login")
    sign_in(browser)
    wait_until(browser, lambda d: d.current_url.endswith("/admin/transfers"), message="signed in")

    # Finds the transfer by its code and reads its trail: request, ledger posts, SMS.
    screenshot(browser, "03-admin-transfers")
    search = browser.find_element(By.NAME, "q")
    search.send_keys(code.lower())
    search.submit()
    wait_until(browser, lambda d: d.current_url.endswith(f"/admin/transfers/{code}"), message="the trail")
    trail = browser.find_element(By.TAG_NAME, "body").text
    assert f"Transfer {code}" in trail
    assert "Neema Wafula +254712345601" in trail and "Wanjiru Kamau +254700000004" in trail
    assert "KES 1,000.00" in trail and "accepted" in trail
    assert "Ledger: holds, posts, voids" in trail and "No ledger transfer" not in trail
    assert f"{code} Confirmed. You have received KES 1,000.00" in trail  # the recipient's SMS
    assert f"{code} Confirmed. KES 1,000.00 sent to WANJIRU KAMAU" in trail  # the sender's
    screenshot(browser, "04-admin-transfer-trail")

    # Decides the dispute: approved, the buyer is refunded.
    browser.get(f"{stack.url}/admin/disputes")
    row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{purchase_code}']]")
    assert "Wanjiru Kamau +254700000004 disputes a protected purchase from Mama Mboga" in row.text
    row.find_element(By.NAME, "note").send_keys("goods never delivered")
    screenshot(browser, "05-admin-disputes")
    row.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    flash = wait_until(
        browser,
        lambda d: "refunded to the buyer" in d.find_element(By.TAG_NAME, "body").text,
        message="the decision",
    )
    assert flash
    assert "Nothing awaits a decision." in browser.find_element(By.TAG_NAME, "body").text
    screenshot(browser, "06-admin-dispute-decided")
    browser.get(f"{stack.url}/admin/transfers/{purchase_code}")
    purchase_trail = browser.find_element(By.TAG_NAME, "body").text
    assert "hold" in purchase_trail and "void" in purchase_trail
    assert "decision.approve" in purchase_trail and "goods never delivered" in purchase_trail
    screenshot(browser, "07-admin-dispute-trail")

    # Every other page of the back office, each saved; the queues page shows the worker.
    for name, path, expect in (
        ("08-admin-dashboard", "/admin/", "Transfers per hour"),
        ("09-admin-ledger", "/admin/ledger", "e-money in circulation = trust balance"),
        ("10-admin-accounts", "/admin/accounts?q=Neema", "Neema Wafula"),
        ("11-admin-sms", "/admin/sms", "Dispute decided"),
        ("12-admin-float", "/admin/float", "DEMO-DEPOSIT"),
        ("13-admin-queues", "/admin/queues", "Workers"),
        ("14-admin-audit", "/admin/audit", "decision.approve"),
    ):
        browser.get(stack.url + path)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert expect in body, (path, body[:500])
        assert "Traceback" not in body
        screenshot(browser, name)
    browser.get(f"{stack.url}/admin/queues")
    workers = browser.find_elements(By.XPATH, "//h2[text()='Workers']/following-sibling::table[1]//tr[td]")
    assert any("transfers" in w.text and "No worker" not in w.text for w in workers), [
        w.text for w in workers
    ]

    # Both sides hear of the decision; the simulator shows it.
    phones = on_simulator(browser, stack)
    phones["+254700000004"].wait_sms("Dispute decided for you: KES 300.00 is back in your account")
    phones["+254700000002"].wait_sms("Dispute decided for the buyer: KES 300.00")
    screenshot(browser, "15-simulator-after-decision")

    db.session.expire_all()
    [hold] = db.session.execute(
        select(TransferRequest).where(TransferRequest.kind == RequestKind.PROTECTED_PURCHASE.value)
    ).scalars()
    assert hold.hold_state == HoldState.VOIDED.value
    [decision] = db.session.execute(
        select(AuditEntry).where(AuditEntry.action == "decision.approve")
    ).scalars()
    assert decision.target == f"protected:{purchase_code}"
    failed = [f for f in check(db.session, trust_deposits_total=DEMO_FLOAT_MAJOR * 100) if not f.ok]
    assert not failed, failed
    db.session.rollback()

    # /metrics (gunicorn's workers and the rq worker added up) moved with the traffic.
    after = scrape(stack)

    def grew(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("tuma_ussd_requests_total", screen="registration.language", outcome="con") >= 1
    hops = 6 + 6 + 6 + 6 + 5  # register, deposit, send, buy, decline: every key() above
    assert grew("tuma_ussd_requests_total") == hops
    assert grew("tuma_ussd_requests_total", outcome="end") == 5
    assert grew("tuma_http_request_duration_seconds_count", endpoint="ussd.ussd") == hops
    assert total(after, "tuma_transfer_requests", kind="send", status="accepted", result="ok") == 1
    assert total(after, "tuma_transfer_requests", kind="deposit", status="accepted", result="ok") == 1
    assert total(after, "tuma_transfer_requests", kind="protected_void", status="accepted") == 1
    assert total(after, "tuma_holds_open") == 0  # the purchase's hold was voided
    assert grew("tuma_jobs_total", job="execute_transfers", result="ok") >= 3
    assert grew("tuma_job_queue_wait_seconds_count", job="execute_transfers") >= 3
    assert grew("tuma_job_duration_seconds_count", job="send_sms") >= 3
    assert total(after, "tuma_sms", status="sent") + total(after, "tuma_sms", status="delivered") >= 10
    assert ("tuma_queue_depth", (("queue", "transfers"),)) in after

    # A reversal: Neema asks for her send back; the operator approves it in the back office.
    phones = on_simulator(browser, stack)
    newcomer, wanjiru = phones["+254700000003"], phones["+254700000004"]
    newcomer.use_number(NEWCOMER)
    newcomer.key("*384*7#", "2. My account")
    newcomer.key("2", "Reverse a transaction")
    newcomer.key("5", "Enter the transaction code from the SMS")
    newcomer.key(code, "They must agree.")
    newcomer.key("1", f"Enter your PIN to reverse {code}")
    newcomer.key("5739", f"Reversal of {code} requested.")
    wanjiru.wait_sms(f"asks you to return KES 1,000.00 ({code})")
    browser.get(f"{stack.url}/admin/disputes")
    row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{code}']]")
    assert "to return a send made by mistake" in row.text
    row.find_element(By.NAME, "note").send_keys("sent to the wrong number")
    screenshot(browser, "16-admin-reversal")
    row.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    wait_until(
        browser,
        lambda d: (
            f"Reversal of {code}: KES 1,000.00 returned to the sender"
            in d.find_element(By.TAG_NAME, "body").text
        ),
        message="the reversal decision",
    )
    screenshot(browser, "17-admin-reversal-decided")
    phones = on_simulator(browser, stack)
    phones["+254700000003"].use_number(NEWCOMER)
    phones["+254700000004"].wait_sms(f"KES 1,000.00 ({code}) returned to NEEMA WAFULA")
    phones["+254700000003"].wait_sms(f"KES 1,000.00 ({code}) reversed to you from WANJIRU KAMAU")
    screenshot(browser, "18-simulator-after-reversal")
    failed = [f for f in check(db.session, trust_deposits_total=DEMO_FLOAT_MAJOR * 100) if not f.ok]
    assert not failed, failed
    db.session.rollback()


def test_simulator_phones_over_other_gateways_protocols_in_chromium(stack, browser):
    """A phone switched to Hubtel's JSON (or MTN's) shows the same menus and answers."""
    from selenium.webdriver.support.ui import Select

    phones = on_simulator(browser, stack)
    juma, wanjiru = phones["+254700000003"], phones["+254700000004"]
    Select(juma.css(".gateway")).select_by_value("hubtel")
    juma.key("*384*7#", "1. Send money")
    juma.key("2", "My account")
    juma.key("1", "Enter your PIN")
    assert "[session ended]" in juma.key("3333", "Your balance is KES 0.00.")
    Select(wanjiru.css(".gateway")).select_by_value("mtn")
    wanjiru.key("*384*7#", "1. Send money")
    wanjiru.key("2", "My account")
    wanjiru.key("1", "Enter your PIN")
    assert "[session ended]" in wanjiru.key("4444", "Your balance is KES 0.00.")
    screenshot(browser, "02-simulator-gateways")


def test_simulator_phones_dial_a_shortcut_in_chromium(stack, browser):
    """A shortcut typed on a handset goes as Africa's Talking (or Hubtel) sends one: walked to
    the confirm screen of the send; the PIN is then asked on a screen of its own."""
    from selenium.webdriver.support.ui import Select

    phones = on_simulator(browser, stack)
    juma, wanjiru = phones["+254700000003"], phones["+254700000004"]
    confirm = juma.key("*384*7*1*0700000004*50#", "Send KES 50.00 to")
    assert confirm.rstrip().endswith("1. Confirm\n2. Cancel"), confirm
    juma.key("1", "Enter your PIN")
    Select(wanjiru.css(".gateway")).select_by_value("hubtel")
    wanjiru.key("*384*7*2*1*4444#", "My account")  # the PIN in the dial string is dropped
    wanjiru.key("1", "Enter your PIN")
