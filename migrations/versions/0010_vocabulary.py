"""One vocabulary: the ledger's words (pending, post, void) above it, and one name per "request"

Revision ID: 0010_vocabulary
Revises: 0009_ledger

Stored values renamed (old -> new):

- ``transfer_requests.kind``, and the ``code`` of the ledger transfers (and rejected transfers)
  of those requests, which is the request's kind: ``suspense_release`` -> ``suspense_post``,
  ``suspense_refund`` -> ``suspense_void``, ``protected_release`` -> ``protected_post``,
  ``protected_refund`` -> ``protected_void``. A transfer's code is renamed with its request's
  kind so that a request executed again still asks for exactly the transfers it wrote (the same
  fields answer ``exists``, never ``exists_with_different_fields``).
- ``transfer_requests.hold_state``: ``held`` -> ``pending``, ``released`` -> ``posted``,
  ``refunded`` -> ``voided``.
- ``transfer_requests.status``: ``posted`` -> ``accepted`` (the ledger accepted the request's
  transfers; for a hold, its money is pending, not posted).
- ``transfer_requests.result``: ``review_released`` -> ``review_cleared`` (an operator cleared a
  request held for review).
- ``uq_transfer_requests_open_reversal`` (one open reversal per send) is built again over
  ``hold_state = 'pending'``.

Columns renamed: ``outbox_messages.request_id``, ``inbound_messages.request_id`` and
``trust_deposits.request_id`` -> ``transfer_request_id`` (each holds a transfer request's id);
``audit_log.request_id`` -> ``trace_id`` (the web request's trace id). Their indexes and
constraints take the names the models give them.

Columns are renamed in place (``ALTER TABLE ... RENAME COLUMN``, on SQLite since 3.25): no table
is copied, so the outbox's partial indexes stay as they are.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_vocabulary"
down_revision = "0009_ledger"
branch_labels = None
depends_on = None

KINDS = {
    "suspense_release": "suspense_post",
    "suspense_refund": "suspense_void",
    "protected_release": "protected_post",
    "protected_refund": "protected_void",
}
HOLD_STATES = {"held": "pending", "released": "posted", "refunded": "voided"}
# At most one open reversal per send: its partial unique index names the open hold state, so it
# is dropped before the words change and built again after, over the same rows.
OPEN_REVERSAL = "uq_transfer_requests_open_reversal"
OPEN = {
    "new": "kind = 'reversal' AND hold_state = 'pending' AND status <> 'rejected'",
    "old": "kind = 'reversal' AND hold_state = 'held' AND status <> 'rejected'",
}
STATUSES = {"posted": "accepted"}
RESULTS = {"review_released": "review_cleared"}

# (table, old column, new column)
COLUMNS = [
    ("outbox_messages", "request_id", "transfer_request_id"),
    ("inbound_messages", "request_id", "transfer_request_id"),
    ("trust_deposits", "request_id", "transfer_request_id"),
    ("audit_log", "request_id", "trace_id"),
]
# (old name, new name) of the constraints PostgreSQL renames in place.
PG_CONSTRAINTS = [
    (
        "outbox_messages",
        "fk_outbox_messages_request_id_transfer_requests",
        "fk_outbox_messages_transfer_request_id_transfer_requests",
    ),
    (
        "trust_deposits",
        "fk_trust_deposits_request_id_transfer_requests",
        "fk_trust_deposits_transfer_request_id_transfer_requests",
    ),
    ("trust_deposits", "uq_trust_deposits_request_id", "uq_trust_deposits_transfer_request_id"),
]
OUTBOX_INDEX = ("ix_outbox_messages_request_id", "ix_outbox_messages_transfer_request_id")


def _rename_values(table: str, column: str, names: dict[str, str]) -> None:
    t = sa.table(table, sa.column(column, sa.String))
    for old, new in names.items():
        op.execute(t.update().where(t.c[column] == old).values({column: new}))


def _values(forward: bool) -> None:
    def way(names):
        return names if forward else {new: old for old, new in names.items()}

    op.drop_index(OPEN_REVERSAL, table_name="transfer_requests")

    _rename_values("transfer_requests", "kind", way(KINDS))
    _rename_values("transfers", "code", way(KINDS))
    _rename_values("rejected_transfers", "code", way(KINDS))
    _rename_values("transfer_requests", "hold_state", way(HOLD_STATES))
    _rename_values("transfer_requests", "status", way(STATUSES))
    _rename_values("transfer_requests", "result", way(RESULTS))
    where = sa.text(OPEN["new" if forward else "old"])
    op.create_index(
        OPEN_REVERSAL,
        "transfer_requests",
        ["reference"],
        unique=True,
        postgresql_where=where,
        sqlite_where=where,
    )


def _columns(forward: bool) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    old_index, new_index = OUTBOX_INDEX if forward else OUTBOX_INDEX[::-1]
    old_column, new_column = (
        ("request_id", "transfer_request_id") if forward else ("transfer_request_id", "request_id")
    )
    if postgres:
        op.execute(f"ALTER INDEX {old_index} RENAME TO {new_index}")
    else:  # SQLite cannot rename an index: the same index under its new name
        op.drop_index(old_index, table_name="outbox_messages")
    for table, old, new in COLUMNS:
        if not forward:
            old, new = new, old
        op.execute(f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}")
    if not postgres:
        op.create_index(new_index, "outbox_messages", [new_column], unique=False)
        # SQLite keeps a table's constraint names in its CREATE TABLE text; only a copy of the
        # table renames them. trust_deposits is small and has no partial index to lose.
        old_unique = f"uq_trust_deposits_{old_column}"
        with op.batch_alter_table("trust_deposits", recreate="always") as batch_op:
            batch_op.drop_constraint(old_unique, type_="unique")
            batch_op.create_unique_constraint(f"uq_trust_deposits_{new_column}", [new_column])
    else:
        for table, old, new in PG_CONSTRAINTS:
            if not forward:
                old, new = new, old
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def upgrade():
    _values(forward=True)
    _columns(forward=True)


def downgrade():
    _columns(forward=False)
    _values(forward=False)
