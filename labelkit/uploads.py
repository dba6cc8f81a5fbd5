"""Use cases around an image's life: upload, retry, delete.

The dashboard, the demo loader and the tests call these; they order the
writes so nothing is ever half-done:

* upload: validate from bytes -> insert the row (``pending``) -> store the
  object -> enqueue (unless S3 notifies the queue itself). If storing or
  enqueueing fails, the row and object are removed again and the error says so.
* delete: rows (labels cascade) -> object -> any queue entry for its key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError

from labelkit.db import repository as repo
from labelkit.db.engine import transaction
from labelkit.db.repository import Viewer
from labelkit.errors import DecoderUnavailable, IntakeError, LabelkitError, StorageError
from labelkit.images import DecodeLimits, inspect_image, safe_display_name
from labelkit.queue.events import make_s3_event
from labelkit.services import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UploadResult:
    name: str
    outcome: Literal["accepted", "duplicate", "rejected"]
    image_id: str | None = None
    reason: str | None = None


def _enqueue(services: Services, key: str, size: int | None) -> None:
    store = services.store
    body = make_s3_event(bucket=store.bucket or "local", key=store.full_key(key), size=size)
    services.queue.send(body)


def upload_image(*, services: Services, owner_id: str, filename: str, data: bytes) -> UploadResult:
    settings = services.settings
    name = safe_display_name(filename)
    try:
        info = inspect_image(
            data,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            limits=DecodeLimits.from_settings(settings),
        )
    except IntakeError as e:
        return UploadResult(name=name, outcome="rejected", reason=e.reason)
    except DecoderUnavailable:
        logger.error("the image decoder could not start; upload of %r refused", name, exc_info=True)
        return UploadResult(
            name=name, outcome="rejected", reason="The file could not be checked just now; please try again."
        )

    try:
        with transaction(services.engine) as s:
            dup = repo.find_duplicate(session=s, owner_id=owner_id, sha256=info.sha256)
            if dup is not None:
                return UploadResult(
                    name=name,
                    outcome="duplicate",
                    image_id=dup.id,
                    reason=f"Already uploaded as “{dup.original_name}”.",
                )
            image = repo.create_image(
                session=s,
                owner_id=owner_id,
                original_name=name,
                content_type=info.content_type,
                extension=info.extension,
                size_bytes=info.size_bytes,
                width=info.width,
                height=info.height,
                sha256=info.sha256,
            )
            image_id, key = image.id, image.object_key
    except IntegrityError:
        # The same file uploaded twice at once: the unique key let one in.
        return UploadResult(name=name, outcome="duplicate", reason="Already uploaded.")

    try:
        services.store.put(key, data, content_type=info.content_type)
        if not settings.s3_notifies_queue:
            _enqueue(services, key, info.size_bytes)
    except LabelkitError as e:
        logger.error("upload of %s failed after its row was written; undoing", key, exc_info=True)
        _undo_upload(services, image_id, key)
        return UploadResult(name=name, outcome="rejected", reason=f"Could not store the file: {e}")
    return UploadResult(name=name, outcome="accepted", image_id=image_id)


def _undo_upload(services: Services, image_id: str, key: str) -> None:
    try:
        services.store.delete(key)
    except StorageError:
        logger.warning("could not remove %s while undoing an upload", key, exc_info=True)
    with transaction(services.engine) as s:
        repo.delete_image(session=s, viewer=Viewer(user_id="system", is_admin=True), image_id=image_id)


def retry_image(*, services: Services, viewer: Viewer, image_id: str) -> None:
    """Label an image again (after a failure): back to pending, enqueued afresh.

    Its old messages (e.g. the dead letter) are removed first, so the dead-letter
    list shows only images still waiting for someone.
    """
    with transaction(services.engine) as s:
        image = repo.reset_for_retry(session=s, viewer=viewer, image_id=image_id)
        key, size = image.object_key, image.bytes
    services.queue.purge_matching(image_id)
    _enqueue(services, key, size)


def delete_image(*, services: Services, viewer: Viewer, image_id: str) -> None:
    """Delete an image everywhere: rows, stored object and queue entries."""
    with transaction(services.engine) as s:
        key = repo.delete_image(session=s, viewer=viewer, image_id=image_id)
    services.store.delete(key)
    services.queue.purge_matching(image_id)


def requeue_stuck(*, services: Services, older_than_seconds: int = 600) -> int:
    """Enqueue again images left ``pending`` (e.g. a crash between storing and enqueueing).

    Safe to run any time: a duplicate message is harmless (writes are idempotent).
    """
    with transaction(services.engine) as s:
        rows = repo.stale_pending_for_worker(session=s, older_than_seconds=older_than_seconds)
    for key, size in rows:
        _enqueue(services, key, size)
    return len(rows)
