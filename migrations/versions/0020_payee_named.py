"""Whether a transfer request's payer may be told its payee's registered name

Revision ID: 0020_payee_named
Revises: 0019_settle_again_at

A merchant's key paid KES 0.01 (free: the first send band) to any number and read the
recipient's registered name in ``payout.posted`` and ``GET /transactions``: a name for every
number on Tuma, counted nowhere, where the menus count each name shown against the caller's
look-ups. A payout is now a look-up of its merchant, decided once when the API accepts it
(``api/payouts.py``); ``transfer_requests.payee_named`` records the answer with the request, so
the worker's event, the API's transactions and the mini statement name the recipient only when
it was granted. Every request recorded before (and every other kind) keeps its name: the server
default true, a metadata-only change on PostgreSQL 11+ (no table rewrite). The downgrade drops
the column (the old code names every posted payout).
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_payee_named"
down_revision = "0019_settle_again_at"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "transfer_requests",
        sa.Column("payee_named", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade():
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too): a batch copy would drop the table
    # other tables' foreign keys name.
    op.drop_column("transfer_requests", "payee_named")
