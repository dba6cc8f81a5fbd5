"""Engines and sessions.

``make_engine(url)`` builds an engine tuned for the backend: SQLite gets WAL,
a busy timeout and foreign keys (several processes share the file: dashboard,
listeners); MySQL/RDS gets utf8mb4, ``pool_pre_ping`` and ``pool_recycle`` and
optional TLS. ``get_engine(settings)`` caches one engine per URL per process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
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
