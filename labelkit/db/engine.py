"""Engines and sessions.

``make_engine(url)`` builds an engine tuned for the backend: SQLite gets WAL,
a busy timeout and foreign keys (several processes share the file: dashboard,
listeners); MySQL/RDS gets utf8mb4, READ COMMITTED, ``pool_pre_ping`` and ``pool_recycle``
and optional TLS. ``get_engine(settings)`` caches one engine per URL per process.

A MySQL connection lost to the network must not hurt either side for long:

* **the server** ends a session idle for ``idle_timeout`` seconds (the session's
  ``wait_timeout``, set on connect). Without it a session whose client vanished
  without a FIN (a network blip, a NAT that forgot the flow, a killed host) keeps
  its open transaction and row locks until the server's default of 8 hours, and
  every later claim of that image waits on the lock;
* **the client** gives up on a statement whose answer does not come within
  ``read_timeout`` seconds (PyMySQL ``read_timeout``/``write_timeout``), and the
  kernel notices a dead peer on an idle socket within ~25 s (TCP keepalive) and
  on a busy one within 30 s (``TCP_USER_TIMEOUT``). The error counts as a
  disconnect, so SQLAlchemy drops every pooled connection made before it;
* the pool recycles connections before the server's ``wait_timeout`` can end
  them, and pings each one on checkout.

The sign-in session check runs on every page load and rerun, so it has an engine of its own,
``get_session_engine(settings)``, whose MySQL connections give up after
``SESSION_CHECK_SECONDS`` to connect or to answer: with the database down a page says so
within a few seconds, where the main engine's timeouts (10 s to connect, 30 s to answer, for
real work) would keep it waiting half a minute.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labelkit.retry import lock_conflict

if TYPE_CHECKING:
    from labelkit.settings import Settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
# Seconds the session check may wait for a connection or an answer (a one-row lookup by key:
# milliseconds on a live database, so this is a bound on a dead link, not on work).
SESSION_CHECK_SECONDS = 3


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _keepalive(dbapi_conn: Any, _record: Any) -> None:
    """TCP keepalive and a user timeout on a PyMySQL connection's socket (Linux options)."""
    sock = getattr(dbapi_conn, "_sock", None)  # PyMySQL keeps its socket here
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", 10),  # seconds idle before the first probe
        ("TCP_KEEPINTVL", 5),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 30_000),  # ms unacknowledged data may wait (a query sent into a void)
    ):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _session_timeout(seconds: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # wait_timeout covers a session idle inside a transaction too (MySQL and MariaDB
        # alike), so it bounds how long a lost client's locks live.
        cur.execute(f"SET SESSION wait_timeout = {int(seconds)}")
        cur.close()

    return on_connect


@contextmanager
def no_read_timeout(conn: Any) -> Iterator[None]:
    """Lift the client's read timeout for long statements on one connection (migrations).

    ``conn`` is a SQLAlchemy ``Connection``; on anything but PyMySQL this does nothing.
    """
    raw = conn.connection.dbapi_connection
    before = getattr(raw, "_read_timeout", None)
    if before is None:
        yield
        return
    raw._read_timeout = None  # PyMySQL applies it before every read
    try:
        yield
    finally:
        raw._read_timeout = before


def make_engine(
    url: str | URL,
    *,
    password: str | None = None,
    ssl_ca: str = "",
    echo: bool = False,
    read_timeout: int | None = 30,
    idle_timeout: int | None = 30,
    connect_timeout: int = 10,
) -> Engine:
    """An engine for ``url``; ``read_timeout``/``idle_timeout``/``connect_timeout`` (seconds,
    MySQL only; None or 0 for none, except connecting) bound how long a lost connection can
    block the client or keep locks on the server."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            u,
            echo=echo,
            hide_parameters=True,  # never log bound values (password hashes, names)
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if password is not None and u.password is None:
        u = u.set(password=password)
    query = dict(u.query)
    query.setdefault("charset", "utf8mb4")
    u = u.set(query=query)
    connect_args: dict[str, Any] = {"connect_timeout": connect_timeout}
    if read_timeout:
        connect_args["read_timeout"] = read_timeout
        connect_args["write_timeout"] = read_timeout
    if ssl_ca:
        connect_args["ssl"] = {"ca": ssl_ca}
    engine = create_engine(
        u,
        echo=echo,
        hide_parameters=True,  # never log bound values (password hashes, names)
        # READ COMMITTED (as Django uses on MySQL): each statement sees what is committed,
        # so a writer that holds an image's row lock reads that image's latest labels
        # (labelkit.db.counts), and searches take no gap locks (fewer deadlocks).
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,  # RDS and MariaDB close idle connections
        # Renewed before the server's wait_timeout ends them (the pool would notice anyway).
        pool_recycle=max(5, idle_timeout - 10) if idle_timeout else 280,
        pool_size=5,
        max_overflow=10,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _keepalive)
    if idle_timeout:
        event.listen(engine, "connect", _session_timeout(idle_timeout))
    return engine


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL per process (engines own connection pools)."""
    url = settings.resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(
                url,
                password=_password(settings),
                ssl_ca=settings.database_ssl_ca,
                read_timeout=settings.database_read_timeout or None,
                idle_timeout=settings.database_idle_timeout or None,
            )
            _engines[url] = engine
        return engine


def get_session_engine(settings: Settings) -> Engine:
    """The engine of the sign-in session check (one per database URL per process): on MySQL
    its connections wait at most ``SESSION_CHECK_SECONDS`` to connect or for an answer; on
    SQLite (no link to lose) it is the main engine."""
    url = settings.resolved_database_url
    if make_url(url).get_backend_name() == "sqlite":
        return get_engine(settings)
    key = f"session-check {url}"
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(
                url,
                password=_password(settings),
                ssl_ca=settings.database_ssl_ca,
                read_timeout=SESSION_CHECK_SECONDS,
                idle_timeout=settings.database_idle_timeout or None,
                connect_timeout=SESSION_CHECK_SECONDS,
            )
            _engines[key] = engine
        return engine


def _password(settings: Settings) -> str | None:
    if settings.database_password is not None:
        return settings.database_password.get_secret_value()
    if settings.database_secret_arn:
        from labelkit.aws import secret_password

        return secret_password(settings.database_secret_arn, region=settings.aws_region)
    return None


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on error."""
    with session_factory(engine).begin() as session:
        yield session


#: SQLite's busy handler waits at most this long between two tries for the write lock.
SQLITE_BUSY_BACKOFF = 0.1


def let_others_write(engine: Engine) -> None:
    """Between two transactions of a long batch job, give writers waiting for the database a
    turn. MySQL queues lock waiters, so nothing is needed there. SQLite does not: a waiting
    writer retries after a back-off of up to 100 ms, and a job that starts its next
    transaction at once takes the lock first every time (a 5,000-label review starved
    another person's write for over 5 s). A pause just longer than that back-off lets
    them in (about 0.1 s per 200 labels)."""
    if engine.dialect.name == "sqlite":
        time.sleep(SQLITE_BUSY_BACKOFF * 1.2)


_T = TypeVar("_T")
_DEADLOCK = 1213  # MySQL/MariaDB: "Deadlock found when trying to get lock; try restarting transaction"


def is_deadlock(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return isinstance(exc, OperationalError) and bool(args) and args[0] == _DEADLOCK


def in_transaction(engine: Engine, work: Callable[[Session], _T], *, attempts: int = 4) -> _T:
    """Run ``work`` in a transaction; if MySQL picks it as a deadlock victim (it rolled back
    and says "try restarting transaction"), run it again after a short random pause."""

    def attempt() -> _T:
        with transaction(engine) as session:
            return work(session)

    return lock_conflict(is_deadlock, attempts=attempts)(attempt)
