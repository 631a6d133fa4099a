"""Tips and donations to creators and causes (issue 18 item 2)

Revision ID: 0014_tips
Revises: 0013_allowances

- ``tip_digests``: one row per cause and local day whose digest SMS was written; its primary
  key (cause account, day) makes the digest once however often the maintenance job runs.
- ``ix_transfer_requests_tips_executed``: the day's tips, for the digests (tips' rows only).

A cause is a role (``users.role = 'cause'``) with a wallet of kind ``cause`` and its code in
``users.till``: both columns take the new values as they are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_tips"
down_revision = "0013_allowances"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tip_digests",
        sa.Column("cause_account_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("tips", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["cause_account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("cause_account_id", "day"),
    )
    op.create_index(
        "ix_transfer_requests_tips_executed",
        "transfer_requests",
        ["executed_at"],
        unique=False,
        postgresql_where=sa.text("kind = 'tip'"),
        sqlite_where=sa.text("kind = 'tip'"),
    )


def downgrade():
    op.drop_index(
        "ix_transfer_requests_tips_executed",
        table_name="transfer_requests",
        postgresql_where=sa.text("kind = 'tip'"),
        sqlite_where=sa.text("kind = 'tip'"),
    )
    op.drop_table("tip_digests")
