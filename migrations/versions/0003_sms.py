"""SMS sending, delivery reports and inbound SMS

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OUTBOX_COLUMNS = [
    sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
    sa.Column("claimed_at", sa.DateTime(), nullable=True),
    sa.Column("claim_token", sa.String(length=32), nullable=True),
    sa.Column("sent_at", sa.DateTime(), nullable=True),
    sa.Column("gateway_status_code", sa.Integer(), nullable=True),
    sa.Column("gateway_status", sa.String(length=40), nullable=True),
    sa.Column("cost", sa.String(length=24), nullable=True),
    sa.Column("delivery_status", sa.String(length=20), nullable=True),
    sa.Column("network_code", sa.String(length=10), nullable=True),
    sa.Column("delivery_retry_count", sa.Integer(), nullable=True),
    sa.Column("delivery_reported_at", sa.DateTime(), nullable=True),
]


def upgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        for column in OUTBOX_COLUMNS:
            batch_op.add_column(column)
        batch_op.create_index(
            "ix_outbox_messages_sending",
            ["claimed_at"],
            unique=False,
            postgresql_where=sa.text("status = 'sending'"),
            sqlite_where=sa.text("status = 'sending'"),
        )

    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at_id", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("text", sa.String(length=480), nullable=False),
        sa.Column("link_id", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.String(length=40), nullable=True),
        sa.Column("intent", sa.String(length=12), nullable=False),
        sa.Column("code", sa.String(length=10), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("at_id", name=op.f("uq_inbound_messages_at_id")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inbound_messages_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbound_messages_code"), ["code"], unique=False)


def downgrade():
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_code"))
        batch_op.drop_index(batch_op.f("ix_inbound_messages_phone"))
    op.drop_table("inbound_messages")

    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_sending")
        for column in reversed(OUTBOX_COLUMNS):
            batch_op.drop_column(column.name)
