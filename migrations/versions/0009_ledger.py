"""A bank deposit's reference issues e-float once

Revision ID: 0009_ledger
Revises: 0008

- ``trust_deposits.reference_key``: the bank reference in its one compared form (its letters
  and digits only, after Unicode NFKC, digits as ASCII, letters upper case), unique. Filled here from
  ``bank_reference``; a reference already used by an earlier deposit (possible before this
  rule) keeps NULL on the later deposits, which ``flask ledger check`` reports.
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0009_ledger"
down_revision = "0008"
branch_labels = None
depends_on = None


def _key(reference):
    """ussd_app.payments.emoney.reference_key at this revision, copied: a migration must not
    import app code, which may change later, and must do the same thing whenever it runs.
    Cut to the column's 64 characters (a longer key can only be a reference issued before
    this rule; two cut to the same key are kept as one: the later keeps no key, as a repeat does)."""
    if reference is None:
        return None
    kept = []
    for ch in unicodedata.normalize("NFKC", reference):
        if unicodedata.category(ch) == "Nd":
            kept.append(str(unicodedata.digit(ch)))
        elif ch.isalpha():
            kept.append(ch.casefold().upper())
    return "".join(kept)[:64] or None


def upgrade():
    op.add_column("trust_deposits", sa.Column("reference_key", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    deposits = sa.table(
        "trust_deposits",
        sa.column("id", sa.Integer),
        sa.column("bank_reference", sa.String),
        sa.column("reference_key", sa.String),
    )
    seen = set()
    for deposit_id, reference in bind.execute(
        sa.select(deposits.c.id, deposits.c.bank_reference).order_by(deposits.c.id)
    ).all():
        key = _key(reference)
        if key is None or key in seen:
            continue
        seen.add(key)
        bind.execute(deposits.update().where(deposits.c.id == deposit_id).values(reference_key=key))
    with op.batch_alter_table("trust_deposits", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_trust_deposits_reference_key", ["reference_key"])


def downgrade():
    with op.batch_alter_table("trust_deposits", schema=None) as batch_op:
        batch_op.drop_constraint("uq_trust_deposits_reference_key", type_="unique")
        batch_op.drop_column("reference_key")
