"""``flask --app wsgi operators create --email E --name N [--password P]``, ``operators deactivate``
and ``operators unlock-sign-in``. (The demo operator of ``make run``: ``devtools/demo.py``.)"""

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
    """Stop an operator from signing in and end every session they have open, at once."""
    from . import operator_sessions

    operator = find_operator(db.session, email)
    if operator is None:
        raise click.ClickException(f"no operator {email}")
    operator.active = False
    record(db.session, None, "operator.deactivate", operator.email, via="cli")
    db.session.commit()
    ended = operator_sessions.end_all(operator.id)
    click.echo(f"deactivated {operator.email} ({ended} open session{'' if ended == 1 else 's'} ended)")


@operators_cli.cli.command("unlock-sign-in")
@click.option("--email", required=True)
def unlock_sign_in(email):
    """Lift the lock on an account after too many failed sign-ins (the lock by client address
    stays until it runs out)."""
    from . import throttle
    from .models import normalize_email

    throttle.clear_account(normalize_email(email))
    record(db.session, None, "operator.unlock_sign_in", normalize_email(email)[:100], via="cli")
    db.session.commit()
    click.echo(f"sign-in unlocked for {normalize_email(email)}")
