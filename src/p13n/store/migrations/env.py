"""Alembic environment: p13n always passes an open connection (see ``p13n.store.migrate``)."""

from alembic import context

from p13n.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="p13n_schema_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
