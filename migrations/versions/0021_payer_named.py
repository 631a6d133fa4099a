"""Whether a payment request's requester may be told its payer's registered name

Revision ID: 0021_payer_named
Revises: 0020_payee_named

A merchant's key asked KES 0.01 of any customer's number through the API (no look-up counted)
and read the payer's registered name in its USSD My requests ("Juma Otieno: not paid") and in
the "declined your request" SMS: a name for every number on Tuma, where the menus count each
number of a request as a look-up when it is recorded. A request made through the API is now a
look-up of its owner, decided once when the API accepts it (``api/payment_requests.py``);
``payment_requests.payer_named`` records the answer, so My requests and the declined SMS name the
payer only when it was granted (or once the payer paid). Every request recorded before (and every
one made in the menus) keeps its name: the server default true, a metadata-only change on
PostgreSQL 11+ (no table rewrite). The downgrade drops the column (the old code names every
payer).
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_payer_named"
down_revision = "0020_payee_named"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        "payment_requests",
        sa.Column("payer_named", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade():
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too), as 0020's.
    op.drop_column("payment_requests", "payer_named")
