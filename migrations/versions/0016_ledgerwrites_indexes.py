"""Two indexes of rows written with every transfer hold only the rows their queries can want

Revision ID: 0016_ledgerwrites_indexes
Revises: 0015_standing_orders

Every index of ``transfers`` and ``outbox_messages`` takes an entry for each row a transfer
batch writes, NULL keys included (a B-tree indexes NULLs): 5,500 transfers write 16,500 entries
into the two below that no query can ever read. Each is now partial, ``WHERE <column> IS NOT
NULL``: the same name, the same column, only the rows that have a value.

- ``ix_transfers_expires_at``: only a pending transfer with a timeout has ``expires_at`` (a
  hold), every other transfer has NULL. Queries checked (every use of ``Transfer.expires_at``
  in ussd_app, worker and devtools): ``ledger/expiry.py`` ``expired_holds`` (``expires_at IS NOT
  NULL AND expires_at <= :now ... ORDER BY expires_at``), the only one that filters or sorts
  on it; EXPLAIN on PostgreSQL with 1,000,000 transfers, 2,000 of them holds: an index scan of
  the partial index, as of the full one before.
- ``ix_outbox_messages_gateway_message_id``: NULL until the gateway accepts the message.
  Queries checked (every use of ``OutboxMessage.gateway_message_id``): ``sms/webhooks.py``'s
  delivery report (``gateway_message_id = :id``; an equality implies NOT NULL, so PostgreSQL
  and SQLite both use the partial index); EXPLAIN with 1,000,000 outbox rows: an index scan
  of the partial index.

Left as they were, each needed by a query (checked the same way): ``transfers``' primary key;
``uq_transfers_pending_id`` (a hold resolves at most once; the engine's, the check's, the
expiry's and the figures' lookups of a hold's resolution); ``ix_transfers_debit_account_created``
and ``ix_transfers_credit_account_created`` (the mini statement's ``debit_account_id = :a OR
credit_account_id = :a ORDER BY created_at DESC``: a BitmapOr of the two); ``ix_transfers_user_data``
(the back office's transfers of a request); ``outbox_messages``' primary key; ``ix_outbox_messages_pending``
and ``ix_outbox_messages_sending`` (the sender's claim: due numbers, stale claims);
``ix_outbox_messages_phone`` (the claim's lanes, a number's unfinished rows in id order, and
the back office's SMS of a number); ``ix_outbox_messages_transfer_request_id`` (the back
office's SMS of a request).

The downgrade puts the full indexes back.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_ledgerwrites_indexes"
down_revision = "0015_standing_orders"
branch_labels = None
depends_on = None

# (index, table, column)
PARTIAL = [
    ("ix_transfers_expires_at", "transfers", "expires_at"),
    ("ix_outbox_messages_gateway_message_id", "outbox_messages", "gateway_message_id"),
]


def upgrade():
    for index, table, column in PARTIAL:
        op.drop_index(index, table_name=table)
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(index, table, [column], unique=False, postgresql_where=where, sqlite_where=where)


def downgrade():
    for index, table, column in PARTIAL:
        op.drop_index(index, table_name=table)
        op.create_index(index, table, [column], unique=False)
