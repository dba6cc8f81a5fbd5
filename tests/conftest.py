"""Shared fixtures.

Databases: ``db_url`` runs a test on SQLite *and* on the real MariaDB at
127.0.0.1:3306 (a throwaway database per test session, dropped at the end).
If MariaDB is down the MySQL tests fail loudly; they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import Engine, make_url

from labelkit.db.engine import dispose_engines, make_engine
from labelkit.db.migrate import upgrade
from labelkit.settings import Settings, get_settings

MYSQL_HOST = os.environ.get("LABELKIT_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("LABELKIT_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("LABELKIT_TEST_MYSQL_USER", "root")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's LABELKIT_* or AWS settings, or a .env file."""
    for name in list(os.environ):
        if name.startswith("LABELKIT_") or name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    dispose_engines()


def _mysql_admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", charset="utf8mb4")


def _kill_other_connections(cur: pymysql.cursors.Cursor, database: str) -> None:
    """End connections that earlier tests left open on ``database``.

    A connection still inside a transaction (a server thread the test could not
    stop, a cached engine) holds metadata locks, and DROP would wait for it forever.
    """
    cur.execute(
        "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()", (database,)
    )
    for (conn_id,) in cur.fetchall():
        try:
            cur.execute(f"KILL {int(conn_id)}")
        except pymysql.err.OperationalError:
            pass  # it ended by itself meanwhile


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """A throwaway database on the real MariaDB for this test session."""
    name = f"labelkit_test_{uuid.uuid4().hex[:10]}"
    conn = _mysql_admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    yield f"mysql+pymysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    conn = _mysql_admin()
    with conn.cursor() as cur:
        _kill_other_connections(cur, name)
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def _reset_mysql(url: str) -> None:
    """Empty the schema between tests (cheaper than a new database each time)."""
    conn = _mysql_admin()
    with conn.cursor() as cur:
        _kill_other_connections(cur, make_url(url).database or "")
    conn.close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        tables = [r[0] for r in conn.exec_driver_sql("SHOW TABLES")]
        for t in tables:
            conn.exec_driver_sql(f"DROP TABLE `{t}`")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labelkit.db'}"
    url: str = request.getfixturevalue("mysql_server_url")
    _reset_mysql(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database (through Alembic, as in production)."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        labeler="fake",
        queue_visibility_timeout=30,
        queue_max_receives=3,
    )
