"""Alembic environment: always run on the connection :func:`crm.store.db.upgrade_to_head` passes."""

from alembic import context

from crm.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
