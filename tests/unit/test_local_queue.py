"""``LocalQueue`` on a SQLite file (WAL), the laptop default.

The behaviour tests are shared with MariaDB (``tests/integration/test_local_queue_mysql.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labelkit.db.engine import make_engine
from labelkit.db.models import Base
from labelkit.queue.local import LocalQueue
from tests.integration.queue_contract import LocalQueueContract


@pytest.fixture
def queue_db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return url


class TestLocalQueueOnSqlite(LocalQueueContract):
    def test_uses_wal(self, make_queue: object, engine: object) -> None:
        from sqlalchemy.engine import Engine

        assert isinstance(engine, Engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_rejects_bad_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    with pytest.raises(ValueError):
        LocalQueue(engine, max_receives=0)
    with pytest.raises(ValueError):
        LocalQueue(engine, visibility_timeout=-1)
    engine.dispose()


def test_database_errors_become_queue_errors(tmp_path: Path) -> None:
    from labelkit.errors import QueueError

    # No tables were created: every operation fails inside SQLAlchemy.
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    q = LocalQueue(engine)
    with pytest.raises(QueueError) as info:
        q.send("x")
    assert info.value.__cause__ is not None
    with pytest.raises(QueueError):
        q.receive()
    engine.dispose()
