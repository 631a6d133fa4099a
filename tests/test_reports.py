"""The read model (``ussd_app/reports.py``): the back office, ``/metrics`` and
``flask ledger check`` read their figures from it, so on one state they say the same."""

from prometheus_client.parser import text_string_to_metric_families

from tests.admin_helpers import login, operator
from tests.escrow_helpers import FUNDS, buy_protected, funded_customer, merchant
from ussd_app.extensions import db
from worker import jobs


def metrics(client) -> dict:
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_the_dashboard_metrics_and_ledger_check_agree_on_escrow_and_e_money(client, runner):
    funded_customer(), merchant()
    buy_protected(client)  # a protected purchase: held
    jobs.send_sms()
    db.session.rollback()

    found = metrics(client)
    held = {labels[0][1]: v for (name, labels), v in found.items() if name == "tuma_holds_open" and v}
    amounts = {
        labels[0][1]: v for (name, labels), v in found.items() if name == "tuma_holds_open_amount_minor" and v
    }
    assert held == {"protected_purchase": 1} and amounts == {"protected_purchase": 300_00}

    operator()
    login(client)
    dashboard = client.get("/admin/").get_data(as_text=True)
    row = '<td>protected_purchase</td><td class="num">1</td><td class="num">KES 300.00</td>'
    assert row in dashboard
    sent = int(found[("tuma_sms", (("status", "sent"),))])
    assert f"{sent} handed over" in dashboard

    ledger_page = client.get("/admin/ledger").get_data(as_text=True)
    shown = f"KES {FUNDS // 100:,}.00"
    assert ledger_page.count(shown) >= 3  # trust balance, e-money in circulation, deposits on record
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert f"e-money {FUNDS}, trust {FUNDS}, deposits {FUNDS}" in result.output
