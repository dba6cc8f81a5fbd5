"""Shared fixtures.

Databases: ``db_url`` runs a test on SQLite *and* on the real MariaDB at
127.0.0.1:3306 (a throwaway database per test session, dropped at the end).
If MariaDB is down the MySQL tests fail loudly; they are never skipped.

Alembic runs once per test session and database kind, not per test (a fresh
migration costs ~2 s on MariaDB): each SQLite test gets a copy of a database
migrated once, and the MariaDB database is emptied between tests (rows deleted,
schema kept) as long as it is still at the head revision; a test that dropped or
downgraded the schema gets it rebuilt for the next one. The migrations themselves
are tested from an empty database in their own tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy.engine import Engine, make_url

from labelkit.db.engine import dispose_engines, make_engine
from labelkit.db.migrate import alembic_config, upgrade
from labelkit.settings import Settings, get_settings

MYSQL_HOST = os.environ.get("LABELKIT_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("LABELKIT_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("LABELKIT_TEST_MYSQL_USER", "root")


@pytest.fixture(autouse=True, scope="session")
def _patient_browser_waits() -> None:
    """Every Playwright ``expect`` in the suite waits as long as a busy machine needs (its own
    default is 5 s, whatever the page's timeout), whichever browser test runs first."""
    from playwright.sync_api import expect

    from tests.helpers import BROWSER_TIMEOUT_MS

    expect.set_options(timeout=BROWSER_TIMEOUT_MS)


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


@functools.cache
def _head_revision() -> str:
    """The migrations' head, read from the scripts once per session (not per test)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _empty_mysql(url: str, head: str) -> None:
    """Delete every row but keep the schema if it is at ``head``; else rebuild it."""
    conn = _mysql_admin()
    database = make_url(url).database or ""
    try:
        with conn.cursor() as cur:
            _kill_other_connections(cur, database)
            cur.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,)
            )
            tables = [str(r[0]) for r in cur.fetchall()]
            at_head = False
            if "alembic_version" in tables:
                cur.execute(f"SELECT version_num FROM `{database}`.alembic_version")
                at_head = [r[0] for r in cur.fetchall()] == [head]
            if at_head:
                cur.execute(f"USE `{database}`")
                cur.execute("SET FOREIGN_KEY_CHECKS=0")
                for table in tables:
                    if table != "alembic_version":
                        cur.execute(f"DELETE FROM `{table}`")
                cur.execute("SET FOREIGN_KEY_CHECKS=1")
                conn.commit()
                return
    finally:
        conn.close()
    _reset_mysql(url)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per session; each test copies it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "labelkit.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the head revision."""
    if request.param == "sqlite":
        path = tmp_path / "labelkit.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("mysql_server_url")
    _empty_mysql(url, _head_revision())
    return url


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all, for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("mysql_server_url")
    _reset_mysql(url)  # the next test's db_url finds no schema and migrates it again
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
