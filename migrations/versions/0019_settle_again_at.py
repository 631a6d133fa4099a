"""When a refused allowance settlement is tried again, stored and indexed

Revision ID: 0019_settle_again_at
Revises: 0018_sender_outbox_unfinished

The maintenance run read the first 500 refused allowances by id and only then skipped those
whose wait (``settlement.retry_wait``, doubling to a day) was not over: with more than 500
waiting (a merchant locked, thousands of readers) one due beyond them was never tried again,
its customer's money held after its own merchant's lock was lifted. ``allowances.
settle_again_at`` is set with each refusal (the refusal's time plus its wait) and cleared when a
retry claims the hold (or an operator voids it); ``_settle_again`` takes the rows due, the
longest due first, from ``ix_allowances_settle_again_at``, which holds only the rows that have
one.

The upgrade fills it for the settlements waiting now, as the old code would have timed them:
the last refused attempt's ``told_at`` plus ``retry_wait`` of its attempt number (``.r`` 1,
``.r2`` 2, ...), from the running app's settings. The downgrade drops the index and the column
(the old code computes the wait again from the settlements).
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0019_settle_again_at"
down_revision = "0018_sender_outbox_unfinished"
branch_labels = None
depends_on = None

WHERE = "settle_again_at IS NOT NULL"

# The refused settlements waiting (settlement._REFUSED_WAITING) and each one's last settlement.
WAITING = sa.text(
    "SELECT a.id, a.hold_request_id, s.id, s.told_at FROM allowances a"
    " JOIN transfer_requests t ON t.id = a.hold_request_id"
    " JOIN allowance_settlements s ON s.allowance_id = a.id"
    " WHERE t.kind = 'allowance' AND t.hold_state = 'pending' AND t.status = 'accepted'"
    " AND a.state IN ('settling', 'cancelled', 'expired')"
    " AND (a.tab_amount > 0 OR a.state = 'settling')"
    " AND s.told_at IS NOT NULL"
    " ORDER BY a.id, s.created_at DESC, s.id DESC"
).columns(told_at=sa.DateTime())


def _wait(attempts: int) -> timedelta:
    """``settlement.retry_wait`` as of this migration (the app's code may change later)."""
    first = int(current_app.config.get("ALLOWANCE_SETTLE_RETRY_SECONDS", 3600))
    most = max(first, int(current_app.config.get("ALLOWANCE_SETTLE_RETRY_MAX_SECONDS", 24 * 3600)))
    return timedelta(seconds=min(most, first * 2 ** min(max(attempts, 1) - 1, 32)))


def upgrade():
    op.add_column("allowances", sa.Column("settle_again_at", sa.DateTime(), nullable=True))
    connection = op.get_bind()
    due, seen = [], set()
    for allowance_id, hold_id, last_id, told_at in connection.execute(WAITING):
        if allowance_id in seen:
            continue  # its last settlement came first
        seen.add(allowance_id)
        if not last_id.startswith(f"{hold_id}.r"):
            continue  # not a refused settlement's tab
        tail = last_id[len(hold_id) + 2 :]
        attempts = int(tail) if tail.isdigit() else 1
        due.append({"id": allowance_id, "at": told_at + _wait(attempts)})
    if due:
        fill = sa.text("UPDATE allowances SET settle_again_at = :at WHERE id = :id")
        connection.execute(fill.bindparams(sa.bindparam("at", type_=sa.DateTime())), due)
    op.create_index(
        "ix_allowances_settle_again_at",
        "allowances",
        ["settle_again_at"],
        unique=False,
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade():
    op.drop_index("ix_allowances_settle_again_at", table_name="allowances")
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too, the index gone): a batch copy would
    # drop the table other tables' foreign keys name.
    op.drop_column("allowances", "settle_again_at")
