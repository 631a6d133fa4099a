"""The demo of ``make run``: ``flask --app devtools demo seed`` (four demo people, the demo
agent's e-float, the demo merchant's webhook endpoint on the local receiver, and the demo news
site's merchant with its API key) and ``flask --app devtools demo operator`` (the back
office's demo operator).
Both are idempotent; the operator is refused with ``TUMA_ENV=production``. Demo PINs and the
demo password only: never use them for real accounts."""

import os

import click
from flask import Blueprint, current_app
from sqlalchemy import select

from ussd_app import country
from ussd_app.admin.models import create_operator, find_operator, record
from ussd_app.api import keys
from ussd_app.events import endpoints
from ussd_app.extensions import db
from ussd_app.messages import money
from ussd_app.money import to_minor
from ussd_app.payments.emoney import issue_float
from ussd_app.users import create_user, find_by_phone

demo_cli = Blueprint("demo", __name__, cli_group="demo")

# The demo's people, in every country: their number is the country profile's example mobile
# ending in this (``demo_people``: +254700000001 ... in Kenya, +233240000001 ... in Ghana).
DEMO_PEOPLE = (
    # n, role, pin, till
    (1, "agent", "1111", None),
    (2, "merchant", "2222", "123456"),
    (3, "customer", "3333", None),
    (4, "customer", "4444", None),
    (5, "cause", "5555", "55555"),  # takes tips: Tip or donate, TOTAL 55555
)
# Their names, by country (the same five people; a country not listed uses Kenya's).
DEMO_NAMES = {
    "KE": ("Amina Agent", "Mama Mboga", "Juma Otieno", "Wanjiru Kamau", "Mtoto Fund"),
    "GH": ("Abena Agent", "Auntie Ama Provisions", "Kwame Mensah", "Efua Owusu", "Nkabom Fund"),
    "TZ": ("Amina Wakala", "Mama Mboga", "Juma Mwakyusa", "Neema Massawe", "Mfuko wa Watoto"),
}
DEMO_FLOAT_MAJOR = 100_000  # Kenya's; demo_float_major() is the country's
DEMO_FLOAT_BY_COUNTRY = {"KE": 100_000, "GH": 10_000, "TZ": 2_000_000}


def demo_people(code: str | None = None) -> list[tuple[str, str, str, str, str | None]]:
    """(phone, name, role, pin, till) of the demo's people in ``code`` (the app's country)."""
    chosen = country.profile(code)
    names = DEMO_NAMES.get(chosen.code, DEMO_NAMES["KE"])
    return [
        (chosen.numbered(n), name, role, pin, till)
        for (n, role, pin, till), name in zip(DEMO_PEOPLE, names, strict=True)
    ]


def demo_float_major() -> int:
    return DEMO_FLOAT_BY_COUNTRY.get(country.profile().code, DEMO_FLOAT_MAJOR)


DEMO = tuple(demo_people("KE"))  # Kenya's, as the tests' cast knows them

# The demo merchant's system: the local receiver (devtools.receiver, started by `make run`) at
# TUMA_DEMO_RECEIVER_URL, its events signed with this known demo secret, which the receiver is
# given to verify them. Demo only.
DEMO_RECEIVER_URL = "http://127.0.0.1:8026"
DEMO_WEBHOOK_SECRET = "whsec_demo-only-not-secret"  # noqa: S105  # nosec B105  # the demo's, never real


# The demo news site (devtools.news, started by `make run`) is a merchant of its own, with no
# phone on the simulator (a web site, not a handset): its readers' allowances are paid to it.
# Its API key is this known demo key (the seed stores only its digest, as for every key), which
# the news site is given, as the receiver is given the webhook secret. Demo only.
DEMO_NEWS = ("+254700000006", "Habari Daily", "merchant", "6666", "555555")  # Kenya's; demo_news()


def demo_news() -> tuple[str, str, str, str, str]:
    """The news site's merchant in the app's country: number 6 of the demo."""
    _phone, name, role, pin, till = DEMO_NEWS
    return (country.profile().numbered(6), name, role, pin, till)


DEMO_NEWS_API_KEY = "tuma_00000000d3e0_demo-only-news-site-key-not-secret"  # noqa: S105  # nosec B105


def demo_receiver_url() -> str:
    return (os.environ.get("TUMA_DEMO_RECEIVER_URL") or DEMO_RECEIVER_URL).rstrip("/")


DEMO_NEWS_URL = "http://127.0.0.1:8027"


def demo_news_url() -> str:
    """Where the demo news site is (``make run`` sets TUMA_DEMO_NEWS_URL from NEWS_PORT)."""
    return (os.environ.get("TUMA_DEMO_NEWS_URL") or DEMO_NEWS_URL).rstrip("/")


def demo_hooks_name() -> str:
    """The receiver path the demo merchant's events arrive at (its till number)."""
    return next(till for _n, role, _pin, till in DEMO_PEOPLE if role == "merchant")


# The demo operator `make run` signs in with. Demo only: refused when TUMA_ENV=production.
DEMO_OPERATOR = ("demo@tuma.example", "Demo Operator", "demo operator passphrase")


@demo_cli.cli.command("seed")
def seed():
    """Create the demo people (idempotent) and give the demo agent e-float."""
    people = demo_people()
    for phone, name, role, pin, till in people:
        if find_by_phone(db.session, phone) is None:
            create_user(db.session, phone=phone, name=name, role=role, pin=pin, till=till)
            click.echo(f"demo {role}: {name} {phone}" + (f" till {till}" if till else ""))
    _seed_news_site()
    merchant = find_by_phone(db.session, people[1][0])
    if endpoints.for_account(db.session, merchant.account_id) is None:
        url = f"{demo_receiver_url()}/hooks/{demo_hooks_name()}"
        endpoints.configure(db.session, merchant.account_id, url=url, secret=DEMO_WEBHOOK_SECRET)
        click.echo(f"demo merchant's webhooks: {url}")
    agent = find_by_phone(db.session, people[0][0])
    if agent.account.credits_posted == 0:
        issue_float(db.session, agent, to_minor(demo_float_major()), "DEMO-DEPOSIT")
        click.echo(f"demo agent float: {money(to_minor(demo_float_major()))}")
    db.session.commit()


def _seed_news_site() -> None:
    """The news site's merchant and its known API key (collect and read), once each; never the
    key in production (anyone could collect in that merchant's name with it)."""
    phone, name, role, pin, till = demo_news()
    merchant = find_by_phone(db.session, phone)
    if merchant is None:
        merchant = create_user(db.session, phone=phone, name=name, role=role, pin=pin, till=till)
        db.session.flush()
        click.echo(f"demo news site's merchant: {name} {phone} till {till}")
    if current_app.config.get("TUMA_ENV") == "production":
        click.echo("no demo news site's API key in production: its key is known to everyone")
        return
    key_id = DEMO_NEWS_API_KEY.removeprefix(keys.PREFIX).split("_", 1)[0]
    known = select(keys.ApiKey).where(keys.ApiKey.key_id == key_id)
    if db.session.execute(known).scalar_one_or_none() is None:
        db.session.add(
            keys.ApiKey(
                key_id=key_id,
                secret_hash=keys.digest(DEMO_NEWS_API_KEY),
                user_id=merchant.id,
                name="demo news site",
                scopes=",".join([keys.Scope.COLLECT.value, keys.Scope.READ.value]),
            )
        )
        click.echo("demo news site's API key (collect, read): devtools.demo.DEMO_NEWS_API_KEY")


@demo_cli.cli.command("operator")
def operator():
    """Create the demo operator (idempotent) and print how to sign in; never in production."""
    email, name, password = DEMO_OPERATOR
    if current_app.config.get("TUMA_ENV") == "production":
        raise click.ClickException("no demo operator in production: use `operators create`")
    if find_operator(db.session, email) is None:
        create_operator(db.session, email=email, name=name, password=password)
        record(db.session, None, "operator.create", email, via="cli", demo=True)
        db.session.commit()
    click.echo(f"demo operator: {email} / {password}")
