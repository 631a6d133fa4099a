"""``flask --app wsgi disputes list|decide``: the operator decides disputed protected purchases."""

import click
from flask import Blueprint

from ..extensions import db
from ..messages import money
from .holds import DisputeError, decide_dispute, disputed

disputes_cli = Blueprint("disputes", __name__, cli_group="disputes")


@disputes_cli.cli.command("list")
def list_disputes():
    """Protected purchases waiting for a decision, oldest first."""
    for hold in disputed(db.session):
        click.echo(f"{hold.code} {money(hold.amount)} {hold.created_at:%Y-%m-%d %H:%M}")


@disputes_cli.cli.command("decide")
@click.option("--code", required=True, help="the protected purchase's transaction code")
@click.option("--for", "side", required=True, type=click.Choice(["buyer", "merchant"]))
def decide(code, side):
    """Refund the buyer (void the hold) or pay the merchant (post it), with both SMS; audited
    as the back office's decision is (committed with it)."""
    from ..admin.models import record

    try:
        code = code.strip().upper()
        request = decide_dispute(db.session, code, for_buyer=side == "buyer")
        verdict = "approve" if side == "buyer" else "refuse"  # the back office's words
        record(db.session, None, f"decision.{verdict}", f"protected:{code}", via="cli", outcome=request.code)
        db.session.commit()
    except DisputeError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{code}: decided for the {side} ({request.code})")
