"""Payment requests (merchants) and request money / split bill (customers)

Revision ID: 0008
Revises: 0007

- ``payment_requests``: one row per payer asked (a split bill is a group of rows sharing
  ``group_id``); ``state`` moves only by compare-and-set (ussd_app/payments/payment_requests.py).
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "payment_requests",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("requester_account_id", sa.Integer(), nullable=False),
        sa.Column("payer_phone", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("transfer_request_id", sa.String(length=64), nullable=True),
        sa.Column("pay_attempts", sa.Integer(), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["requester_account_id"],
            ["accounts.id"],
            name="fk_payment_requests_requester_account_id_accounts",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_payment_requests"),
    )
    with op.batch_alter_table("payment_requests", schema=None) as batch_op:
        batch_op.create_index("ix_payment_requests_group_id", ["group_id"], unique=False)
        batch_op.create_index("ix_payment_requests_payer_state", ["payer_phone", "state"], unique=False)
        batch_op.create_index(
            "ix_payment_requests_requester_created", ["requester_account_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_payment_requests_state_expires", ["state", "expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("payment_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_requests_state_expires")
        batch_op.drop_index("ix_payment_requests_requester_created")
        batch_op.drop_index("ix_payment_requests_payer_state")
        batch_op.drop_index("ix_payment_requests_group_id")
    op.drop_table("payment_requests")
