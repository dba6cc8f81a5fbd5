"""Alembic environment: URL from Labelkit's settings, metadata from the models.

``labelkit.db.migrate.upgrade(engine)`` passes a live connection in
``config.attributes["connection"]``; the ``alembic`` CLI builds one from settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from labelkit.db.engine import get_engine
from labelkit.db.models import Base
from labelkit.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=get_settings().resolved_database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with get_engine(get_settings()).connect() as conn:
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
