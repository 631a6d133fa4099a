"""USSD sessions, events and menus

Sessions live in Redis; the database keeps Africa's Talking's end-of-session notifications.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "ussd_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("service_code", sa.String(length=40), nullable=True),
        sa.Column("network_code", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("cost", sa.String(length=40), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("hops", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.String(length=255), nullable=True),
        sa.Column("reported_at", sa.String(length=40), nullable=True),
        sa.Column("received_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ussd_events")),
    )
    with op.batch_alter_table("ussd_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ussd_events_session_id"), ["session_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ussd_events_phone"), ["phone"], unique=False)


def downgrade():
    with op.batch_alter_table("ussd_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ussd_events_phone"))
        batch_op.drop_index(batch_op.f("ix_ussd_events_session_id"))
    op.drop_table("ussd_events")
