"""Agents, merchants and escrow-held payments

Revision ID: 0004
Revises: 0003

- transfer_requests.commission: the agent's commission on a withdrawal (minor units), quoted
  when the customer confirmed, posted as a linked leg (fees -> commissions).
- users.id_number: the national ID an agent records when registering a customer, checked
  before an agent unlocks that customer's PIN.
- transfer_requests.pending_request_id, hold_state, hold_seconds: a hold request (a PENDING
  transfer whose id is the request's) is "held" until a resolution request (its
  pending_request_id names the hold) posts or voids it; hold_state moves by compare-and-set,
  so one resolution is ever recorded per hold; hold_seconds is when it falls due after the
  hold was posted (ledger clock).
- users.business_kind: how a merchant's number is paid: "till" (buy goods) or "paybill"
  (pay bill, with an account reference). NULL for people without a number.
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("commission", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("pending_request_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hold_state", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("hold_seconds", sa.Integer(), nullable=True))
        batch_op.create_index("ix_transfer_requests_pending_request_id", ["pending_request_id"], unique=False)
        batch_op.create_index("ix_transfer_requests_hold", ["hold_state", "kind"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_number", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("business_kind", sa.String(length=8), nullable=True))
    op.execute("UPDATE users SET business_kind = 'till' WHERE till IS NOT NULL")


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("business_kind")
        batch_op.drop_column("id_number")
    with op.batch_alter_table("transfer_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_transfer_requests_hold")
        batch_op.drop_index("ix_transfer_requests_pending_request_id")
        batch_op.drop_column("hold_seconds")
        batch_op.drop_column("hold_state")
        batch_op.drop_column("pending_request_id")
        batch_op.drop_column("commission")
