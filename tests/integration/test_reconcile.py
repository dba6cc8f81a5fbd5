"""No image waits forever (issue 15, "stuck forever"), on SQLite and MariaDB.

Each test builds the stuck state the way a crash leaves it (a worker that never
finished any delivery, a dashboard killed between writing the row and storing or
enqueueing, a file lost from the store, a temporary file of a killed write) and
checks that :func:`labelkit.reconcile.reconcile` and the upload path settle it:
the image ends labelled, or failed with a reason a person can act on.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import update

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, utcnow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Viewer
from labelkit.features import thumbnail_key
from labelkit.reconcile import NEVER_STORED, reconcile
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.storage import ObjectStore
from labelkit.storage.local import LocalStore
from labelkit.storage.s3 import S3Store
from labelkit.testing.clock import ManualClock
from labelkit.uploads import retry_image, upload_image
from tests.integration import aws_fixtures
from tests.integration.aws_fixtures import REGION
from tests.integration.test_pipeline import drain, jpeg, with_clocked_queue

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from labelkit.storage import StoredObject

# Shared moto fixtures (assigned, not imported, so they read as module fixtures).
aws = aws_fixtures.aws
s3_client = aws_fixtures.s3_client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def services(settings: Settings, clock: ManualClock) -> Services:
    # Visibility 1 s on a clock the test moves: "its last delivery has long run out" is
    # clock.advance, not a wait.
    services = build_services(settings.model_copy(update={"queue_visibility_timeout": 1}))
    return with_clocked_queue(services, clock, visibility_timeout=1)


@pytest.fixture
def alice(services: Services) -> Viewer:
    with transaction(services.engine) as s:
        return Viewer(user_id=user_q.create_user(session=s, username="alice", password_hash="x").id)


def _status(services: Services, viewer: Viewer, image_id: str) -> tuple[ImageStatus, str | None]:
    with transaction(services.engine) as s:
        image = image_q.get_image(session=s, viewer=viewer, image_id=image_id)
        return image.status, image.failure_reason


def _deliveries_that_die(services: Services, clock: ManualClock, image_id: str) -> None:
    """Every allowed delivery is received and claimed, then the worker dies (no delete,
    no failure recorded): what an out-of-memory kill on each attempt leaves behind."""
    max_receives = services.settings.queue_max_receives
    for _ in range(max_receives):
        assert services.queue.receive(), "the message did not come back"
        with transaction(services.engine) as s:
            worker_q.mark_labelling(session=s, image_id=image_id)
        clock.advance(1.5)  # the delivery's visibility timeout runs out
    # The next receive finds it out of deliveries and dead-letters it.
    assert services.queue.receive() == []
    assert services.queue.stats().dead == 1, "the message was not dead-lettered"


def _long_ago(services: Services, image_id: str, seconds: float) -> None:
    """Move the image's last write ``seconds`` into the past: the database's side of time
    passing (the reconciler compares rows with the database clock, the queue with its own)."""
    with transaction(services.engine) as s:
        s.execute(
            update(Image).where(Image.id == image_id).values(updated_at=utcnow() - timedelta(seconds=seconds))
        )


def test_an_image_whose_worker_died_on_every_delivery_fails_with_a_reason(
    services: Services, clock: ManualClock, alice: Viewer
) -> None:
    # GIVEN an image whose every delivery ended with the worker killed
    result = upload_image(
        services=services, owner_id=alice.user_id, filename="lethal.jpg", data=jpeg((200, 0, 0))
    )
    assert result.image_id
    _deliveries_that_die(services, clock, result.image_id)
    assert _status(services, alice, result.image_id)[0] == ImageStatus.LABELLING  # stuck, before
    # WHEN the reconciler runs
    report = reconcile(services=services)
    # THEN the image is failed with a reason, and only once
    status, reason = _status(services, alice, result.image_id)
    assert status == ImageStatus.FAILED
    assert reason and "did not finish in 3 attempts" in reason and "Retry" in reason
    assert report.dead_lettered_failed == 1
    assert reconcile(services=services).changed == 0
    # AND Retry relabels it once the cause is gone
    retry_image(services=services, viewer=alice, image_id=result.image_id)
    drain(services)
    assert _status(services, alice, result.image_id)[0] == ImageStatus.LABELLED


def test_exhausted_attempts_fail_the_image_even_without_the_dead_letter(
    services: Services, clock: ManualClock, alice: Viewer
) -> None:
    # GIVEN an image stuck labelling after its last attempt, its dead letter gone
    # (an SQS dead-letter queue cannot be listed in full; a person purged it)
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=jpeg((0, 200, 0)))
    assert result.image_id
    _deliveries_that_die(services, clock, result.image_id)
    services.queue.purge_matching(result.image_id)
    _long_ago(services, result.image_id, 2.1)  # past twice the 1 s visibility timeout of its last delivery
    # WHEN the reconciler runs THEN it fails the image from its row alone
    assert reconcile(services=services).exhausted_failed == 1
    assert _status(services, alice, result.image_id)[0] == ImageStatus.FAILED


def test_a_running_job_is_left_alone(services: Services, alice: Viewer) -> None:
    # GIVEN an image being labelled right now (first attempt, message in flight)
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=jpeg((0, 0, 200)))
    assert result.image_id
    [_message] = services.queue.receive()
    with transaction(services.engine) as s:
        worker_q.mark_labelling(session=s, image_id=result.image_id)
    # WHEN the reconciler runs THEN nothing changes
    assert reconcile(services=services, never_queued_grace=0).changed == 0
    assert _status(services, alice, result.image_id)[0] == ImageStatus.LABELLING


def test_a_labelled_image_is_never_failed_by_its_old_dead_letter(
    services: Services, clock: ManualClock, alice: Viewer
) -> None:
    # GIVEN a dead letter whose image was labelled meanwhile (another copy of its job won)
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=jpeg((90, 90, 0)))
    assert result.image_id
    _deliveries_that_die(services, clock, result.image_id)
    services.queue.send(services.queue.dead_letters()[0].body)
    drain(services)
    assert _status(services, alice, result.image_id)[0] == ImageStatus.LABELLED
    # WHEN the reconciler runs THEN the result stands
    reconcile(services=services)
    assert _status(services, alice, result.image_id)[0] == ImageStatus.LABELLED


def _row_only(services: Services, owner: Viewer, data: bytes, *, store: bool) -> str:
    """What a dashboard killed mid-upload leaves: the row, maybe the object, never the job."""
    from labelkit.images import inspect_image

    info = inspect_image(data, max_bytes=10**8, max_pixels=10**8)
    with transaction(services.engine) as s:
        image = image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name="half.jpg",
            content_type=info.content_type,
            extension=info.extension,
            size_bytes=info.size_bytes,
            width=info.width,
            height=info.height,
            sha256=info.sha256,
        )
        image_id, key = image.id, image.object_key
    if store:
        services.store.put(key, data, content_type=info.content_type)
    return image_id


def test_an_upload_killed_after_storing_is_enqueued_and_labelled(services: Services, alice: Viewer) -> None:
    # GIVEN a row and its stored object, but no job (killed before enqueueing)
    image_id = _row_only(services, alice, jpeg((10, 200, 30)), store=True)
    assert services.queue.stats().visible == 0
    # WHEN the reconciler runs after the grace period THEN the job is enqueued and labelled
    assert reconcile(services=services, never_queued_grace=0).requeued == 1
    drain(services)
    assert _status(services, alice, image_id)[0] == ImageStatus.LABELLED
    # AND it is not enqueued again by later sweeps
    assert reconcile(services=services, never_queued_grace=0).changed == 0


def test_an_upload_in_progress_is_not_touched_within_the_grace_period(
    services: Services, alice: Viewer
) -> None:
    image_id = _row_only(services, alice, jpeg((10, 20, 230)), store=False)
    assert reconcile(services=services).changed == 0  # default grace: 120 s
    assert _status(services, alice, image_id)[0] == ImageStatus.PENDING


def test_an_upload_killed_before_storing_fails_and_uploading_again_restores_it(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a row whose object was never stored (killed between the row and the store)
    data = jpeg((220, 220, 20))
    image_id = _row_only(services, alice, data, store=False)
    # WHEN the reconciler runs THEN the image fails with "upload it again"
    assert reconcile(services=services, never_queued_grace=0).never_stored_failed == 1
    assert _status(services, alice, image_id) == (ImageStatus.FAILED, NEVER_STORED)
    # WHEN the same file is uploaded again THEN it is not refused as a duplicate: the image is restored
    again = upload_image(services=services, owner_id=alice.user_id, filename="half.jpg", data=data)
    assert (again.outcome, again.image_id) == ("accepted", image_id)
    drain(services)
    assert _status(services, alice, image_id)[0] == ImageStatus.LABELLED


def test_a_stored_file_gone_missing_is_restored_by_uploading_it_again(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a labelled image whose stored file went missing
    data = jpeg((30, 60, 90))
    first = upload_image(services=services, owner_id=alice.user_id, filename="lost.jpg", data=data)
    assert first.image_id
    drain(services)
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=alice, image_id=first.image_id).object_key
    services.store.delete(key)
    # WHEN it is uploaded again THEN it is accepted, stored again and relabelled
    again = upload_image(services=services, owner_id=alice.user_id, filename="lost.jpg", data=data)
    assert (again.outcome, again.image_id) == ("accepted", first.image_id)
    assert services.store.exists(key)
    drain(services)
    assert _status(services, alice, first.image_id)[0] == ImageStatus.LABELLED
    # AND a file that is still stored is a duplicate as before
    third = upload_image(services=services, owner_id=alice.user_id, filename="lost.jpg", data=data)
    assert third.outcome == "duplicate"


def test_leftover_temporary_files_are_removed(services: Services) -> None:
    store = services.store
    assert isinstance(store, LocalStore)
    folder = store.root / "users" / "someone"
    folder.mkdir(parents=True)
    old, fresh = folder / ".tmp-abc.part", folder / ".tmp-def.part"
    old.write_bytes(b"half a photo")
    fresh.write_bytes(b"a write in progress")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert reconcile(services=services).temp_files_removed == 1
    assert not old.exists() and fresh.exists()


def _break_store_path(store: LocalStore, key: str) -> None:
    """Make ``key`` unreadable and undeletable for the store: a symlink loop (ELOOP)."""
    path = store.root.joinpath(*key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.symlink(path.name, path)


def test_a_delete_while_storage_fails_changes_nothing(services: Services, alice: Viewer) -> None:
    from labelkit.errors import StorageError
    from labelkit.uploads import delete_image

    # GIVEN an image whose stored object cannot be deleted right now
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=jpeg((5, 5, 5)))
    assert result.image_id
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=alice, image_id=result.image_id).object_key
    store = services.store
    assert isinstance(store, LocalStore)
    _break_store_path(store, key)
    # WHEN the owner deletes it THEN the error says so and the row is still there (no orphan object)
    with pytest.raises(StorageError):
        delete_image(services=services, viewer=alice, image_id=result.image_id)
    assert _status(services, alice, result.image_id)[0] in (ImageStatus.PENDING, ImageStatus.LABELLED)
    # AND once storage works again the delete goes through everywhere
    (store.root.joinpath(*key.split("/"))).unlink()
    delete_image(services=services, viewer=alice, image_id=result.image_id)
    assert services.queue.stats() == type(services.queue.stats())(0, 0, 0)


def test_an_upload_the_store_refuses_says_so_without_server_paths(services: Services, alice: Viewer) -> None:
    from labelkit.uploads import STORE_FAILED

    store = services.store
    assert isinstance(store, LocalStore)
    # GIVEN a store whose folder for this user cannot be created (a file is in the way)
    (store.root / "users").mkdir(parents=True, exist_ok=True)
    (store.root / "users" / alice.user_id).write_text("in the way")
    # WHEN a photo is uploaded THEN it is refused with a short reason, nothing is left behind
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=jpeg((9, 9, 9)))
    assert (result.outcome, result.reason) == ("rejected", STORE_FAILED)
    assert str(store.root) not in (result.reason or "")
    with transaction(services.engine) as s:
        assert image_q.list_images(session=s, viewer=alice).total == 0


# --------------------------------------------------------------------------- thumbnails of deleted photos


def _leave_thumbnail(store: ObjectStore, owner: Viewer, *, hours_ago: float = 0) -> str:
    """What a worker or the dashboard leaves when it cannot delete the thumbnail it stored for
    a photo deleted meanwhile: ``thumbs/<object key>.jpg`` with no image row."""
    thumb = thumbnail_key(f"users/{owner.user_id}/{uuid.uuid4().hex}.jpg")
    store.put(thumb, b"\xff\xd8thumbnail", content_type="image/jpeg")
    if hours_ago:
        assert isinstance(store, LocalStore)
        then = time.time() - hours_ago * 3600
        os.utime(store.path(thumb), (then, then))
    return thumb


def _labelled(services: Services, owner: Viewer) -> str:
    """A labelled photo's stored thumbnail key."""
    result = upload_image(
        services=services, owner_id=owner.user_id, filename="kept.jpg", data=jpeg((1, 99, 9))
    )
    assert result.image_id
    drain(services)
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=owner, image_id=result.image_id).object_key
    assert services.store.exists(thumbnail_key(key))
    return thumbnail_key(key)


def test_thumbnails_whose_photo_is_gone_are_swept_after_a_grace_period(
    services: Services, alice: Viewer
) -> None:
    store = services.store
    assert isinstance(store, LocalStore)
    # GIVEN a labelled photo whose thumbnail was written long ago
    kept = _labelled(services, alice)
    then = time.time() - 7200
    os.utime(store.path(kept), (then, then))
    # AND thumbnails of deleted photos: two written two hours ago, one a moment ago
    old = {_leave_thumbnail(store, alice, hours_ago=2) for _ in range(2)}
    fresh = _leave_thumbnail(store, alice)
    # AND an old file under thumbs/ that is no photo's thumbnail by its name
    store.put("thumbs/README.txt", b"not a thumbnail", content_type="text/plain")
    os.utime(store.path("thumbs/README.txt"), (then, then))
    # WHEN the reconciler runs (grace: an hour)
    report = reconcile(services=services)
    # THEN the two old thumbnails of deleted photos are removed, nothing else, and counted
    assert not any(store.exists(t) for t in old)
    assert store.exists(kept) and store.exists(fresh) and store.exists("thumbs/README.txt")
    assert report.orphan_thumbnails_removed == 2 and report.changed == 2
    # AND the next sweep finds nothing more
    assert reconcile(services=services).changed == 0


def test_the_thumbnail_sweep_goes_in_bounded_pages_and_goes_on_where_it_stopped(
    services: Services, alice: Viewer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelkit.reconcile import sweep_orphan_thumbnails

    # GIVEN seven thumbnails of deleted photos and one of a labelled photo
    kept = _labelled(services, alice)
    orphans = {_leave_thumbnail(services.store, alice) for _ in range(7)}
    pages: list[int] = []
    real = services.store.list_objects

    def listed(prefix: str, *, after: str = "", limit: int = 1000) -> list[StoredObject]:
        found = real(prefix, after=after, limit=limit)
        pages.append(len(found))
        return found

    store = services.store
    monkeypatch.setattr(store, "list_objects", listed)  # this store only
    # WHEN a sweep may look at 5 thumbnails, 2 at a time
    removed, cursor = sweep_orphan_thumbnails(services=services, grace=0, limit=5, page=2)
    # THEN it looked at 5 in pages of at most 2 and stopped at the fifth key
    assert pages == [2, 2, 1] and cursor
    assert removed == sum(1 for t in orphans if t <= cursor)
    # WHEN the next sweep goes on from there THEN it finishes the listing and says so
    removed_next, cursor_next = sweep_orphan_thumbnails(services=services, grace=0, after=cursor, page=2)
    assert (removed + removed_next, cursor_next) == (7, "")
    assert not any(store.exists(t) for t in orphans) and store.exists(kept)


@pytest.mark.aws
def test_on_s3_thumbnails_whose_photo_is_gone_are_swept(
    services: Services, alice: Viewer, s3_client: S3Client
) -> None:
    # GIVEN the services over an S3 bucket under a prefix (moto)
    s3_client.create_bucket(Bucket="labelkit-thumbs")
    store = S3Store("labelkit-thumbs", prefix="site", region=REGION, client=s3_client)
    services = dataclasses.replace(services, store=store)
    # AND a labelled photo, and three thumbnails of deleted photos
    kept = _labelled(services, alice)
    orphans = {_leave_thumbnail(store, alice) for _ in range(3)}
    # WHEN the reconciler runs THEN thumbnails written a moment ago are left alone (grace: an hour)
    assert reconcile(services=services).orphan_thumbnails_removed == 0
    # WHEN it runs with no grace THEN the thumbnails of deleted photos go, the labelled photo's stays
    assert reconcile(services=services, thumbnail_grace=0).orphan_thumbnails_removed == 3
    listed = s3_client.list_objects_v2(Bucket="labelkit-thumbs", Prefix="site/thumbs/")
    assert [o["Key"] for o in listed["Contents"]] == [f"site/{kept}"]
    assert not any(store.exists(t) for t in orphans)
