"""Engines and sessions.

``make_engine(url)`` builds an engine tuned for the backend: SQLite gets WAL,
a busy timeout and foreign keys (several processes share the file: dashboard,
listeners); MySQL/RDS gets utf8mb4, READ COMMITTED, ``pool_pre_ping`` and ``pool_recycle``
and optional TLS. ``get_engine(settings)`` caches one engine per URL per process.
"""

from __future__ import annotations

import random
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

if TYPE_CHECKING:
    from labelkit.settings import Settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(
    url: str | URL,
    *,
    password: str | None = None,
    ssl_ca: str = "",
    echo: bool = False,
) -> Engine:
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
    connect_args: dict[str, Any] = {"connect_timeout": 10}
    if ssl_ca:
        connect_args["ssl"] = {"ca": ssl_ca}
    return create_engine(
        u,
        echo=echo,
        hide_parameters=True,  # never log bound values (password hashes, names)
        # READ COMMITTED (as Django uses on MySQL): each statement sees what is committed,
        # so a writer that holds an image's row lock reads that image's latest labels
        # (labelkit.db.counts), and searches take no gap locks (fewer deadlocks).
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,  # RDS and MariaDB close idle connections
        pool_recycle=280,
        pool_size=5,
        max_overflow=10,
        connect_args=connect_args,
    )


def get_engine(settings: Settings) -> Engine:
    """One engine per database URL per process (engines own connection pools)."""
    url = settings.resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            password = None
            if settings.database_password is not None:
                password = settings.database_password.get_secret_value()
            elif settings.database_secret_arn:
                from labelkit.aws import secret_password

                password = secret_password(settings.database_secret_arn, region=settings.aws_region)
            engine = make_engine(url, password=password, ssl_ca=settings.database_ssl_ca)
            _engines[url] = engine
        return engine


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


_T = TypeVar("_T")
_DEADLOCK = 1213  # MySQL/MariaDB: "Deadlock found when trying to get lock; try restarting transaction"


def is_deadlock(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return isinstance(exc, OperationalError) and bool(args) and args[0] == _DEADLOCK


def in_transaction(engine: Engine, work: Callable[[Session], _T], *, attempts: int = 4) -> _T:
    """Run ``work`` in a transaction; if MySQL picks it as a deadlock victim (it rolled back
    and says "try restarting transaction"), run it again after a short random pause."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction(engine) as session:
                return work(session)
        except OperationalError as e:
            if not is_deadlock(e) or attempt == attempts:
                raise
            time.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
