"""A demo news site that sells articles a shilling each through an allowance (issue 18 item 4):
what a merchant's web site does with Tuma's public API, and nothing else.

A reader enters a phone number and asks for an allowance (``POST /api/v1/allowances``, by
default 20 a day, 1 a charge, in Tuma's currency); the customer approves it in My approvals on
the phone simulator; each "Read" then charges 1 (``POST /api/v1/allowances/{id}/charges``) and shows
the article, and the page shows the tab (``GET /api/v1/allowances/{id}``). "Settle now"
(``POST .../settle``) turns the tab into one payment, and the customer's one settlement SMS
appears in the simulator's inbox. No SMS and no PIN per read: that is the point.

Each "Read" button carries an Idempotency-Key made when the page was drawn, so a reader who
clicks twice or reloads the article pays once for it: the same key is the same charge.

It talks to Tuma over HTTP only, with the demo news merchant's key (``devtools.demo``:
``DEMO_NEWS_API_KEY``), through a ``Tuma`` client; tests hand it one that calls the service
app's test client instead. It keeps the reader's phone and allowance id in its own signed
session cookie; it stores nothing else.

``python -m devtools.news --port 8027 --tuma-url http://127.0.0.1:8000 --key tuma_...`` runs it
(``make run`` does; refuses ``TUMA_ENV=production``).
"""

import os
import secrets
import uuid
from dataclasses import dataclass

import requests
from flask import Flask, flash, redirect, render_template, request, session, url_for

from ussd_app import country
from ussd_app.money import format_amount

TIMEOUT_SECONDS = 5
NAME = "Habari Daily"  # the API takes 20 characters


@dataclass(frozen=True)
class Article:
    slug: str
    title: str
    text: str


ARTICLES = (
    Article(
        "water-points",
        "Water points open before dawn in Kibera",
        "Ten new kiosks sell clean water by the jerrican from five in the morning. Residents pay "
        "a few shillings a day from their phones instead of queueing with coins.",
    ),
    Article(
        "matatu-fares",
        "Matatu fares steady as fuel prices ease",
        "Operators on the Thika Road routes say fares will hold through the holidays. Commuters "
        "who pay by phone no longer wait for change at the stage.",
    ),
    Article(
        "mama-mboga",
        "Mama mboga goes digital",
        "Market vendors report that most of their customers now pay by till number. Small sums, "
        "many times a day: a shilling still counts when it costs nothing to send.",
    ),
    Article(
        "long-rains",
        "Farmers ready for the long rains",
        "Seed sellers in Nakuru say demand is up on last year. Extension officers now send "
        "planting advice by SMS to anyone who asks.",
    ),
)


class Tuma:
    """Tuma's public API as the news site calls it: ``call`` -> (HTTP status, JSON body)."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.http = requests.Session()

    def call(self, method: str, path: str, body: dict | None = None, idempotency_key: str | None = None):
        headers = {"Authorization": f"Bearer {self.key}"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            answer = self.http.request(
                method, f"{self.base_url}/api/v1{path}", json=body, headers=headers, timeout=TIMEOUT_SECONDS
            )
            return answer.status_code, answer.json()
        except (requests.RequestException, ValueError):
            return 503, {
                "error": {"code": "tuma_unreachable", "message": f"Tuma did not answer at {self.base_url}."}
            }


def money(minor: int | None) -> str:
    """An amount as Tuma shows it, in the currency of the country Tuma runs in (``TUMA_COUNTRY``,
    as ``make run`` hands it down; the API's ``currency`` fields say the same)."""
    code = country.profile(os.environ.get("TUMA_COUNTRY") or country.DEFAULT_COUNTRY).currency
    return format_amount(minor or 0, code)


def local_example(n: int) -> str:
    """The country's demo mobile ``n`` as people there type it: 0700000003, 0240000003, ..."""
    import phonenumbers

    here = country.profile(os.environ.get("TUMA_COUNTRY") or country.DEFAULT_COUNTRY)
    return "0" + phonenumbers.national_significant_number(phonenumbers.parse(here.numbered(n)))


def reads(n: int) -> str:
    return f"{n} read" if n == 1 else f"{n} reads"


# What a reader is told for each of Tuma's refusals (the API's stable codes).
REFUSALS = {
    "allowance_not_active": "Your allowance is not active yet: approve it in My approvals on your phone.",
    "exceeds_allowance_left": "Your allowance for this period is used up: come back when it renews.",
    "exceeds_max_charge": "This article costs more than your allowance's most per charge.",
    "customer_not_found": "That number has no Tuma account: register on the phone simulator first.",
    "invalid_phone": "That is not a mobile number.",
    "too_many_allowance_requests": "Too many allowance requests to this number today.",
    "not_found": "Tuma does not know that allowance any more: ask for a new one.",
}

STATES = {
    "awaiting_approval": "Waiting for your approval: on your phone, My approvals, approve with your PIN.",
    "approving": "Approved: Tuma is holding your allowance; a moment.",
    "active": "Active: each article costs {price}.",
    "settling": "Settling your tab: reads resume in a moment.",
    "paused": "Paused: the money for it was not in your wallet. Top up; it is tried again next period.",
    "declined": "You declined this allowance.",
    "cancelled": "This allowance was cancelled.",
    "expired": "This allowance has ended.",
}
WAITING = {"awaiting_approval", "approving", "settling"}  # the page refreshes itself meanwhile


def refused(body: dict) -> str:
    error = (body or {}).get("error") or {}
    return REFUSALS.get(error.get("code"), f"Tuma refused: {error.get('message', 'no answer')}")


def create_news(tuma: Tuma, *, limit: int = 20_00, price: int = 1_00, period: str = "day") -> Flask:
    """The news site's app, asking for ``limit`` a ``period`` and charging ``price`` a read."""
    app = Flask(__name__)
    app.secret_key = secrets.token_hex(32)  # the reader's cookie lives as long as this process
    articles = {a.slug: a for a in ARTICLES}

    @app.context_processor
    def country_words():
        """The price and a number hint as the country Tuma runs in has them (a cedi is no
        shilling; Tuma refuses a Kenyan 07... in Ghana)."""
        return {"price_text": money(price), "phone_hint": local_example(3)}

    def allowance() -> tuple[dict | None, str | None]:
        """The reader's allowance as Tuma tells it now, or (None, why not)."""
        if "allowance" not in session:
            return None, None
        status, body = tuma.call("GET", f"/allowances/{session['allowance']}")
        return (body, None) if status == 200 else (None, refused(body))

    @app.get("/")
    def home():
        found, problem = allowance()
        state = STATES.get(found["status"], found["status"]) if found else None
        return render_template(
            "news/index.html",
            phone=session.get("phone"),
            allowance=found,
            problem=problem,
            state=state.format(price=money(price)) if state else None,
            waiting=bool(found and found["status"] in WAITING),
            articles=ARTICLES,
            read_key=uuid.uuid4().hex,  # one per drawing of the page: a double click is one charge
            limit=limit,
            price=price,
            period=period,
            money=money,
            reads=reads,
        )

    @app.post("/allowance")
    def ask():
        phone = (request.form.get("phone") or "").strip()[:20]
        status, body = tuma.call(
            "POST",
            "/allowances",
            {
                "phone": phone,
                "limit": limit,
                "max_charge": price,
                "period": period,
                "description": NAME,
            },
            idempotency_key=uuid.uuid4().hex,
        )
        if status != 201:
            flash(refused(body))
        else:
            session.update(phone=body["phone"], allowance=body["id"])
            flash(f"Asked for {money(limit)} a {period}. Approve it in My approvals on your phone.")
        return redirect(url_for("home"))

    @app.post("/read/<slug>")
    def read(slug):
        article = articles.get(slug)
        if article is None or "allowance" not in session:
            return redirect(url_for("home"))
        key = "".join(c for c in request.form.get("key", "") if c.isalnum())[:64] or uuid.uuid4().hex
        status, body = tuma.call(
            "POST",
            f"/allowances/{session['allowance']}/charges",
            {"amount": price, "reference": slug},
            idempotency_key=f"read-{key}-{slug}",
        )
        if status != 201:
            flash(refused(body))
            return redirect(url_for("home"))
        return render_template("news/article.html", article=article, charge=body, money=money, reads=reads)

    @app.post("/settle")
    def settle():
        if "allowance" in session:
            status, body = tuma.call(
                "POST", f"/allowances/{session['allowance']}/settle", {}, idempotency_key=uuid.uuid4().hex
            )
            if status != 202:
                flash(refused(body))
            elif body.get("settlement") is None:
                flash("Nothing to settle: no reads since the last settlement.")
            else:
                done = body["settlement"]
                flash(
                    f"Settled {reads(done['charges'])}, {money(done['amount'])}, as one payment "
                    f"({done['transaction']}). Your SMS is on its way."
                )
        return redirect(url_for("home"))

    @app.post("/forget")
    def forget():
        session.clear()
        return redirect(url_for("home"))

    return app
