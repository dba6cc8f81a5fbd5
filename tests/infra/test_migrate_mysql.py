"""apply with --database-url migrates the real MariaDB (a throwaway database, dropped after)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pymysql
import pytest

from infra_scripts import stack
from tests.conftest import MYSQL_HOST, MYSQL_PORT, MYSQL_USER
from tests.infra.conftest import Echo, no_sleep

pytestmark = [pytest.mark.aws, pytest.mark.mysql]


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", charset="utf8mb4")


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


def test_apply_migrates_an_existing_database(
    clients: stack.Clients, make_opts: Callable[..., stack.StackOptions], infra_db: tuple[str, str]
) -> None:
    name, url = infra_db
    opts = make_opts(database_url=url, create_instance=False)
    echo = Echo()
    changes, out = stack.apply(opts, clients, echo=echo, sleep=no_sleep)

    assert ("update", "database schema") in {(c.action, c.kind) for c in changes}
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{name}'")
        tables = {r[0] for r in cur.fetchall()}
    conn.close()
    assert {"alembic_version", "images"} <= tables
    assert out["database_url"] == url and out["database_secret_arn"] == ""  # no password, no secret
    env = clients.lambda_.get_function(FunctionName="labelkit-demo-labeler")["Configuration"]["Environment"]
    assert env["Variables"]["LABELKIT_DATABASE_URL"] == url
    assert "LABELKIT_DATABASE_SECRET_ARN" not in env["Variables"]
    assert clients.rds.describe_db_instances()["DBInstances"] == []

    # the schema is at head: nothing to do the second time
    echo = Echo()
    assert stack.apply(opts, clients, echo=echo, sleep=no_sleep)[0] == []
    assert "= database schema" in echo.text
