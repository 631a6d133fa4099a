"""``flask --app wsgi standing-orders run-due [--at ISO-8601]``: record the standing orders'
runs due at an instant (what the maintenance job does every few seconds with now)."""

from datetime import UTC, datetime, timedelta

import click
from flask import Blueprint

from ..clock import utcnow
from ..extensions import db
from ..messages import money
from ..users import find_by_account
from .standing_orders import local_date, midnight, run_due

standing_orders_cli = Blueprint("standing_orders", __name__, cli_group="standing-orders")

# ``--at`` further ahead than this pays runs not due yet (a year ahead: a year of daily runs at
# once); refused unless ``--future`` says it is meant (a test, a replay on a copy).
AHEAD = timedelta(days=1)


def _instant(text: str | None) -> datetime | None:
    """An ISO-8601 instant as naive UTC; one without an offset is read as UTC (as stored)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 instant: {text}", param_hint="--at") from exc
    try:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        midnight(local_date(moment) + timedelta(days=1))  # the day's end, as a retry reads it
    except (OverflowError, ValueError) as exc:  # the year 1 or 9999 in another time zone
        raise click.BadParameter(f"out of the calendar's range: {text}", param_hint="--at") from exc
    return moment


@standing_orders_cli.cli.command("run-due")
@click.option("--at", "at", default=None, help="the instant, ISO-8601 (default: now); no offset = UTC")
@click.option(
    "--future",
    is_flag=True,
    default=False,
    help="allow an --at more than a day ahead of the clock (it pays every run due until then)",
)
def run_due_command(at, future):
    """Record the transfer of every run due at the instant (and second tries come due), and
    commit. Safe to run twice for one instant: it pays once. An instant more than a day ahead
    is refused without --future: it would pay runs that are not due yet."""
    moment = _instant(at)
    if moment is not None and moment > utcnow() + AHEAD and not future:
        raise click.BadParameter(
            f"{at} is more than a day ahead of now: it would pay every run due until then "
            "(add --future if that is meant)",
            param_hint="--at",
        )
    requests = run_due(db.session, now=moment)
    lines = []
    for request in requests:
        payer = find_by_account(db.session, request.debit_account_id)
        payee = find_by_account(db.session, request.credit_account_id)
        lines.append(
            f"{request.id} {request.code} {request.kind} {money(request.amount)} "
            f"{payer.phone if payer else request.debit_account_id} -> "
            f"{payee.phone if payee else request.credit_account_id}"
        )
    db.session.commit()
    for line in lines:
        click.echo(f"recorded {line}")
    click.echo(f"{len(requests)} standing order run(s) recorded")
