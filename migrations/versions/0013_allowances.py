"""Allowances: a merchant charges small sums against a period's limit held in escrow (issue 18)

Revision ID: 0013_allowances
Revises: 0012_events

- ``allowances``: the terms (limit a period, most a charge, period), the state, this period's
  charges and the tab not settled yet, the current hold.
- ``allowance_charges``: the tab lines, one per charge (its id from the merchant's key).
- ``allowance_settlements``: one per settlement, keyed by the request that posts (or voids)
  the hold; ``told_at`` once the customer's one SMS is written.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_allowances"
down_revision = "0012_events"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "allowances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("merchant_account_id", sa.Integer(), nullable=False),
        sa.Column("customer_phone", sa.String(length=20), nullable=False),
        sa.Column("customer_account_id", sa.Integer(), nullable=True),
        sa.Column("limit_amount", sa.BigInteger(), nullable=False),
        sa.Column("max_charge", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("description", sa.String(length=60), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("period_no", sa.Integer(), nullable=False),
        sa.Column("period_starts_at", sa.DateTime(), nullable=True),
        sa.Column("period_ends_at", sa.DateTime(), nullable=True),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("charge_count", sa.Integer(), nullable=False),
        sa.Column("tab_amount", sa.BigInteger(), nullable=False),
        sa.Column("tab_count", sa.Integer(), nullable=False),
        sa.Column("hold_no", sa.Integer(), nullable=False),
        sa.Column("hold_request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["customer_account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["merchant_account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_allowances_customer_state", "allowances", ["customer_phone", "state"], unique=False)
    op.create_index(
        "ix_allowances_merchant_created", "allowances", ["merchant_account_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_allowances_state_period_ends", "allowances", ["state", "period_ends_at"], unique=False
    )
    op.create_index(op.f("ix_allowances_hold_request_id"), "allowances", ["hold_request_id"], unique=False)
    op.create_table(
        "allowance_charges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("allowance_id", sa.String(length=32), nullable=False),
        sa.Column("period_no", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["allowance_id"], ["allowances.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_allowance_charges_allowance_created",
        "allowance_charges",
        ["allowance_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "allowance_settlements",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("allowance_id", sa.String(length=32), nullable=False),
        sa.Column("period_no", sa.Integer(), nullable=False),
        sa.Column("charges", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("why", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("told_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["allowance_id"], ["allowances.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_allowance_settlements_allowance_id"), "allowance_settlements", ["allowance_id"], unique=False
    )
    op.create_index("ix_allowance_settlements_told", "allowance_settlements", ["told_at"], unique=False)


def downgrade():
    op.drop_index("ix_allowance_settlements_told", table_name="allowance_settlements")
    op.drop_index(op.f("ix_allowance_settlements_allowance_id"), table_name="allowance_settlements")
    op.drop_table("allowance_settlements")
    op.drop_index("ix_allowance_charges_allowance_created", table_name="allowance_charges")
    op.drop_table("allowance_charges")
    op.drop_index(op.f("ix_allowances_hold_request_id"), table_name="allowances")
    op.drop_index("ix_allowances_state_period_ends", table_name="allowances")
    op.drop_index("ix_allowances_merchant_created", table_name="allowances")
    op.drop_index("ix_allowances_customer_state", table_name="allowances")
    op.drop_table("allowances")
