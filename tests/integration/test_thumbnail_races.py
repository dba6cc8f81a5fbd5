"""No thumbnail outlives its photo (issue 25, finding 5), on SQLite and MariaDB.

The owner deletes a photo while the worker labels it. Each test stages one interleaving of
the worker (fetch, label, store the thumbnail, record it with the labels) and the delete
(object, rows, thumbnail) deterministically: a store that runs the other side at a chosen
call, or two threads handing over with events. No sleeps; every wait has a deadline.
The interleavings themselves are listed in :mod:`labelkit.pipeline`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageFeatureRow, LabelRow
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.errors import StorageError
from labelkit.pipeline import Outcome, RetryableError
from labelkit.queue.events import make_s3_event
from labelkit.reconcile import reconcile
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings
from labelkit.storage import event_bucket
from labelkit.storage.local import LocalStore
from labelkit.uploads import delete_image, upload_image
from tests.integration.test_pipeline import jpeg

DEADLINE = 120.0  # seconds a side waits for the other on a busy machine before the test fails
DELETED = "deleted while it was being labelled"

Hook = Callable[[str], None]


class HookedStore(LocalStore):
    """The same folder as the real store; runs ``before_put`` / ``after_delete`` (once each)
    with the key when a thumbnail is stored / deleted, and fails thumbnail deletes if asked."""

    def __init__(
        self,
        root: Path,
        *,
        before_put: Hook | None = None,
        after_delete: Hook | None = None,
        fail_thumbnail_deletes: bool = False,
    ) -> None:
        super().__init__(root)
        self.before_put, self.after_delete = before_put, after_delete
        self.fail_thumbnail_deletes = fail_thumbnail_deletes

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        if key.startswith("thumbs/") and self.before_put is not None:
            hook, self.before_put = self.before_put, None
            hook(key)
        super().put(key, data, content_type=content_type)

    def delete(self, key: str) -> None:
        if key.startswith("thumbs/") and self.fail_thumbnail_deletes:
            raise StorageError(f"cannot delete {key!r}: the store is failing (staged)")
        super().delete(key)
        if key.startswith("thumbs/") and self.after_delete is not None:
            hook, self.after_delete = self.after_delete, None
            hook(key)


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


@pytest.fixture
def alice(services: Services) -> Viewer:
    with transaction(services.engine) as s:
        return Viewer(user_id=user_q.create_user(session=s, username="alice", password_hash="x").id)


def _root(services: Services) -> Path:
    assert isinstance(services.store, LocalStore)
    return services.store.root


def _upload(services: Services, owner: Viewer) -> tuple[str, str]:
    result = upload_image(
        services=services, owner_id=owner.user_id, filename="cat.jpg", data=jpeg((200, 40, 40))
    )
    assert result.image_id, result
    with transaction(services.engine) as s:
        key = s.scalar(select(Image.object_key).where(Image.id == result.image_id))
    assert key
    return result.image_id, key


def _label(services: Services, store: LocalStore, key: str) -> list[Outcome]:
    """The worker handles the image's job with ``store``; a retry is an outcome too (the
    message would come back)."""
    pipeline = build_pipeline(dataclasses.replace(services, store=store))
    event = make_s3_event(bucket=event_bucket(store), key=store.full_key(key), size=1)
    try:
        return pipeline.handle_message(event)
    except RetryableError as e:
        return [e.outcome]


def _thumbnails(services: Services) -> list[str]:
    """Every file under the store's thumbs/ folder, read from the disk itself."""
    folder = _root(services) / "thumbs"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _rows(services: Services, image_id: str) -> tuple[int, int, int]:
    """How many image, label and feature rows the image has."""
    with transaction(services.engine) as s:
        return tuple(  # type: ignore[return-value]
            int(s.scalar(select(func.count()).select_from(t).where(col == image_id)) or 0)
            for t, col in (
                (Image, Image.id),
                (LabelRow, LabelRow.image_id),
                (ImageFeatureRow, ImageFeatureRow.image_id),
            )
        )


def test_a_photo_deleted_while_the_worker_labels_it_leaves_no_thumbnail(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a photo the worker has fetched and labelled, about to store its thumbnail
    image_id, key = _upload(services, alice)

    def owner_deletes(_thumb: str) -> None:
        # WHEN the owner deletes the photo just then (the whole delete runs to its end)
        delete_image(services=services, viewer=alice, image_id=image_id)

    outcomes = _label(services, HookedStore(_root(services), before_put=owner_deletes), key)
    # THEN no thumbnail is left, and no row of the image
    assert _thumbnails(services) == []
    assert _rows(services, image_id) == (0, 0, 0)
    # AND the worker says why it wrote nothing (the job is done: no retry)
    assert [(o.status, o.reason) for o in outcomes] == [("skipped", f"the image was {DELETED}")]


def test_a_thumbnail_stored_between_the_deletes_steps_is_removed(services: Services, alice: Viewer) -> None:
    # GIVEN the worker labelling a photo, held just before it stores the thumbnail
    image_id, key = _upload(services, alice)
    at_put, may_put = threading.Event(), threading.Event()
    done: dict[str, object] = {}

    def wait_for_turn(_thumb: str) -> None:
        at_put.set()
        if not may_put.wait(DEADLINE):
            raise AssertionError("the delete never reached its thumbnail")

    def work() -> None:
        try:
            done["outcomes"] = _label(services, HookedStore(_root(services), before_put=wait_for_turn), key)
        except BaseException as e:  # reported by the main thread
            done["error"] = e

    worker = threading.Thread(target=work, name="worker")
    worker.start()
    assert at_put.wait(DEADLINE), "the worker never reached its thumbnail"

    def worker_finishes(_thumb: str) -> None:
        # ... and the worker stores and records its thumbnail right after the delete removed
        # the thumbnail key: the one moment the delete cannot see what the worker stores.
        may_put.set()
        worker.join(DEADLINE)
        assert not worker.is_alive(), "the worker did not finish"

    # WHEN the owner deletes the photo, the worker going on once the thumbnail is deleted
    deleting = dataclasses.replace(services, store=HookedStore(_root(services), after_delete=worker_finishes))
    delete_image(services=deleting, viewer=alice, image_id=image_id)
    worker.join(DEADLINE)
    assert "error" not in done, done
    # THEN no thumbnail is left, and no row of the image
    assert _thumbnails(services) == []
    assert _rows(services, image_id) == (0, 0, 0)
    outcomes = done["outcomes"]
    assert isinstance(outcomes, list) and [o.status for o in outcomes] == ["skipped"]


def test_a_photo_deleted_after_the_worker_recorded_its_thumbnail_takes_it_along(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a labelled photo with its thumbnail recorded
    image_id, key = _upload(services, alice)
    assert [o.status for o in _label(services, HookedStore(_root(services)), key)] == ["labelled"]
    assert _thumbnails(services) == [f"{key}.jpg"]
    # WHEN the owner deletes it THEN the thumbnail goes with it
    delete_image(services=services, viewer=alice, image_id=image_id)
    assert _thumbnails(services) == []
    assert _rows(services, image_id) == (0, 0, 0)


def test_a_thumbnail_the_worker_could_not_remove_is_swept_by_the_reconciler(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a photo deleted while labelled, its thumbnail undeletable at that moment
    image_id, key = _upload(services, alice)

    def owner_deletes(_thumb: str) -> None:
        delete_image(services=services, viewer=alice, image_id=image_id)

    failing = HookedStore(_root(services), before_put=owner_deletes, fail_thumbnail_deletes=True)
    assert [o.status for o in _label(services, failing, key)] == ["skipped"]
    assert _thumbnails(services) == [f"{key}.jpg"]  # left behind, its photo gone
    # WHEN the reconciler sweeps, the thumbnail older than the grace period (an hour)
    assert reconcile(services=services).orphan_thumbnails_removed == 0  # a fresh one is left alone
    report = reconcile(services=services, thumbnail_grace=0)
    # THEN it is removed, and counted
    assert report.orphan_thumbnails_removed == 1
    assert _thumbnails(services) == []
