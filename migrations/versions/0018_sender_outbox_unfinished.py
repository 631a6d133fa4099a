"""Outbox: each number's unfinished rows in id order, from an index of their own

Revision ID: 0018_sender_outbox_unfinished
Revises: 0017_review_held_index

The sender's claim reads, for each number it gives a lane, that number's first unfinished
(``pending`` or ``sending``) rows in id order, at most ``SMS_LANE_DEPTH`` of them. Through
``ix_outbox_messages_phone`` that read visited every row the number ever had, sent ones
included: a busy till's whole history, on every claim (7,700 buffers a claim at 100,000 sent
rows of one number, 1,000 at 1,000). ``ix_outbox_messages_unfinished`` on ``(phone, id)`` holds
only the unfinished rows, and the claim reads it per number with ``ORDER BY id LIMIT depth``
(``sender._unfinished_rows``), writing the condition out as the index does so that every plan
can use it (PostgreSQL's generic plans and SQLite included). A row gets an entry when written
and another when claimed (an update that changes ``status`` is never HOT: the partial indexes
on ``status`` already made it so); none once sent or failed.

Its price: dead entries. A claimed or finished row leaves its old entry behind until a scan
finds its row dead to every snapshot and marks it (then it is skipped) or a page split or VACUUM
removes it; while a transaction stays open anywhere in the cluster with an xid (its snapshot's
xmin holds every database back), each claim's scan fetches the row of every such entry of its
numbers: cost grows with the rows finished during that transaction, never with the history
(2,084 buffers a claim after 20 claims of 128 rows, at 1,000 and at 100,000 sent rows alike;
~300 once the horizon moves). That is why an earlier try of this index (a ``row_number()`` over
all of a number's unfinished rows, measured while other sessions held transactions open on a
shared machine) cost more than the read it replaced: the old read, a bitmap scan, visits each
heap page once, dead or alive. ``bench/sms_claim_reads.py`` measures it.

``ix_outbox_messages_phone`` stays: the back office lists a number's messages, sent ones too.
The downgrade drops the index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_sender_outbox_unfinished"
down_revision = "0017_review_held_index"
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('pending', 'sending')"


def upgrade():
    where = sa.text(UNFINISHED)
    op.create_index(
        "ix_outbox_messages_unfinished",
        "outbox_messages",
        ["phone", "id"],
        unique=False,
        postgresql_where=where,
        sqlite_where=where,
    )


def downgrade():
    op.drop_index("ix_outbox_messages_unfinished", table_name="outbox_messages")
