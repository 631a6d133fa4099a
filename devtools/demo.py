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

from ussd_app.admin.models import create_operator, find_operator, record
from ussd_app.api import keys
from ussd_app.events import endpoints
from ussd_app.extensions import db
from ussd_app.payments.emoney import issue_float
from ussd_app.users import create_user, find_by_phone

demo_cli = Blueprint("demo", __name__, cli_group="demo")

DEMO = (
    # phone, name, role, pin, till
    ("+254700000001", "Amina Agent", "agent", "1111", None),
    ("+254700000002", "Mama Mboga", "merchant", "2222", "123456"),
    ("+254700000003", "Juma Otieno", "customer", "3333", None),
    ("+254700000004", "Wanjiru Kamau", "customer", "4444", None),
    ("+254700000005", "Mtoto Fund", "cause", "5555", "55555"),  # takes tips: Tip or donate, TOTAL 55555
)
DEMO_FLOAT_MAJOR = 100_000

# The demo merchant's system: the local receiver (devtools.receiver, started by `make run`) at
# TUMA_DEMO_RECEIVER_URL, its events signed with this known demo secret, which the receiver is
# given to verify them. Demo only.
DEMO_RECEIVER_URL = "http://127.0.0.1:8026"
DEMO_WEBHOOK_SECRET = "whsec_demo-only-not-secret"  # noqa: S105  # nosec B105  # the demo's, never real


# The demo news site (devtools.news, started by `make run`) is a merchant of its own, with no
# phone on the simulator (a web site, not a handset): its readers' allowances are paid to it.
# Its API key is this known demo key (the seed stores only its digest, as for every key), which
# the news site is given, as the receiver is given the webhook secret. Demo only.
DEMO_NEWS = ("+254700000006", "Habari Daily", "merchant", "6666", "555555")
DEMO_NEWS_API_KEY = "tuma_00000000d3e0_demo-only-news-site-key-not-secret"  # noqa: S105  # nosec B105


def demo_receiver_url() -> str:
    return (os.environ.get("TUMA_DEMO_RECEIVER_URL") or DEMO_RECEIVER_URL).rstrip("/")


DEMO_NEWS_URL = "http://127.0.0.1:8027"


def demo_news_url() -> str:
    """Where the demo news site is (``make run`` sets TUMA_DEMO_NEWS_URL from NEWS_PORT)."""
    return (os.environ.get("TUMA_DEMO_NEWS_URL") or DEMO_NEWS_URL).rstrip("/")


def demo_hooks_name() -> str:
    """The receiver path the demo merchant's events arrive at (its till number)."""
    return next(till for _phone, _name, role, _pin, till in DEMO if role == "merchant")


# The demo operator `make run` signs in with. Demo only: refused when TUMA_ENV=production.
DEMO_OPERATOR = ("demo@tuma.example", "Demo Operator", "demo operator passphrase")


@demo_cli.cli.command("seed")
def seed():
    """Create the demo people (idempotent) and give the demo agent e-float."""
    for phone, name, role, pin, till in DEMO:
        if find_by_phone(db.session, phone) is None:
            create_user(db.session, phone=phone, name=name, role=role, pin=pin, till=till)
            click.echo(f"demo {role}: {name} {phone}" + (f" till {till}" if till else ""))
    _seed_news_site()
    merchant = find_by_phone(db.session, DEMO[1][0])
    if endpoints.for_account(db.session, merchant.account_id) is None:
        url = f"{demo_receiver_url()}/hooks/{demo_hooks_name()}"
        endpoints.configure(db.session, merchant.account_id, url=url, secret=DEMO_WEBHOOK_SECRET)
        click.echo(f"demo merchant's webhooks: {url}")
    agent = find_by_phone(db.session, DEMO[0][0])
    if agent.account.credits_posted == 0:
        issue_float(db.session, agent, DEMO_FLOAT_MAJOR * 100, "DEMO-DEPOSIT")
        click.echo(f"demo agent float: KES {DEMO_FLOAT_MAJOR:,}")
    db.session.commit()


def _seed_news_site() -> None:
    """The news site's merchant and its known API key (collect and read), once each; never the
    key in production (anyone could collect in that merchant's name with it)."""
    phone, name, role, pin, till = DEMO_NEWS
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
