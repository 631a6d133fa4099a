"""Tariffs, limits and fraud controls

Revision ID: 0005
Revises: 0004

- ``tariff_versions``: every tariff the operator has set, each in force from its
  ``effective_from`` (UTC) until a later one starts; the bands are a JSON document.
- ``transfer_requests.tariff_version_id``: the tariff the fee was quoted from when the person
  confirmed (the worker charges the recorded fee, never a re-quote).
- ``transfer_requests.payee_fee``: what the payee (a merchant) pays on a payment, quoted with
  the payer's fee when the payer confirmed.
- ``users.tier``: the KYC tier whose limits apply (``basic`` until an agent checks an ID).
- an index on (payer, executed_at) for the daily-limit and velocity sums.
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tariff_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        sa.Column("bands", sa.Text(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tariff_versions", schema=None) as batch_op:
        batch_op.create_index("ix_tariff_versions_effective_from", ["effective_from"], unique=False)

    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tariff_version_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("payee_fee", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_foreign_key(
            "fk_transfer_requests_tariff_version", "tariff_versions", ["tariff_version_id"], ["id"]
        )
        batch_op.create_index(
            "ix_transfer_requests_payer_executed", ["debit_account_id", "executed_at"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(length=12), server_default="basic", nullable=False))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("tier")
    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_transfer_requests_payer_executed")
        batch_op.drop_constraint("fk_transfer_requests_tariff_version", type_="foreignkey")
        batch_op.drop_column("payee_fee")
        batch_op.drop_column("tariff_version_id")
    with op.batch_alter_table("tariff_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_tariff_versions_effective_from")
    op.drop_table("tariff_versions")
