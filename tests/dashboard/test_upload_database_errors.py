"""Uploads when the database stops taking writes (issue 25, finding 6), on SQLite and MariaDB.

With the disk full (SQLite) or the write grant revoked (MariaDB), ``upload_image`` raised
into the Upload page: Streamlit's generic error, no per-file results, later files not
processed, and a row left pending with no file. A read-only connection stands in for both
here (SQLite's ``query_only``, MariaDB's read-only transactions): every write fails with the
same kind of database error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus
from labelkit.services import Services
from labelkit.uploads import DATABASE_FAILED, QUEUED_LATER, upload_image
from tests.dashboard.conftest import BLUE, GREEN, RED, app, texts


def _read_only(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute(
        "PRAGMA query_only=1"
        if "sqlite" in type(dbapi_conn).__module__
        else "SET SESSION TRANSACTION READ ONLY"
    )
    cur.close()


def _set_read_only(engine: Engine, on: bool) -> None:
    if on:
        event.listen(engine, "connect", _read_only)
    else:
        event.remove(engine, "connect", _read_only)
    engine.dispose()  # pooled connections go: new ones are made as set


@contextmanager
def _writes_refused(engine: Engine) -> Iterator[None]:
    _set_read_only(engine, True)
    try:
        yield
    finally:
        _set_read_only(engine, False)


def _rows(services: Services) -> list[tuple[str, ImageStatus, str]]:
    with transaction(services.engine) as s:
        return [(i.original_name, i.status, i.object_key) for i in s.scalars(select(Image))]


def test_an_upload_the_database_refuses_gets_a_verdict_and_leaves_nothing(
    services: Services, alice: Principal
) -> None:
    with _writes_refused(services.engine):
        result = upload_image(services=services, owner_id=alice.user_id, filename="red.jpg", data=RED)
    assert (result.outcome, result.reason) == ("rejected", DATABASE_FAILED)
    assert _rows(services) == []
    assert services.store.list_objects("users/") == []


class _QueueThenReadOnly:
    """The queue takes the job, then the database stops taking writes (before the upload
    records that its job was queued)."""

    def __init__(self, services: Services) -> None:
        self.inner, self.engine = services.queue, services.engine

    def send(self, body: str) -> None:
        self.inner.send(body)
        _set_read_only(self.engine, True)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_row_that_cannot_be_undone_keeps_its_file_and_is_labelled_later(
    services: Services, alice: Principal
) -> None:
    from dataclasses import replace

    flaky = replace(services, queue=_QueueThenReadOnly(services))  # type: ignore[arg-type]
    try:
        result = upload_image(services=flaky, owner_id=alice.user_id, filename="red.jpg", data=RED)
    finally:
        _set_read_only(services.engine, False)
    # THEN the person is told it is saved and will be labelled, and it is: a pending row
    # WITH its file (never one without), whose job is in the queue
    assert (result.outcome, result.reason) == ("accepted", QUEUED_LATER)
    ((name, status, key),) = _rows(services)
    assert (name, status) == ("red.jpg", ImageStatus.PENDING)
    assert services.store.exists(key)


def test_the_upload_page_gives_every_file_a_verdict_when_the_database_refuses_writes(
    services: Services, alice: Principal
) -> None:
    at = app(alice, "app_pages/upload.py")
    with _writes_refused(services.engine):
        at.file_uploader[0].set_value(
            [("a.jpg", RED, "image/jpeg"), ("b.jpg", GREEN, "image/jpeg"), ("c.jpg", BLUE, "image/jpeg")]
        )
        at.run()
    # THEN no crash; the first says why it was not saved, the others that they were not tried
    assert not at.exception
    shown = texts(at)
    assert "a.jpg** — rejected: Could not be saved: the database is not accepting writes" in shown
    for name in ("b.jpg", "c.jpg"):
        assert f"{name}** — rejected: Not saved: the database is not accepting writes" in shown
    assert [m.value for m in at.metric] == ["0", "0", "3"]
    assert _rows(services) == []
