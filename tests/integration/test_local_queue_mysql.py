"""``LocalQueue`` on the real MariaDB at 127.0.0.1:3306 (SELECT ... FOR UPDATE SKIP LOCKED).

Same behaviour tests as on SQLite. A throwaway database ``labelkit_test_<random>``
is created for the module and dropped afterwards; if MariaDB is down these tests
fail (they are never skipped).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymysql
import pytest

from labelkit.db.engine import make_engine
from labelkit.db.models import Base
from tests.integration.queue_contract import LocalQueueContract

pytestmark = pytest.mark.mysql

HOST = os.environ.get("LABELKIT_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("LABELKIT_TEST_MYSQL_PORT", "3306"))
USER = os.environ.get("LABELKIT_TEST_MYSQL_USER", "root")


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=HOST, port=PORT, user=USER, password="", charset="utf8mb4", connect_timeout=5)


@pytest.fixture(scope="module")
def queue_db_url() -> Iterator[str]:
    name = f"labelkit_test_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    url = f"mysql+pymysql://{USER}@{HOST}:{PORT}/{name}"
    try:
        engine = make_engine(url)
        Base.metadata.create_all(engine, tables=[Base.metadata.tables["queue_messages"]])
        engine.dispose()
        yield url
    finally:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


class TestLocalQueueOnMariaDB(LocalQueueContract):
    def test_runs_on_mysql(self, engine: object) -> None:
        from sqlalchemy.engine import Engine

        assert isinstance(engine, Engine)
        assert engine.dialect.name in ("mysql", "mariadb")
