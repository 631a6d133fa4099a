"""Reversals, agent-started withdrawals and airtime

Revision ID: 0007
Revises: 0006

- ``withdrawal_approvals``: a withdrawal an agent started, waiting for the customer's PIN in
  My approvals; ``state`` leaves ``pending`` by compare-and-set only (approved: the withdrawal
  request is recorded under the same id; declined; expired).
- ``uq_transfer_requests_open_reversal``: at most one open reversal (a REVERSAL hold still
  held, not refused by the ledger) per send; ``reference`` is the send's code.
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OPEN = "kind = 'reversal' AND hold_state = 'held' AND status <> 'rejected'"


def upgrade():
    op.create_table(
        "withdrawal_approvals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent_account_id", sa.Integer(), nullable=False),
        sa.Column("customer_account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("commission", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_account_id"], ["accounts.id"], name="fk_withdrawal_approvals_agent_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["customer_account_id"],
            ["accounts.id"],
            name="fk_withdrawal_approvals_customer_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_withdrawal_approvals"),
    )
    with op.batch_alter_table("withdrawal_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_withdrawal_approvals_state", ["state", "expires_at"], unique=False)
        batch_op.create_index(
            "ix_withdrawal_approvals_customer_account_id", ["customer_account_id"], unique=False
        )
    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.create_index(
            "uq_transfer_requests_open_reversal",
            ["reference"],
            unique=True,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )


def downgrade():
    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_transfer_requests_open_reversal")
    with op.batch_alter_table("withdrawal_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_withdrawal_approvals_customer_account_id")
        batch_op.drop_index("ix_withdrawal_approvals_state")
    op.drop_table("withdrawal_approvals")
