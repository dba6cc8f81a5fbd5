"""MySQL connections that the network loses cannot block a client or keep locks for long.

On the real MariaDB: every connection of an app engine tells the server to end it
after ``database_idle_timeout`` idle seconds (so a session whose client vanished
cannot keep its row locks for the server's 8-hour default), gives up on an answer
after ``database_read_timeout`` seconds, and has TCP keepalive on. The pool renews
connections before the server would end them. Migrations lift the read timeout.
The end-to-end proof (a listener through a half-open link) is in
``tests/reliability/test_database_outage.py``.
"""

from __future__ import annotations

import socket
import threading

import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from labelkit.db.engine import get_engine, make_engine, no_read_timeout
from labelkit.settings import Settings

pytestmark = pytest.mark.mysql


def test_app_connections_carry_the_timeouts(mysql_server_url: str) -> None:
    # GIVEN the app's engine with its default settings
    engine = get_engine(Settings(database_url=mysql_server_url))
    # WHEN a connection is made
    with engine.connect() as conn:
        # THEN the server ends it after 30 idle seconds (not 8 hours)
        assert conn.execute(text("SELECT @@session.wait_timeout")).scalar_one() == 30
        raw = conn.connection.dbapi_connection
        # AND the client waits at most 30 s for an answer, with keepalive probes on its socket
        assert raw._read_timeout == 30 and raw._write_timeout == 30  # type: ignore[union-attr]
        sock = raw._sock  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    # AND the pool renews a connection before the server could end it
    assert engine.pool._recycle == 20  # type: ignore[attr-defined]


def test_settings_change_the_timeouts(mysql_server_url: str) -> None:
    engine = get_engine(
        Settings(database_url=mysql_server_url, database_idle_timeout=90, database_read_timeout=0)
    )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT @@session.wait_timeout")).scalar_one() == 90
        assert conn.connection.dbapi_connection._read_timeout is None  # type: ignore[union-attr]


def test_a_statement_whose_answer_never_comes_is_given_up(mysql_server_url: str) -> None:
    # GIVEN an engine with a 2 s read timeout (a link that went silent is the same to the
    # client as a statement that takes long: no answer arrives)
    engine = make_engine(mysql_server_url, read_timeout=2)
    with engine.connect() as conn:
        # WHEN a statement runs longer than the read timeout (SLEEP stands in for "no answer")
        with pytest.raises(OperationalError) as caught:
            conn.execute(text("SELECT SLEEP(20)"))
    # THEN the client gave up with "lost connection" (and SQLAlchemy treats it as a disconnect)
    assert caught.value.connection_invalidated
    engine.dispose()


def test_migrations_run_without_the_read_timeout(mysql_server_url: str) -> None:
    engine = make_engine(mysql_server_url, read_timeout=1)
    with engine.connect() as conn:
        with no_read_timeout(conn):
            # A statement longer than the read timeout completes (as a long ALTER would).
            assert conn.execute(text("SELECT SLEEP(1.5)")).scalar_one() == 0
        with pytest.raises(OperationalError):
            conn.execute(text("SELECT SLEEP(3)"))
    engine.dispose()


def test_the_server_ends_a_lost_sessions_transaction_and_frees_its_locks(mysql_server_url: str) -> None:
    # GIVEN a session that takes a row lock inside a transaction and then goes silent
    # (its client is gone but the server was never told), with a short idle timeout
    engine = make_engine(mysql_server_url, idle_timeout=2)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS lock_probe (id INT PRIMARY KEY, n INT)"))
        conn.execute(text("REPLACE INTO lock_probe VALUES (1, 0)"))
    lost = engine.connect()
    lost.execute(text("SELECT n FROM lock_probe WHERE id = 1 FOR UPDATE"))  # transaction open, lock held
    # WHEN another client wants that row
    u = make_url(mysql_server_url)
    other = pymysql.connect(
        host=u.host, port=u.port or 3306, user=u.username, password="", database=u.database
    )
    done = threading.Event()

    def update() -> None:
        with other.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 120")
            cur.execute("UPDATE lock_probe SET n = n + 1 WHERE id = 1")
        other.commit()
        done.set()

    worker = threading.Thread(target=update, daemon=True)
    worker.start()
    # THEN it gets the row once the server has ended the silent session (~2 s), long before
    # its own 120 s lock wait runs out
    assert done.wait(timeout=100), "the lock of a silent session was kept"
    other.close()
    lost.invalidate()
    lost.close()
    with engine.begin() as conn:
        assert conn.execute(text("SELECT n FROM lock_probe WHERE id = 1")).scalar_one() == 1
        conn.execute(text("DROP TABLE lock_probe"))
    engine.dispose()
