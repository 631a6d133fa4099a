"""``flask --app wsgi operators create --email E --name N [--password P]``, ``operators deactivate``,
and ``operators demo`` (the demo operator of ``make run``)."""

import click
from flask import Blueprint

from ..extensions import db
from .models import OperatorError, create_operator, find_operator, record

operators_cli = Blueprint("operators", __name__, cli_group="operators")


@operators_cli.cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="at least 12 characters (prompted, hidden, when left out)",
)
def create(email, name, password):
    """Create a back-office operator (signs in at /admin)."""
    try:
        operator = create_operator(db.session, email=email, name=name, password=password)
        record(db.session, None, "operator.create", operator.email, via="cli", name=operator.name)
        db.session.commit()
    except OperatorError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created operator {operator.name} <{operator.email}>")


@operators_cli.cli.command("deactivate")
@click.option("--email", required=True)
def deactivate(email):
    """Stop an operator from signing in (their open sessions end at the next page)."""
    operator = find_operator(db.session, email)
    if operator is None:
        raise click.ClickException(f"no operator {email}")
    operator.active = False
    record(db.session, None, "operator.deactivate", operator.email, via="cli")
    db.session.commit()
    click.echo(f"deactivated {operator.email}")


# The demo operator `make run` signs in with. Demo only: refused when TUMA_ENV=production.
DEMO_OPERATOR = ("demo@tuma.example", "Demo Operator", "demo operator passphrase")


@operators_cli.cli.command("demo")
def demo():
    """Create the demo operator (idempotent) and print how to sign in; never in production."""
    from flask import current_app

    email, name, password = DEMO_OPERATOR
    if current_app.config.get("TUMA_ENV") == "production":
        raise click.ClickException("no demo operator in production: use `operators create`")
    if find_operator(db.session, email) is None:
        create_operator(db.session, email=email, name=name, password=password)
        record(db.session, None, "operator.create", email, via="cli", demo=True)
        db.session.commit()
    click.echo(f"demo operator: {email} / {password}")
