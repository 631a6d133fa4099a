"""Operator commands: ``flask --app wsgi accounts|float|ledger|demo ...``."""

import sys

import click
from flask import Blueprint, current_app
from sqlalchemy import func, select

from .extensions import db
from .ledger import check as ledger_check
from .money import InvalidAmount, format_amount, parse_major
from .payments.emoney import FloatError, issue_float
from .payments.models import TrustDeposit
from .phones import InvalidPhone, normalize
from .users import Role, UserError, create_user, find_by_phone
from .ussd.pin_guard import unlock_pin

accounts_cli = Blueprint("accounts", __name__, cli_group="accounts")
float_cli = Blueprint("float", __name__, cli_group="float")
ledger_cli = Blueprint("ledger", __name__, cli_group="ledger")
demo_cli = Blueprint("demo", __name__, cli_group="demo")


@accounts_cli.cli.command("create")
@click.option("--phone", required=True, help="local or international form")
@click.option("--name", required=True, help="first and last name")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--pin", required=True, help="4 digits")
@click.option("--till", default=None, help="merchants: till or pay-bill number")
@click.option("--language", default="en", type=click.Choice(["en", "sw"]))
def create_account(phone, name, role, pin, till, language):
    """Open a wallet for a customer, agent or merchant."""
    try:
        user = create_user(
            db.session, phone=phone, name=name, role=role, pin=pin, till=till, language=language
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {user.role} {user.name} {user.phone} (account {user.account_id})")


@accounts_cli.cli.command("unlock")
@click.option("--phone", required=True, help="local or international form")
def unlock_account(phone):
    """Lift a PIN lock after too many wrong PINs (after checking who is asking)."""
    try:
        user = find_by_phone(db.session, normalize(phone))
    except InvalidPhone as exc:
        raise click.ClickException(f"not a valid phone number: {phone}") from exc
    if user is None:
        raise click.ClickException(f"no account for {phone}")
    unlock_pin(db.session, user)
    db.session.commit()
    click.echo(f"unlocked {user.name} {user.phone}")


@float_cli.cli.command("issue")
@click.option("--phone", required=True, help="the agent's phone number")
@click.option("--amount", required=True, help="major units, e.g. 50000 for KES 50,000")
@click.option("--reference", default=None, help="the trust bank deposit's reference")
def float_issue(phone, amount, reference):
    """Record a trust bank deposit and issue the same amount of e-float to an agent."""
    try:
        minor = parse_major(amount)
        agent = find_by_phone(db.session, normalize(phone))
        if agent is None:
            raise click.ClickException(f"no account for {phone}")
        request = issue_float(db.session, agent, minor, reference)
        db.session.commit()
    except (InvalidAmount, InvalidPhone, FloatError) as exc:
        db.session.rollback()
        raise click.ClickException(f"refused: {exc}") from exc
    currency = current_app.config["CURRENCY"]
    db.session.refresh(agent.account)
    click.echo(
        f"{request.code} issued {format_amount(minor, currency)} to {agent.name} {agent.phone}; "
        f"float balance {format_amount(agent.account.available, currency)}"
    )


def run_check() -> bool:
    deposits = int(db.session.execute(select(func.coalesce(func.sum(TrustDeposit.amount), 0))).scalar_one())
    findings = ledger_check.check(db.session, trust_deposits_total=deposits)
    for f in findings:
        click.echo(f"{'ok  ' if f.ok else 'FAIL'} {f.name}: {f.detail}")
    return all(f.ok for f in findings)


@ledger_cli.cli.command("check")
def check_command():
    """Verify every ledger invariant; exit 0 only if all hold."""
    ok = run_check()
    click.echo("ledger check passed" if ok else "ledger check FAILED")
    sys.exit(0 if ok else 1)


DEMO = (
    # phone, name, role, pin, till
    ("+254700000001", "Amina Agent", "agent", "1111", None),
    ("+254700000002", "Mama Mboga", "merchant", "2222", "123456"),
    ("+254700000003", "Juma Otieno", "customer", "3333", None),
    ("+254700000004", "Wanjiru Kamau", "customer", "4444", None),
)
DEMO_FLOAT_MAJOR = 100_000


@demo_cli.cli.command("seed")
def seed():
    """Create the demo people (idempotent) and give the demo agent e-float."""
    for phone, name, role, pin, till in DEMO:
        if find_by_phone(db.session, phone) is None:
            create_user(db.session, phone=phone, name=name, role=role, pin=pin, till=till)
            click.echo(f"demo {role}: {name} {phone}" + (f" till {till}" if till else ""))
    agent = find_by_phone(db.session, DEMO[0][0])
    if agent.account.credits_posted == 0:
        issue_float(db.session, agent, DEMO_FLOAT_MAJOR * 100, "DEMO-DEPOSIT")
        click.echo(f"demo agent float: KES {DEMO_FLOAT_MAJOR:,}")
    db.session.commit()


def init_app(app) -> None:
    for bp in (accounts_cli, float_cli, ledger_cli, demo_cli):
        app.register_blueprint(bp)
