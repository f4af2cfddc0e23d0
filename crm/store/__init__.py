"""The service's store: API keys, events accepted over HTTP, quarantined records, the hand-off.

SQLAlchemy Core on ``$CRM_DATABASE_URL`` (default: SQLite at ``$CRM_HOME/service/service.db``,
WAL mode); the schema is kept by Alembic migrations in ``crm/store/migrations``, applied by
:func:`crm.store.db.upgrade_to_head` when the service starts and by the CLI.
"""
