"""Run Alembic migrations programmatically (the only way the schema is created)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from labelkit.db.engine import no_read_timeout

_MIGRATIONS = Path(__file__).with_name("migrations")
_lock = threading.Lock()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision`` (idempotent)."""
    cfg = alembic_config()
    # A migration may rewrite a big table: no client read timeout on its connection.
    with _lock, engine.begin() as conn, no_read_timeout(conn):
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    cfg = alembic_config()
    with _lock, engine.begin() as conn, no_read_timeout(conn):
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
