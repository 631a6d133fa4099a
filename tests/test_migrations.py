"""The migrations build exactly the schema the models describe, on this run's database.

A column added to a model without its migration (or the other way round) would work in the
tests' ORM and fail on a real upgrade: Alembic's own comparison catches it here."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ussd_app.extensions import db


def test_the_migrated_schema_matches_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, db.metadata)
    assert differences == []
