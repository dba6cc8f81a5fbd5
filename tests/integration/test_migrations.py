"""Every Alembic migration goes both ways on SQLite and on the real MariaDB, and
``alembic upgrade head --sql`` (offline SQL, no database connection) produces a script that
builds the schema.

Each test gets a database of its own (a fresh SQLite file; a fresh MariaDB database, dropped
after), because downgrading to base is exactly what the shared test databases must not see.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from labelkit.db.engine import make_engine
from labelkit.db.migrate import downgrade, upgrade
from labelkit.db.models import Base
from tests.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER

ROOT = Path(__file__).resolve().parents[2]
MODEL_TABLES = set(Base.metadata.tables)


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", charset="utf8mb4")


@pytest.fixture
def fresh_mysql_url() -> Iterator[str]:
    name = f"labelkit_migr_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    try:
        yield f"mysql+pymysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'migrations.db').as_posix()}"
    else:
        url = request.getfixturevalue("fresh_mysql_url")
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_to_base_and_upgrade_again(fresh_engine: Engine) -> None:
    # GIVEN a database at head
    upgrade(fresh_engine)
    assert _tables(fresh_engine) == MODEL_TABLES
    # WHEN every migration is undone
    downgrade(fresh_engine, "base")
    # THEN no table of Labelkit's is left, and the way up works again
    assert _tables(fresh_engine) == set()
    upgrade(fresh_engine)
    assert _tables(fresh_engine) == MODEL_TABLES


def test_each_step_goes_down_and_up_again(fresh_engine: Engine) -> None:
    # One revision at a time, from head to base and back: every downgrade() undoes its upgrade().
    upgrade(fresh_engine)
    seen = []
    while _tables(fresh_engine):
        downgrade(fresh_engine, "-1")
        seen.append(_tables(fresh_engine))
        upgrade(fresh_engine, "+1")
        downgrade(fresh_engine, "-1")
        assert _tables(fresh_engine) == seen[-1]
    assert len(seen) >= 7  # 0007 .. 0001


def _offline_sql(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    env["LABELKIT_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_offline_sql_builds_the_schema_on_sqlite(tmp_path: Path) -> None:
    # GIVEN the offline script for SQLite (no database is opened to write it)
    db = tmp_path / "offline.db"
    result = _offline_sql(f"sqlite:///{db.as_posix()}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not db.exists()
    # THEN it says which data step it cannot do, and applied to an empty database it
    # builds every table at head
    assert "run `python -m labelkit.db.counts`" in result.stdout
    conn = sqlite3.connect(db)
    conn.executescript(result.stdout)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert names - {"alembic_version"} == MODEL_TABLES


@pytest.mark.mysql
def test_offline_sql_builds_the_schema_on_mariadb(fresh_mysql_url: str) -> None:
    result = _offline_sql(fresh_mysql_url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run `python -m labelkit.db.counts`" in result.stdout
    name = fresh_mysql_url.rsplit("/", 1)[1]
    conn = pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_USER,
        password="",
        database=name,
        charset="utf8mb4",
        client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
    )
    with conn.cursor() as cur:
        cur.execute(result.stdout)
        while cur.nextset():
            pass
    conn.commit()
    conn.close()
    engine = make_engine(fresh_mysql_url)
    try:
        assert _tables(engine) == MODEL_TABLES
    finally:
        engine.dispose()
