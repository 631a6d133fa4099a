"""In real headless Chromium, against the real stack (gunicorn, a worker process, the local SMS
gateway): two of Juma's sends are held for review by the velocity rule; an operator signs in,
follows the dashboard's "Held for review" card, tries to clear one without a reason (the
browser will not send it), clears it with one (the real worker posts it: Wanjiru's SMS arrives
on the simulator), refuses the other (Juma's SMS says so), and finds both decisions, with who
and why, in the audit log. Every page is saved as a screenshot (``tests/browser_helpers.py``)."""

import pytest
from sqlalchemy import select

from tests.browser_helpers import (
    Stack,
    chromium,
    screenshot,
    seed_demo,
    sign_in,
    skip_without_browser,
    wait_until,
)
from tests.sms_helpers import Person, execute, send
from ussd_app.admin.models import AuditEntry
from ussd_app.extensions import db
from ussd_app.ledger.check import check
from ussd_app.payments.models import TransferRequest
from ussd_app.payments.submit import mint_request_id, record_request
from ussd_app.users import find_by_phone

pytestmark = pytest.mark.timeout(120)

AGENT, JUMA, WANJIRU = "+254700000001", "+254700000003", "+254700000004"


@pytest.fixture
def held(app, runner, config):
    """Juma's 2nd and 3rd sends of KES 200.00 to Wanjiru, held (VELOCITY_MAX_COUNT 1 in this
    process only: the stack's worker runs with the default rules). Their codes."""
    skip_without_browser()
    seed_demo(runner)
    agent, juma, wanjiru = (
        Person(p, find_by_phone(db.session, p).account_id) for p in (AGENT, JUMA, WANJIRU)
    )
    record_request(
        db.session,
        request_id=mint_request_id(),
        kind="deposit",
        debit_account_id=agent.account_id,
        credit_account_id=juma.account_id,
        amount=5_000_00,
    )
    db.session.commit()
    execute()
    config(VELOCITY_MAX_COUNT=1)
    ids = [send(juma, wanjiru, 200_00) for _ in range(3)]
    execute()
    rows = [db.session.get(TransferRequest, i) for i in ids]
    assert [r.status for r in rows] == ["accepted", "review", "review"]
    codes = [r.code for r in rows[1:]]
    db.session.rollback()
    return codes


@pytest.fixture
def stack(held):
    running = Stack()
    yield running
    running.stop()


@pytest.fixture
def browser(stack):
    driver = chromium()
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def body(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def test_an_operator_clears_and_refuses_held_transfers_in_chromium(held, stack, browser):
    from selenium.webdriver.common.by import By

    cleared, refused = held
    browser.get(f"{stack.url}/admin/login")
    sign_in(browser)
    wait_until(browser, lambda d: "Dashboard" in body(d), message="the dashboard")
    card = browser.find_element(By.XPATH, "//div[@class='card'][a[text()='Held for review']]")
    assert "2" in card.text and "KES 400.00 waiting for an operator" in card.text, card.text
    screenshot(browser, "review-01-dashboard")
    card.find_element(By.TAG_NAME, "a").click()
    wait_until(browser, lambda d: d.current_url.endswith("/admin/review"), message="the review page")

    rows = browser.find_elements(By.XPATH, "//table[1]//tr[td]")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [cleared, refused]  # oldest first
    for row in rows:
        assert "send" in row.text and "KES 200.00" in row.text and "velocity_count" in row.text
        assert f"Juma Otieno {JUMA}" in row.text and f"Wanjiru Kamau {WANJIRU}" in row.text
    screenshot(browser, "review-02-held")

    # Clear without a reason: the browser does not send the form (the field is required).
    row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{cleared}']]")
    row.find_element(By.CSS_SELECTOR, "button[value=clear]").click()
    assert browser.current_url.endswith("/admin/review") and "cleared" not in body(browser)
    row.find_element(By.NAME, "reason").send_keys("payer confirmed by phone")
    row.find_element(By.CSS_SELECTOR, "button[value=clear]").click()
    wait_until(browser, lambda d: f"{cleared} cleared: queued again" in body(d), message="the clearing")
    screenshot(browser, "review-03-cleared")

    row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{refused}']]")
    row.find_element(By.NAME, "reason").send_keys("sends to a new number in bursts")
    row.find_element(By.CSS_SELECTOR, "button[value=refuse]").click()
    wait_until(
        browser, lambda d: f"{refused} refused: the payer is told by SMS" in body(d), message="the refusal"
    )
    assert "No transfer is held for review." in body(browser)
    screenshot(browser, "review-04-refused")

    # The real worker posts the cleared one: Wanjiru's receipt, Juma's refusal, on the simulator.
    browser.get(f"{stack.url}/simulator/")
    slot = browser.find_element(By.CSS_SELECTOR, f".phone-slot[data-phone='{WANJIRU}']")
    from tests.browser_helpers import SimPhone

    SimPhone(browser, slot).wait_sms(f"{cleared} Confirmed. You have received KES 200.00 from JUMA OTIENO")
    juma = SimPhone(browser, browser.find_element(By.CSS_SELECTOR, f".phone-slot[data-phone='{JUMA}']"))
    juma.wait_sms("Stopped by a security check")
    screenshot(browser, "review-05-simulator")

    browser.get(f"{stack.url}/admin/audit")
    log = body(browser)
    assert "review.clear" in log and "payer confirmed by phone" in log
    assert "review.refuse" in log and "sends to a new number in bursts" in log
    screenshot(browser, "review-06-audit")
    browser.get(f"{stack.url}/admin/transfers/{cleared}")
    trail = body(browser)
    assert "accepted" in trail and "review.clear" in trail
    screenshot(browser, "review-07-trail")

    db.session.expire_all()
    statuses = {
        r.code: (r.status, r.result)
        for r in db.session.execute(select(TransferRequest).where(TransferRequest.code.in_(held))).scalars()
    }
    assert statuses == {cleared: ("accepted", "ok"), refused: ("rejected", "review_refused")}
    entries = db.session.execute(select(AuditEntry).where(AuditEntry.action.like("review.%"))).scalars().all()
    assert sorted((e.action, e.target, e.details["by"]) for e in entries) == [
        ("review.clear", cleared, "Olive Operator"),
        ("review.refuse", refused, "Olive Operator"),
    ]
    failed = [f for f in check(db.session) if not f.ok]
    assert not failed, failed
    db.session.rollback()
