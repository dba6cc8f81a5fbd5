"""``migrate --stack`` runs Alembic against the stack's database: here an existing one (the real
MariaDB, a throwaway database dropped after) given to apply as --database-url. A host's own
``migrate`` (at every boot) waits for another host that is migrating the same database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from infra_scripts import __main__ as cli
from infra_scripts import cloudformation as cfn
from tests.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER
from tests.e2e.conftest import ROOT
from tests.infra.conftest import REGION, Echo, no_sleep

pytestmark = [
    pytest.mark.aws,
    pytest.mark.mysql,
    pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto"),
]


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", charset="utf8mb4")


def _tables(name: str) -> set[str]:
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,))
        tables = {r[0] for r in cur.fetchall()}
    conn.close()
    return tables


@pytest.fixture
def infra_db() -> Iterator[tuple[str, str]]:
    name = f"labelkit_infra_{uuid.uuid4().hex[:10]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    try:
        yield name, f"mysql+pymysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        conn = _admin()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def test_migrate_runs_alembic_against_the_stacks_database(
    clients: cfn.Clients,
    make_opts: Callable[..., cfn.DeployOptions],
    infra_db: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a stack that uses an existing, empty database
    name, url = infra_db
    opts = make_opts(Database="external", DatabaseUrl=url, CreateInstance="false")
    _, out = cfn.apply(opts, clients, echo=Echo(), sleep=no_sleep)
    assert out["database_url"] == url and _tables(name) == set()
    args = ["migrate", "--stack", "demo", "--region", REGION, "--outputs-dir", str(tmp_path / "out")]
    # WHEN migrate runs, THEN the schema is there
    assert cli.main(args) == 0
    assert "database of stack labelkit-demo migrated to head" in capsys.readouterr().out
    assert {"alembic_version", "images"} <= _tables(name)
    # AND a second run finds it at head
    assert cli.main(args) == 0


def test_migrate_refuses_a_stack_without_a_database(
    clients: cfn.Clients, make_opts: Callable[..., cfn.DeployOptions], tmp_path: Path
) -> None:
    cfn.apply(make_opts(Database="none", CreateInstance="false"), clients, echo=Echo(), sleep=no_sleep)
    args = ["migrate", "--stack", "demo", "--region", REGION, "--outputs-dir", str(tmp_path / "out")]
    assert cli.main(args) == 1


def _waiting_for(lock: str) -> int:
    """How many connections are waiting in GET_LOCK for ``lock``."""
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE %s",
            (f"SELECT GET_LOCK('{lock}'%",),
        )
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def test_hosts_that_boot_together_migrate_one_at_a_time(infra_db: tuple[str, str], tmp_path: Path) -> None:
    # GIVEN an empty database, and the migration lock held (as by a host already migrating)
    name, url = infra_db
    lock = f"labelkit_migrate:{name}"
    holder = _admin()
    with holder.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 10)", (lock,))
        assert cur.fetchone() == (1,)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELKIT_", "AWS_"))}
    env.update(LABELKIT_DATABASE_URL=url, LABELKIT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    # WHEN two more hosts boot and run their migration, as the user data does
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "infra_scripts", "migrate"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        # THEN both wait for the lock, and nothing is created meanwhile
        deadline = time.monotonic() + 180
        while _waiting_for(lock) < 2:
            exited = [p.returncode for p in procs if p.poll() is not None]
            assert not exited, f"a migration ran without waiting: {[p.communicate() for p in procs]}"
            assert time.monotonic() < deadline, "the migrations never waited for the lock"
            time.sleep(0.2)
        assert _tables(name) == set()
        # AND once it is released they migrate one after the other, both successfully
        with holder.cursor() as cur:
            cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        holder.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("database migrated to head" in out for out in outputs), outputs
    assert {"alembic_version", "images"} <= _tables(name)
