"""``flask --app wsgi api-keys create|list|revoke``: keys for merchants' systems."""

import click
from flask import Blueprint

from ..admin.models import record
from ..extensions import db
from ..phones import InvalidPhone, normalize
from ..users import find_by_phone
from .keys import ALL_SCOPES, KeyRefused, create_key, keys_of, parse_scopes, revoke

api_keys_cli = Blueprint("api_keys", __name__, cli_group="api-keys")


def _owner(phone: str):
    try:
        user = find_by_phone(db.session, normalize(phone))
    except InvalidPhone as exc:
        raise click.ClickException(f"not a valid phone number: {phone}") from exc
    if user is None:
        raise click.ClickException(f"no account for {phone}")
    return user


@api_keys_cli.cli.command("create")
@click.option("--phone", required=True, help="the merchant's or agent's phone number")
@click.option("--name", required=True, help="what the key is for, e.g. 'shop website'")
@click.option("--scopes", default=",".join(ALL_SCOPES), show_default=True, help="comma-separated")
def create(phone, name, scopes):
    """Make a key; it is printed once, alone on the last line, and cannot be shown again."""
    owner = _owner(phone)
    try:
        row, key = create_key(db.session, owner, name, parse_scopes(scopes))
        # Audited as the back office's is (its id, never the key).
        record(
            db.session, None, "api_key.create", row.key_id, via="cli", phone=owner.phone, scopes=row.scopes
        )
        db.session.commit()
    except KeyRefused as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created key {row.key_id} for {owner.name} {owner.phone}, scopes {row.scopes}")
    click.echo("Store it now: it is shown only this once.")
    click.echo(key)


@api_keys_cli.cli.command("list")
@click.option("--phone", default=None, help="only this owner's keys")
def list_keys(phone):
    """Every key (its id, never its secret), its owner, scopes and state."""
    owner = _owner(phone) if phone else None
    for row in keys_of(db.session, owner):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        click.echo(f"{row.key_id}  {row.owner.phone}  {row.name}  {row.scopes}  {state}")


@api_keys_cli.cli.command("revoke")
@click.argument("key_id")
def revoke_key(key_id):
    """Revoke a key by its id (the 12 hex digits after ``tuma_``); it stops working at once."""
    row = revoke(db.session, key_id)
    if row is None:
        raise click.ClickException(f"no key {key_id}")
    record(db.session, None, "api_key.revoke", row.key_id, via="cli", phone=row.owner.phone)
    db.session.commit()
    click.echo(f"revoked {row.key_id} ({row.name})")
