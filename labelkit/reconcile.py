"""Reconciliation: no image waits forever for a job that will never come.

The queue guarantees at-least-once delivery, and the pipeline marks an image
``failed`` on its last delivery when it sees that delivery fail. Some endings
escape both, and this sweep catches them (the listener runs it at start and
every few minutes; on AWS a schedule invokes the Lambda with it):

1. **dead letters** whose image is still pending or labelling (the worker died
   on every delivery, so nobody saw the last one fail; or every delivery failed
   before it could touch the image): the image becomes ``failed`` with a reason,
   and the page offers Retry;
2. **exhausted images**: still ``labelling`` after their last allowed attempt
   began long ago (the same case, found from the image rows when the dead-letter
   queue cannot be listed in full);
3. **never queued**: still ``pending`` with no job handed to the queue
   (``queued_at`` unset) a while after the upload; the uploading process was killed
   between writing the row and enqueueing. If the object was stored the job is
   enqueued now; if not, the image fails with "upload it again" (and uploading
   the same file again restores it, see :mod:`labelkit.uploads`);
4. **temporary files** a store left behind when killed mid-write;
5. **orphan thumbnails**: a gallery thumbnail (``thumbs/<object key>.jpg``) whose photo
   has no image row, written more than a grace period ago (an hour: a worker or the
   dashboard stores a thumbnail before it records it, and deletes it itself when it then
   finds the image deleted, see :mod:`labelkit.pipeline`). What is left comes from a store
   that failed just then (the delete's or the worker's own removal of the thumbnail) or a
   delivery that failed after storing one. The store is listed in key order, a page of
   500 at a time (one database lookup and the deletes per page), at most 20,000 thumbnails
   a sweep; the next sweep in this process goes on from there and wraps around at the end.

Every step is idempotent and safe beside running workers: an image is only ever
moved from pending/labelling to failed, never over a result, and a job enqueued
twice is labelled once. A thumbnail is only removed when its photo has no row; the
object key in its name holds a fresh image id, so no later upload can claim it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from labelkit.db.engine import transaction
from labelkit.db.queries import thumbs as thumb_q
from labelkit.db.queries import worker as worker_q
from labelkit.errors import LabelkitError, StorageError
from labelkit.features.thumbnail import THUMBS_PREFIX, photo_key_of
from labelkit.queue.events import MalformedEvent, parse_s3_event
from labelkit.services import Services
from labelkit.storage import event_bucket
from labelkit.uploads import hand_to_queue

logger = logging.getLogger(__name__)

NEVER_QUEUED_GRACE = 120  # seconds an upload may take between writing its row and enqueueing
TEMP_FILE_AGE = 3600  # seconds before a store's leftover temporary file is removed
ORPHAN_THUMBNAIL_GRACE = 3600  # seconds a thumbnail may exist before it must have a photo
THUMBNAIL_SWEEP_PAGE = 500  # thumbnails listed, looked up and deleted at a time
THUMBNAIL_SWEEP_LIMIT = 20_000  # thumbnails looked at by one sweep

# Where this process's next sweep of each store (by repr) goes on; '' from the beginning.
_sweep_from: dict[str, str] = {}


def dead_letter_reason(max_receives: int) -> str:
    return (
        f"Labelling did not finish in {max_receives} attempts (the worker stopped each time, "
        "for example it ran out of memory or was restarted); the job was set aside. "
        "Retry it once the cause is fixed."
    )


NEVER_STORED = "The upload did not finish (the file was never stored). Upload the photo again."


@dataclass(slots=True)
class ReconcileReport:
    dead_lettered_failed: int = 0
    exhausted_failed: int = 0
    requeued: int = 0
    never_stored_failed: int = 0
    temp_files_removed: int = 0
    orphan_thumbnails_removed: int = 0

    @property
    def changed(self) -> int:
        return (
            self.dead_lettered_failed
            + self.exhausted_failed
            + self.requeued
            + self.never_stored_failed
            + self.temp_files_removed
            + self.orphan_thumbnails_removed
        )


def reconcile(
    *,
    services: Services,
    dead_letter_limit: int = 100,
    never_queued_grace: float = NEVER_QUEUED_GRACE,
    thumbnail_grace: float = ORPHAN_THUMBNAIL_GRACE,
) -> ReconcileReport:
    """One sweep (see the module docstring). Raises ``LabelkitError``/``SQLAlchemyError``
    when the database, queue or store cannot be reached; the caller tries again later."""
    settings = services.settings
    report = ReconcileReport()
    max_receives = settings.queue_max_receives
    reason = dead_letter_reason(max_receives)

    # 1. dead letters
    for message in services.queue.dead_letters(limit=dead_letter_limit):
        try:
            # Another bucket's event is not about our images, even where a key matches one.
            bucket = event_bucket(services.store)
            keys = [
                services.store.relative_key(event.key)
                for event in parse_s3_event(message.body)
                if event.bucket == bucket
            ]
        except (MalformedEvent, StorageError):
            continue  # not ours to judge: it stays in the dead-letter list for a person
        with transaction(services.engine) as s:
            for key in keys:
                image = worker_q.get_image_by_key_for_worker(session=s, object_key=key)
                if image is not None and worker_q.fail_unfinished_for_worker(
                    session=s, image_id=image.id, reason=reason
                ):
                    report.dead_lettered_failed += 1

    # 2. exhausted: its last delivery's visibility ran out twice over, so none will follow
    with transaction(services.engine) as s:
        for image_id in worker_q.exhausted_for_worker(
            session=s, max_attempts=max_receives, older_than_seconds=2 * settings.queue_visibility_timeout
        ):
            if worker_q.fail_unfinished_for_worker(session=s, image_id=image_id, reason=reason):
                report.exhausted_failed += 1

    # 3. never queued
    with transaction(services.engine) as s:
        stranded = worker_q.never_queued_for_worker(session=s, older_than_seconds=never_queued_grace)
    for stray in stranded:
        if services.store.exists(stray.object_key):
            try:
                hand_to_queue(services=services, image_id=stray.id, key=stray.object_key, size=stray.bytes)
            except LabelkitError:
                logger.warning("could not enqueue stranded image %s", stray.id, exc_info=True)
                continue
            report.requeued += 1
        else:
            with transaction(services.engine) as s:
                if worker_q.fail_unfinished_for_worker(session=s, image_id=stray.id, reason=NEVER_STORED):
                    report.never_stored_failed += 1

    # 4. leftovers of interrupted writes
    report.temp_files_removed = services.store.remove_stale_partials(older_than_seconds=TEMP_FILE_AGE)

    # 5. thumbnails whose photo is gone
    where = repr(services.store)
    try:
        report.orphan_thumbnails_removed, _sweep_from[where] = sweep_orphan_thumbnails(
            services=services, grace=thumbnail_grace, after=_sweep_from.get(where, "")
        )
    except StorageError:
        logger.warning(
            "could not sweep thumbnails whose photo is gone; the next sweep tries again", exc_info=True
        )

    if report.changed:
        logger.info(
            "reconciled: %d dead-lettered and %d exhausted images failed, %d stranded uploads "
            "enqueued, %d never stored failed, %d temporary files removed, %d thumbnails of "
            "deleted photos removed",
            report.dead_lettered_failed,
            report.exhausted_failed,
            report.requeued,
            report.never_stored_failed,
            report.temp_files_removed,
            report.orphan_thumbnails_removed,
        )
    return report


def sweep_orphan_thumbnails(
    *,
    services: Services,
    grace: float = ORPHAN_THUMBNAIL_GRACE,
    after: str = "",
    limit: int = THUMBNAIL_SWEEP_LIMIT,
    page: int = THUMBNAIL_SWEEP_PAGE,
) -> tuple[int, str]:
    """Delete the thumbnails written more than ``grace`` seconds ago whose photo has no image
    row, looking at up to ``limit`` of them after the key ``after``, ``page`` at a time.
    Returns how many were deleted and where the next sweep goes on ('' once the listing
    ended: the next starts at the beginning). Raises ``StorageError`` (what was deleted
    stays deleted)."""
    cutoff = time.time() - grace
    removed = looked = 0
    while looked < limit:
        asked = min(page, limit - looked)
        listed = services.store.list_objects(THUMBS_PREFIX, after=after, limit=asked)
        looked += len(listed)
        # Not a photo's thumbnail by its name (``photo_key_of`` is None): not ours to judge.
        old = {o.key: photo for o in listed if o.modified < cutoff and (photo := photo_key_of(o.key))}
        if old:
            with transaction(services.engine) as s:
                alive = thumb_q.existing_object_keys_for_worker(session=s, object_keys=old.values())
            for thumb, photo in old.items():
                if photo not in alive:
                    services.store.delete(thumb)
                    removed += 1
        if len(listed) < asked:
            return removed, ""
        after = listed[-1].key
    return removed, after
