"""Round 10's outside attack on the back office: pages a crafted link answered with a 500, and
a dashboard figure that left money out."""

import re

from tests.admin_helpers import login, operator
from tests.helpers import fund
from tests.ussd_helpers import Phone
from ussd_app.extensions import db
from ussd_app.ledger import AccountKind, house_account
from worker import jobs


def test_transfers_on_the_calendars_last_day_is_answered_not_a_500(client):
    operator()
    login(client)
    for day in ("9999-12-31", "0001-01-01"):
        response = client.get(f"/admin/transfers?date={day}")
        assert response.status_code == 200, day
        assert "No transfer matches." in response.get_data(as_text=True)


def test_a_review_page_link_with_a_superscript_digit_is_answered_not_a_500(client):
    # "²".isdigit() is true, int("²") a ValueError: the page from the first row, as for any bad one.
    operator()
    login(client)
    for given in ("%C2%B2", "1%C2%B9", "%E2%91%A0"):
        response = client.get(f"/admin/review?from={given}")
        assert response.status_code == 200, given


def _card(page: str, title: str) -> str:
    match = re.search(re.escape(title) + r"<b>([^<]+)</b><span class=\"muted\">([^<]+)</span>", page)
    assert match, title
    return match.group(1), match.group(2)


def test_the_dashboards_fees_earned_count_the_merchants_fee_as_the_fee_account_does(
    client, customer, merchant
):
    customer.tier = "full"
    db.session.commit()
    fund(customer.account_id, 10_000_00)
    body = Phone(client, "0712000111").walk("5", "123456", "250", "1", "8642")
    assert body.startswith("END Paying"), body
    assert jobs.execute_transfers() == 1
    db.session.expire_all()
    fees = house_account(db.session, AccountKind.FEES)
    assert fees.credits_posted - fees.debits_posted == 1_25  # the merchant's fee, half a percent
    operator()
    login(client)
    page = client.get("/admin/").get_data(as_text=True)
    earned, balance = _card(page, "Fees earned, 24 h")
    assert "1.25" in balance
    assert "1.25" in earned, (earned, balance)  # was KES 0.00: only the payer's fee was counted
    assert "nothing in the last 24 hours" not in page.split("Fees earned per hour")[1].split("</svg>")[0]
