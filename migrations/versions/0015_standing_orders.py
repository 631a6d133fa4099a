"""Standing orders and their runs (issue 18 item 3)

Revision ID: 0015_standing_orders
Revises: 0014_tips

- ``standing_orders``: who pays whom (send, buy goods, pay bill), how much, how often, from
  which first date, until an end date or for a number of runs; its state and next date.
- ``standing_order_runs``: one row per order and date; the current attempt's transfer request
  (``<order id>.<YYYYMMDD>.a<attempt>``), its state, when it is tried again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_standing_orders"
down_revision = "0014_tips"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "standing_orders",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("payer_account_id", sa.Integer(), nullable=False),
        sa.Column("payee_account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=False),
        sa.Column("next_date", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("runs_limit", sa.Integer(), nullable=True),
        sa.Column("runs_made", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["payee_account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["payer_account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_standing_orders_due", "standing_orders", ["state", "next_date"], unique=False)
    op.create_index(
        "ix_standing_orders_payer", "standing_orders", ["payer_account_id", "state"], unique=False
    )
    op.create_index(
        "ix_standing_orders_payee_account_id", "standing_orders", ["payee_account_id"], unique=False
    )
    op.create_table(
        "standing_order_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=24), nullable=False),
        sa.Column("run_date", sa.Date(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("transfer_request_id", sa.String(length=64), nullable=True),
        sa.Column("tried_at", sa.DateTime(), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(length=40), nullable=True),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["standing_orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transfer_request_id"),
    )
    op.create_index("ix_standing_order_runs_order_id", "standing_order_runs", ["order_id"], unique=False)
    op.create_index(
        "ix_standing_order_runs_state", "standing_order_runs", ["state", "retry_at"], unique=False
    )


def downgrade():
    op.drop_index("ix_standing_order_runs_state", table_name="standing_order_runs")
    op.drop_index("ix_standing_order_runs_order_id", table_name="standing_order_runs")
    op.drop_table("standing_order_runs")
    op.drop_index("ix_standing_orders_payee_account_id", table_name="standing_orders")
    op.drop_index("ix_standing_orders_payer", table_name="standing_orders")
    op.drop_index("ix_standing_orders_due", table_name="standing_orders")
    op.drop_table("standing_orders")
