"""The demo news site (``devtools.news``) against the real service app: a reader asks for an
allowance, approves it (as My approvals does after the PIN), reads articles a shilling each
with no SMS, is told plainly when the allowance is not active or used up, settles, and the one
settlement SMS is in the phone simulator's inbox. The news site's calls go to the service app's
test client with the key the demo seed made: no mock of Tuma."""

import re

import pytest

from devtools.demo import DEMO_NEWS, DEMO_NEWS_API_KEY
from devtools.news import ARTICLES, Tuma, create_news
from tests.api_helpers import execute_all, ledger_check
from tests.escrow_helpers import funded_customer, sms_to
from ussd_app.extensions import db
from ussd_app.payments import allowances as al
from ussd_app.users import find_by_phone
from worker.jobs import send_sms

READER = "+254712000111"  # funded_customer(): Juma Otieno


class ServiceClient(Tuma):
    """The news site's Tuma client, calling the service app's WSGI test client instead of HTTP."""

    def __init__(self, client, key: str):
        super().__init__("http://tuma.test", key)
        self.client = client
        self.tests_session = db.session()  # the test's own, in the test's app context

    def call(self, method, path, body=None, idempotency_key=None):
        headers = {"Authorization": f"Bearer {self.key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        self.tests_session.commit()  # SQLite: the test's own reads must not hold the database
        answer = self.client.open(f"/api/v1{path}", method=method, json=body, headers=headers)
        return answer.status_code, answer.get_json()


@pytest.fixture
def site(app, config, runner, client):
    config(API_RATE_PER_MINUTE=1_000_000, SIMULATOR_ENABLED=True)
    seeded = runner.invoke(args=["demo", "seed"])
    assert seeded.exit_code == 0, seeded.output
    funded_customer()
    news = create_news(ServiceClient(client, DEMO_NEWS_API_KEY), limit=3_00, price=1_00, period="day")
    news.testing = True
    return news.test_client()


def page(site) -> str:
    return site.get("/").get_data(as_text=True)


def read_key(html: str) -> str:
    return re.search(r'name="key" value="([0-9a-f]+)"', html).group(1)


def read(site, slug: str, key: str):
    return site.post(f"/read/{slug}", data={"key": key}, follow_redirects=True).get_data(as_text=True)


def inbox(client) -> list[str]:
    """The reader's SMS as the phone simulator shows them (the local gateway's)."""
    found = client.get("/simulator/messages", query_string={"phone": READER}).get_json()["messages"]
    return [m["text"] for m in found]


def approve(allowance_id: str) -> None:
    """The reader approves in My approvals (the PIN checked there); the worker makes the hold."""
    assert al.approve(db.session, find_by_phone(db.session, READER), allowance_id)
    db.session.commit()
    execute_all()


def the_allowance() -> al.Allowance:
    db.session.expire_all()
    [found] = db.session.query(al.Allowance).all()
    return found


def test_a_reader_reads_three_articles_for_a_shilling_each_and_gets_one_sms(site, runner, client):
    send_sms()
    sms_before = len(inbox(client))
    asked = site.post("/allowance", data={"phone": "0712000111"}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "Asked for KES 3.00 a day" in asked and "Waiting for your approval" in asked
    assert '<meta http-equiv="refresh"' in asked  # the page watches for the approval
    allowance = the_allowance()
    assert (allowance.limit_amount, allowance.max_charge, allowance.period) == (3_00, 1_00, "day")
    assert find_by_phone(db.session, DEMO_NEWS[0]).account_id == allowance.merchant_account_id

    # Not approved yet: a read is refused and the reader is told why.
    early = read(site, ARTICLES[0].slug, read_key(asked))
    assert "Your allowance is not active yet: approve it in My approvals" in early
    assert ARTICLES[0].text not in early

    approve(allowance.id)
    home = page(site)
    assert 'data-status="active"' in home and "KES 3.00</b> left" in home
    sms_after_ask = len(sms_to(READER))  # the ask's SMS is written; reads add none

    key = read_key(home)
    shown = site.post(f"/read/{ARTICLES[0].slug}", data={"key": key}).get_data(as_text=True)
    assert ARTICLES[0].text in shown and "KES 2.00 left" in shown
    # The same page's button clicked again (or the article reloaded) is the same charge.
    again = site.post(f"/read/{ARTICLES[0].slug}", data={"key": key}).get_data(as_text=True)
    assert ARTICLES[0].text in again and "KES 2.00 left" in again
    for article in ARTICLES[1:3]:
        assert article.text in read(site, article.slug, read_key(page(site)))
    home = page(site)
    assert (
        '<b id="charged">KES 3.00</b>' in home and "(3 reads)" in home and '<b id="left">KES 0.00</b>' in home
    )

    # Used up: the fourth article is refused, plainly.
    over = read(site, ARTICLES[3].slug, read_key(home))
    assert "Your allowance for this period is used up" in over and ARTICLES[3].text not in over
    assert len(sms_to(READER)) == sms_after_ask  # no SMS per read

    settled = site.post("/settle", follow_redirects=True).get_data(as_text=True)
    assert "Settled 3 reads, KES 3.00, as one payment" in settled
    execute_all()
    send_sms()
    new = inbox(client)[sms_before:]
    assert len(new) == 2, new  # the ask's SMS and the settlement's: none per read
    assert new[0].startswith("HABARI DAILY asks to charge you up to KES 3.00 a day")
    settlement = new[1]
    assert "KES 3.00 paid to HABARI DAILY for 3 charges" in settlement
    code = re.search(r"Settled 3 reads, KES 3.00, as one payment \(([A-Z2-7]{10})\)", settled).group(1)
    assert settlement.startswith(f"{code} Confirmed.")
    assert "Nothing to settle" in site.post("/settle", follow_redirects=True).get_data(as_text=True)
    ledger_check(runner)


def test_the_simulator_links_to_the_news_site(site, client, monkeypatch):
    monkeypatch.setenv("TUMA_DEMO_NEWS_URL", "http://127.0.0.1:18027")
    simulator = client.get("/simulator/").get_data(as_text=True)
    assert 'id="news-link" href="http://127.0.0.1:18027/"' in simulator


def test_the_reader_is_told_when_the_number_has_no_account_or_tuma_is_away(site):
    told = site.post("/allowance", data={"phone": "0712999999"}, follow_redirects=True).get_data(as_text=True)
    assert "That number has no Tuma account" in told
    told = site.post("/allowance", data={"phone": "hello"}, follow_redirects=True).get_data(as_text=True)
    assert "not a mobile number" in told

    from tests.ops_helpers import closed_port

    away = create_news(Tuma(f"http://127.0.0.1:{closed_port()}", DEMO_NEWS_API_KEY))
    answer = away.test_client().post("/allowance", data={"phone": "0712000111"}, follow_redirects=True)
    assert answer.status_code == 200 and "Tuma did not answer" in answer.get_data(as_text=True)


def test_the_demo_seed_never_makes_the_known_key_in_production(app, config, runner, client):
    config(TUMA_ENV="production")
    seeded = runner.invoke(args=["demo", "seed"])  # (it fails later: the demo webhooks are http)
    assert "no demo news site's API key in production" in seeded.output
    refused = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {DEMO_NEWS_API_KEY}"})
    assert refused.status_code == 401


def test_the_demo_seed_makes_the_news_sites_key_once(app, runner, client):
    for _ in range(2):
        assert runner.invoke(args=["demo", "seed"]).exit_code == 0
    from ussd_app.api.keys import keys_of

    merchant = find_by_phone(db.session, DEMO_NEWS[0])
    [key] = keys_of(db.session, merchant)
    assert key.scope_set == {"collect", "read"}
    seen = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {DEMO_NEWS_API_KEY}"})
    assert seen.status_code == 200, seen.get_json()
