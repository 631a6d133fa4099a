"""A partial index of the transfers held for review

Revision ID: 0017_review_held_index
Revises: 0016_ledgerwrites_indexes

The back office's review page lists the transfers a velocity rule holds (``status = 'review'``,
oldest first: ``payments/review.py`` ``held``, ``flask review list``) and its dashboard counts
them (``reports.held_for_review``) on every load. ``transfer_requests`` has no index on
``status``: both read the whole table. ``ix_transfer_requests_review`` holds only the rows in
review (a handful, however large the table), on ``created_at`` as the list is ordered, like
``ix_transfer_requests_queued`` for the worker's queue.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_review_held_index"
down_revision = "0016_ledgerwrites_indexes"
branch_labels = None
depends_on = None


def upgrade():
    where = sa.text("status = 'review'")
    op.create_index(
        "ix_transfer_requests_review",
        "transfer_requests",
        ["created_at"],
        unique=False,
        postgresql_where=where,
        sqlite_where=where,
    )


def downgrade():
    op.drop_index("ix_transfer_requests_review", table_name="transfer_requests")
