"""Use cases around an image's life: upload, retry, delete.

The dashboard, the demo loader and the tests call these; they order the
writes so nothing is ever half-done:

* upload: validate from bytes -> insert the row (``pending``) -> store the
  object -> enqueue (unless S3 notifies the queue itself) -> ``queued_at``. If
  storing or enqueueing fails, the row and object are removed again and the
  error says so. A process killed in between leaves a row with no ``queued_at``,
  which :mod:`labelkit.reconcile` finishes or fails. A file whose earlier upload
  has no stored object any more (killed before storing, or the file went
  missing) is not a duplicate: uploading it again restores that image.
* delete: object -> rows (labels cascade) -> thumbnail -> any queue entry for its
  key. The object goes first so a storage failure leaves everything as it was
  (nothing orphaned); a failure after it leaves a row whose file is missing, which
  the worker reports and a new upload restores. The thumbnail goes after the rows
  so a worker labelling the image meanwhile cannot leave one behind (see
  :func:`delete_image`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from labelkit import duplicates
from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.db.queries import thumbs as thumb_q
from labelkit.domain import Viewer, system_viewer
from labelkit.errors import DecoderUnavailable, IntakeError, LabelkitError, StorageError
from labelkit.features import thumbnail_key
from labelkit.filenames import safe_display_name
from labelkit.images import DecodeLimits, ImageInfo, inspect_image, make_thumbnail
from labelkit.queue.events import make_s3_event
from labelkit.services import Services
from labelkit.storage import event_bucket

logger = logging.getLogger(__name__)

SYSTEM = system_viewer("system")  # the use cases' own housekeeping


@dataclass(frozen=True, slots=True)
class UploadResult:
    name: str
    outcome: Literal["accepted", "duplicate", "rejected"]
    image_id: str | None = None
    reason: str | None = None
    #: An image the owner already has that this accepted upload looks like (near-duplicate).
    looks_like: str | None = None


def _md5(data: bytes) -> str:
    # S3's ETag of a single-part upload; only an event field here, never a security check.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


STORE_FAILED = "Could not store the file (the image storage is not available); try again later."
DATABASE_FAILED = "Could not be saved: the database is not accepting writes just now; try again later."
QUEUED_LATER = (
    "Saved, but not queued for labelling yet: the database is not accepting writes just now. "
    "It is labelled once it accepts them again."
)


def _enqueue(services: Services, key: str, size: int, etag: str) -> None:
    store = services.store
    body = make_s3_event(
        bucket=event_bucket(store),
        key=store.full_key(key),
        size=size,
        etag=etag,
        region=services.settings.aws_region,
    )
    services.queue.send(body)


def hand_to_queue(*, services: Services, image_id: str, key: str, size: int, etag: str = "") -> None:
    """Enqueue the image's job (unless the bucket's notification does) and record that it was.

    ``etag`` is the object's MD5 (hex) when the caller has its bytes, as S3 reports it."""
    if not services.settings.s3_notifies_queue:
        _enqueue(services, key, size, etag)
    with transaction(services.engine) as s:
        image_q.mark_queued(session=s, image_id=image_id)


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
            dup = image_q.find_duplicate(session=s, owner_id=owner_id, sha256=info.sha256)
        if dup is not None:
            if _stored(services, dup.object_key):
                return UploadResult(
                    name=name,
                    outcome="duplicate",
                    image_id=dup.id,
                    reason=f"Already uploaded as “{dup.original_name}”.",
                )
            return _restore(services, name=name, image_id=dup.id, key=dup.object_key, data=data, info=info)
        with transaction(services.engine) as s:
            image = image_q.create_image(
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
    except SQLAlchemyError:
        # A full disk, a read-only database, a lost link: nothing was written.
        logger.error("upload of %r refused: the database did not take its row", name, exc_info=True)
        return UploadResult(name=name, outcome="rejected", reason=DATABASE_FAILED)

    stored = False
    try:
        services.store.put(key, data, content_type=info.content_type)
        stored = True
        hand_to_queue(services=services, image_id=image_id, key=key, size=info.size_bytes, etag=_md5(data))
    except (LabelkitError, SQLAlchemyError) as e:
        # The detail (paths, endpoints) goes to the log, not to the person uploading.
        logger.error("upload of %s failed after its row was written; undoing", key, exc_info=True)
        if _undo_upload(services, image_id, key):
            reason = DATABASE_FAILED if isinstance(e, SQLAlchemyError) else STORE_FAILED
            return UploadResult(name=name, outcome="rejected", reason=reason)
        if stored:
            # The row could not be removed either: it stays pending with its file, and the
            # reconciler queues it once the database takes writes again. Nothing is lost.
            return UploadResult(name=name, outcome="accepted", image_id=image_id, reason=QUEUED_LATER)
        # A row with no file: the reconciler fails it, saying so.
        return UploadResult(name=name, outcome="rejected", reason=STORE_FAILED)
    looks_like = _looks_like(services, image_id=image_id, owner_id=owner_id, data=data)
    return UploadResult(name=name, outcome="accepted", image_id=image_id, looks_like=looks_like)


def _looks_like(services: Services, *, image_id: str, owner_id: str, data: bytes) -> str | None:
    """The owner's image this upload is a near-duplicate of, if any (the upload is kept either
    way). Its hash is taken from a thumbnail made in the decoder sandbox, as the worker makes
    it; any failure only loses the hint."""
    settings = services.settings
    try:
        thumb = make_thumbnail(
            data,
            size=settings.thumbnail_size,
            max_pixels=settings.max_pixels,
            limits=DecodeLimits.from_settings(settings),
        )
        return duplicates.hash_upload(
            engine=services.engine, image_id=image_id, owner_id=owner_id, thumbnail=thumb
        )
    except (LabelkitError, SQLAlchemyError, OSError, ValueError):
        logger.warning("could not hash upload %s for near-duplicates", image_id, exc_info=True)
        return None


def _stored(services: Services, key: str) -> bool:
    try:
        return services.store.exists(key)
    except StorageError:
        logger.warning("could not check whether %s is stored; treating it as stored", key, exc_info=True)
        return True  # the safe answer: a duplicate is refused, nothing is overwritten


def _restore(
    services: Services, *, name: str, image_id: str, key: str, data: bytes, info: ImageInfo
) -> UploadResult:
    """The same file was uploaded before but its stored object is gone (a process killed
    before storing it, or the file lost): store it again and label that image afresh."""
    try:
        services.store.put(key, data, content_type=info.content_type)
        with transaction(services.engine) as s:
            image_q.reset_for_retry(session=s, viewer=SYSTEM, image_id=image_id)
        services.queue.purge_matching(image_id)
        hand_to_queue(services=services, image_id=image_id, key=key, size=info.size_bytes, etag=_md5(data))
    except (LabelkitError, SQLAlchemyError) as e:
        logger.error("restoring %s failed", key, exc_info=True)
        reason = DATABASE_FAILED if isinstance(e, SQLAlchemyError) else STORE_FAILED
        return UploadResult(name=name, outcome="rejected", reason=reason)
    logger.info("upload restored the missing file of image %s", image_id)
    return UploadResult(
        name=name,
        outcome="accepted",
        image_id=image_id,
        reason="This file was uploaded before but its stored copy was missing; it is restored.",
    )


def _undo_upload(services: Services, image_id: str, key: str) -> bool:
    """Remove an upload that could not be finished: the row first, then the file (a row
    whose removal failed keeps its file, so it is never a pending row with no file).
    Returns whether the row went."""
    try:
        with transaction(services.engine) as s:
            image_q.delete_image(session=s, viewer=SYSTEM, image_id=image_id)
    except SQLAlchemyError:
        logger.warning("could not remove image %s while undoing its upload", image_id, exc_info=True)
        return False
    try:
        services.store.delete(key)
    except StorageError:
        logger.warning("could not remove %s while undoing an upload", key, exc_info=True)
    return True


def retry_image(*, services: Services, viewer: Viewer, image_id: str) -> None:
    """Label an image again (after a failure): back to pending, enqueued afresh.

    Its old messages (e.g. the dead letter) are removed first, so the dead-letter
    list shows only images still waiting for someone.
    """
    with transaction(services.engine) as s:
        image = image_q.reset_for_retry(session=s, viewer=viewer, image_id=image_id)
        key, size = image.object_key, image.bytes
    services.queue.purge_matching(image_id)
    hand_to_queue(services=services, image_id=image_id, key=key, size=size)


def delete_image(*, services: Services, viewer: Viewer, image_id: str) -> None:
    """Delete an image everywhere: stored object, rows, thumbnail and queue entries.

    Raises ``NotFound`` for an image the viewer may not see (before anything is
    touched) and ``StorageError`` if the object cannot be deleted (nothing changed).

    The thumbnail goes *after* the rows: a worker labelling the image meanwhile stores its
    thumbnail before it checks, holding the row, that the image still exists (see
    :mod:`labelkit.pipeline`). Either that check waited for the rows to go and the worker
    deletes what it stored, or it came first and what it stored is deleted here. A thumbnail
    that cannot be deleted now is logged and swept by :mod:`labelkit.reconcile`.
    """
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=viewer, image_id=image_id).object_key
        recorded = thumb_q.thumb_keys(session=s, viewer=viewer, image_ids=[image_id]).get(image_id)
    services.store.delete(key)
    with transaction(services.engine) as s:
        image_q.delete_image(session=s, viewer=viewer, image_id=image_id)
    # The key recorded with the features, and the one a worker not yet recorded would use.
    for thumb in dict.fromkeys(k for k in (recorded, thumbnail_key(key)) if k):
        try:
            services.store.delete(thumb)
        except StorageError:
            logger.warning(
                "could not delete the thumbnail %s of deleted image %s", thumb, image_id, exc_info=True
            )
    services.queue.purge_matching(image_id)


def delete_images(*, services: Services, viewer: Viewer, image_ids: Sequence[str]) -> list[str]:
    """Delete each image as :func:`delete_image` does; returns the ids that were deleted. One
    that fails (not found, storage down) is logged and left as it was; the rest go on."""
    deleted: list[str] = []
    for image_id in image_ids:
        try:
            delete_image(services=services, viewer=viewer, image_id=image_id)
        except (LabelkitError, SQLAlchemyError):
            logger.warning("could not delete image %s", image_id, exc_info=True)
            continue
        deleted.append(image_id)
    return deleted


@dataclass(frozen=True, slots=True)
class CopiesDeleted:
    deleted: list[str]  # the copies deleted
    labels_copied: int  # label names people gave them, copied to their keepers first


def delete_copies(
    *, services: Services, viewer: Viewer, keepers: Mapping[str, str], copy_labels: bool
) -> CopiesDeleted:
    """Delete near-duplicate copies: each key of ``keepers`` (copy id -> the keeper of its
    group) as :func:`delete_image` does, only while its keeper is still there. With
    ``copy_labels``, what people did on a copy is first
    copied onto its keeper (:func:`labelkit.duplicates.copy_human_labels`), and a copy whose
    labels could not be copied is not deleted. A keeper is never deleted, even if also listed
    as a copy. One that fails is logged and left as it was; the rest go on."""
    deleted: list[str] = []
    copied = 0
    kept = set(keepers.values())
    with transaction(services.engine) as s:
        # A copy goes only while its keeper is there (deleted meanwhile, in another tab, the
        # copy may be the last one of the photo).
        alive = set(image_q.images_by_ids(session=s, viewer=viewer, image_ids=sorted(kept)))
    for copy_id, keeper_id in keepers.items():
        if copy_id in kept:
            continue
        if keeper_id not in alive:
            logger.info("not deleting copy %s: its keeper %s is gone", copy_id, keeper_id)
            continue
        try:
            if copy_labels:
                copied += duplicates.copy_human_labels(
                    engine=services.engine, viewer=viewer, source_id=copy_id, keeper_id=keeper_id
                )
            delete_image(services=services, viewer=viewer, image_id=copy_id)
        except (LabelkitError, SQLAlchemyError, ValueError):
            logger.warning("could not delete copy %s (keeper %s)", copy_id, keeper_id, exc_info=True)
            continue
        deleted.append(copy_id)
    return CopiesDeleted(deleted=deleted, labels_copied=copied)


def relabel_outdated(
    *, services: Services, viewer: Viewer, model_version: str, missing_features: bool = False
) -> int:
    """Relabel, through the queue, the viewer's images labelled by another configuration than
    ``model_version`` (the pipeline's), and with ``missing_features`` those labelled before
    features were stored: back to pending and enqueued; the worker's write replaces their
    old model labels and keeps the human reviews. Returns how many."""
    with transaction(services.engine) as s:
        rows = image_q.mark_for_relabel(
            session=s, viewer=viewer, model_version=model_version, missing_features=missing_features
        )
    for image_id, key, size in rows:
        hand_to_queue(services=services, image_id=image_id, key=key, size=size)
    return len(rows)
