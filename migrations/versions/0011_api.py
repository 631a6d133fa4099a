"""The merchant API: keys and idempotency keys

Revision ID: 0011_api
Revises: 0010_vocabulary

- ``api_keys``: one row per key, the SHA-256 of the key (never the key), its owner and scopes.
- ``api_idempotency_keys``: (key, Idempotency-Key) -> the request's fingerprint and its stored
  answer, kept at least 24 hours.
- ``payment_requests.reference``: the merchant's own reference on a request made by the API.
- ``transfer_requests``: indexes for a wallet's statement (credits side) and a payment's refunds.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_api"
down_revision = "0010_vocabulary"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=12), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"], unique=False)
    op.create_table(
        "api_idempotency_keys",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_api_idempotency_keys_api_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("api_key_id", "key", name=op.f("pk_api_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_api_idempotency_keys_created_at"), "api_idempotency_keys", ["created_at"], unique=False
    )


    op.add_column("payment_requests", sa.Column("reference", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_transfer_requests_payee_executed", "transfer_requests", ["credit_account_id", "executed_at"]
    )
    op.create_index("ix_transfer_requests_reference", "transfer_requests", ["reference"])


def downgrade():
    op.drop_index("ix_transfer_requests_reference", table_name="transfer_requests")
    op.drop_index("ix_transfer_requests_payee_executed", table_name="transfer_requests")
    with op.batch_alter_table("payment_requests") as batch:
        batch.drop_column("reference")
    op.drop_index(op.f("ix_api_idempotency_keys_created_at"), table_name="api_idempotency_keys")
    op.drop_table("api_idempotency_keys")
    op.drop_index(op.f("ix_api_keys_user_id"), table_name="api_keys")
    op.drop_table("api_keys")
