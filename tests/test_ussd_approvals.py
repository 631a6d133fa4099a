"""My approvals: the extension point other modules plug into, proven with a test provider."""

from dataclasses import dataclass, field

import pytest

from tests.ussd_helpers import Phone, options, screen
from ussd_app.ussd import approvals
from ussd_app.ussd.approvals import PendingApproval

PIN = "8642"


@dataclass
class PaymentRequests:
    """A stand-in for a later issue's payment requests: items waiting, and what was decided."""

    name: str = "test"
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (phone, summary)
    decided: list[tuple[str, str]] = field(default_factory=list)

    def pending(self, session, user):
        return [PendingApproval(k, s) for k, (phone, s) in self.waiting.items() if phone == user.phone]

    def _decide(self, user, key, verdict):
        if key not in self.waiting or self.waiting[key][0] != user.phone:
            return False
        del self.waiting[key]
        self.decided.append((key, verdict))
        return True

    def approve(self, session, user, key):
        return self._decide(user, key, "approved")

    def decline(self, session, user, key):
        return self._decide(user, key, "declined")


@pytest.fixture
def provider():
    p = PaymentRequests()
    approvals.register(p)
    yield p
    approvals.unregister(p.name)


@pytest.fixture
def juma(customer):
    return customer


def test_nothing_waiting(client, juma):
    assert Phone(client, "0712000111").walk("3") == "END Nothing is waiting for your approval."


def test_approve_with_pin(client, juma, provider):
    provider.waiting["r1"] = ("+254712000111", "Pay KES 500.00 to Mama Mboga")
    provider.waiting["r2"] = ("+254712000999", "Someone else's")
    phone = Phone(client, "0712000111")
    phone.dial()
    assert screen(phone.send("3")) == "Waiting for your approval:\n1. Pay KES 500.00 to Mama Mboga"
    assert options(phone.send("1")) == {"1": "Approve", "2": "Decline"}
    assert screen(phone.send("1")) == "Enter your PIN to approve"
    assert phone.send("1111").startswith("CON Wrong PIN. 2 tries left.")
    assert provider.decided == []
    assert phone.send(PIN) == "END Approved. You will receive an SMS confirmation."
    assert provider.decided == [("r1", "approved")]
    assert phone.repeat() == "END Approved. You will receive an SMS confirmation."
    assert provider.decided == [("r1", "approved")]


def test_decline_with_pin(client, juma, provider):
    provider.waiting["r1"] = ("+254712000111", "Withdraw KES 1,000.00 at Amina Agent")
    assert Phone(client, "0712000111").walk("3", "1", "2", PIN) == "END Declined."
    assert provider.decided == [("r1", "declined")]


def test_an_item_gone_meanwhile_is_not_decided(client, juma, provider):
    provider.waiting["r1"] = ("+254712000111", "Pay KES 500.00 to Mama Mboga")
    phone = Phone(client, "0712000111")
    phone.walk("3", "1", "1")
    del provider.waiting["r1"]  # expired while the customer typed
    assert phone.send(PIN) == "END This is no longer waiting for you."
    assert provider.decided == []


def test_a_long_list_pages_with_98_and_goes_back_with_0(client, juma, provider):
    for i in range(1, 9):
        provider.waiting[f"r{i}"] = ("+254712000111", f"Pay KES {i},000.00 to Merchant Number {i:02d}")
    phone = Phone(client, "0712000111")
    phone.dial()
    first = screen(phone.send("3"))
    assert first.startswith("Waiting for your approval:\n1. Pay KES 1,000.00")
    assert first.endswith("98. More")
    seen = set(options("CON " + first))
    page = first
    while page.endswith("98. More") or "98. More" in page:
        page = screen(phone.send("98"))
        assert len(page) <= 160
        seen |= set(options("CON " + page)) - {"98", "0"}
    assert seen - {"98"} == {str(i) for i in range(1, 9)}
    assert "0. Back" in page
    assert screen(phone.send("0")) != page  # back a page
    # Numbers are global: item 8 can be picked from any page.
    assert screen(phone.send("8")).startswith("Pay KES 8,000.00 to Merchant Number 08")
    phone.send("1")
    phone.send(PIN)
    assert provider.decided == [("r8", "approved")]


def test_invalid_choice_reshows_the_list(client, juma, provider):
    provider.waiting["r1"] = ("+254712000111", "Pay KES 500.00 to Mama Mboga")
    phone = Phone(client, "0712000111")
    phone.walk("3")
    assert (
        screen(phone.send("5"))
        == "Invalid choice.\nWaiting for your approval:\n1. Pay KES 500.00 to Mama Mboga"
    )


def test_providers_are_wired_by_the_app_not_by_importing_a_flow():
    """Importing the flows registers nothing (the USSD menus import no back office, no side
    effects); the app's ``init_app`` registers every provider of My approvals."""
    import subprocess
    import sys

    script = (
        "from ussd_app.ussd import approvals, flows\n"
        "print(sorted(approvals._providers))\n"
        "from ussd_app import create_app\n"
        "create_app({'TESTING': True, 'SQLALCHEMY_DATABASE_URI': 'sqlite://'})\n"
        "print(sorted(approvals._providers))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    on_import, in_app = run.stdout.splitlines()[-2:]
    assert on_import == "[]"
    assert in_app == str(sorted(["allowance", "delivery", "request", "reversal", "withdrawal"]))
