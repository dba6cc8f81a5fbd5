"""Upload -> local queue -> listener -> pipeline -> labels, on SQLite and MariaDB.

Uses the deterministic FakeLabeler (the real model has its own tests in
tests/model); everything else is real: intake, LocalStore, LocalQueue,
the Alembic-migrated database, the listener's worker threads.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus, LabelRow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.domain import LabelResult, Viewer
from labelkit.errors import LabelerError
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.fake import FakeLabeler
from labelkit.pipeline import Pipeline, RetryableError
from labelkit.queue import QueueStats
from labelkit.queue.events import make_s3_event
from labelkit.queue.local import LocalQueue
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings
from labelkit.testing.clock import ManualClock
from labelkit.uploads import delete_image, retry_image, upload_image
from labelkit.worker import Listener


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = color
    arr[::7, ::5] = 255 - np.array(color, dtype=np.uint8)  # some texture, so files differ by colour
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


@pytest.fixture
def alice(services: Services) -> Viewer:
    with transaction(services.engine) as s:
        user = user_q.create_user(session=s, username="alice", password_hash="x")
        return Viewer(user_id=user.id, is_admin=False)


def with_clocked_queue(services: Services, clock: ManualClock, *, visibility_timeout: int = 1) -> Services:
    """``services`` whose local queue reads ``clock``: a test moves time past a visibility
    timeout with ``clock.advance`` instead of sleeping it out. Same queue, same messages."""
    queue = LocalQueue(
        services.engine,
        name=services.settings.queue_name,
        visibility_timeout=visibility_timeout,
        max_receives=services.settings.queue_max_receives,
        clock=clock,
    )
    return dataclasses.replace(services, queue=queue)


def drain(services: Services, pipeline: Pipeline | None = None, workers: int = 2) -> None:
    listener = Listener(
        queue=services.queue,
        pipeline=pipeline or build_pipeline(services),
        workers=workers,
        wait_seconds=0,
        visibility_timeout=services.settings.queue_visibility_timeout,
    )
    listener.run(threading.Event(), drain=True)


def image_row(services: Services, viewer: Viewer, image_id: str) -> tuple[ImageStatus, str | None, int]:
    with transaction(services.engine) as s:
        img = image_q.get_image(session=s, viewer=viewer, image_id=image_id)
        return img.status, img.failure_reason, img.attempts


def test_uploads_end_labelled_with_boxes_and_parents(services: Services, alice: Viewer) -> None:
    # GIVEN three uploaded photos
    results = [
        upload_image(services=services, owner_id=alice.user_id, filename=f"{n}.jpg", data=jpeg(c))
        for n, c in (("red", (220, 10, 10)), ("green", (10, 200, 10)), ("blue", (10, 10, 230)))
    ]
    assert [r.outcome for r in results] == ["accepted"] * 3
    assert services.queue.stats().visible == 3
    # WHEN the listener drains the queue
    drain(services)
    # THEN every image is labelled, the queue is empty, and labels carry parents and boxes
    with transaction(services.engine) as s:
        page = image_q.list_images(session=s, viewer=alice)
        names = {
            i.original_name: {
                r.name for r in label_q.labels_for_image(session=s, viewer=alice, image_id=i.id)
            }
            for i in page.items
        }
        animal_like = image_q.list_images(
            session=s, viewer=alice, flt=image_q.ImageFilter(label="Thing")
        ).total
    assert {i.status for i in page.items} == {ImageStatus.LABELLED}
    assert names == {
        "red.jpg": {"Red Thing", "Thing"},
        "green.jpg": {"Green Thing", "Thing"},
        "blue.jpg": {"Blue Thing", "Thing"},
    }
    assert animal_like == 3
    stats = services.queue.stats()
    assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)


def test_duplicate_upload_is_flagged_not_stored_twice(services: Services, alice: Viewer) -> None:
    data = jpeg((200, 30, 30))
    first = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=data)
    again = upload_image(services=services, owner_id=alice.user_id, filename="copy.jpg", data=data)
    assert (first.outcome, again.outcome) == ("accepted", "duplicate")
    assert again.image_id == first.image_id and "a.jpg" in (again.reason or "")
    assert services.queue.stats().visible == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, I am text pretending to be a photo", "Not an image"),
        (jpeg((1, 2, 3))[:200], "damaged"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_written(
    services: Services, alice: Viewer, data: bytes, reason: str
) -> None:
    result = upload_image(services=services, owner_id=alice.user_id, filename="x.jpg", data=data)
    assert result.outcome == "rejected" and reason.lower() in (result.reason or "").lower()
    with transaction(services.engine) as s:
        assert image_q.list_images(session=s, viewer=alice).total == 0
    assert services.queue.stats().visible == 0
    assert not any((services.settings.data_dir / "images").rglob("*.jpg"))


def test_redelivery_writes_nothing_new(services: Services, alice: Viewer) -> None:
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((200, 0, 0)))
    pipeline = build_pipeline(services)
    body = services.queue.receive(max_messages=1)[0].body
    pipeline.handle_message(body)
    with transaction(services.engine) as s:
        before = s.execute(select(LabelRow.id, LabelRow.name).order_by(LabelRow.id)).all()
    outcomes = pipeline.handle_message(body, receive_count=2)
    with transaction(services.engine) as s:
        after = s.execute(select(LabelRow.id, LabelRow.name).order_by(LabelRow.id)).all()
    assert outcomes[0].status == "skipped" and outcomes[0].reason == "already labelled"
    assert before == after and len(before) == 3
    assert image_row(services, alice, up.image_id or "")[0] == ImageStatus.LABELLED


def test_a_file_that_is_not_an_image_fails_at_once_with_a_reason(services: Services, alice: Viewer) -> None:
    # GIVEN an accepted upload whose stored object was later replaced by garbage
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((0, 0, 200)))
    assert up.image_id
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=alice, image_id=up.image_id).object_key
    services.store.put(key, b"%PDF-1.4 not a photo", content_type="image/jpeg")
    # WHEN the worker handles it
    drain(services)
    # THEN it is failed with a reason a person understands, and the message is gone (no retries)
    status, reason, attempts = image_row(services, alice, up.image_id)
    assert status == ImageStatus.FAILED and "PDF" in (reason or "")
    assert attempts == 1
    stats = services.queue.stats()
    assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)


class FlakyLabeler:
    """Fails ``failures`` times, then behaves like the fake labeller."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inner = FakeLabeler()

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        if self.failures > 0:
            self.failures -= 1
            raise LabelerError("the model crashed")
        return self.inner.label(image, options)


def _pipeline(services: Services, labeler: FlakyLabeler) -> Pipeline:
    return Pipeline(
        engine=services.engine,
        store=services.store,
        labelers=[labeler],
        options=LabelOptions(),
        max_receives=services.settings.queue_max_receives,
    )


def test_transient_failure_is_retried_then_labelled(services: Services, alice: Viewer) -> None:
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((200, 0, 0)))
    pipeline = _pipeline(services, FlakyLabeler(failures=1))
    msg = services.queue.receive(max_messages=1)[0]
    with pytest.raises(RetryableError):
        pipeline.handle_message(msg.body, receive_count=msg.receive_count)
    assert image_row(services, alice, up.image_id or "")[0] == ImageStatus.LABELLING
    outcome = pipeline.handle_message(msg.body, receive_count=2)[0]
    assert outcome.status == "labelled"
    assert image_row(services, alice, up.image_id or "")[:2] == (ImageStatus.LABELLED, None)


def test_poison_message_ends_failed_and_dead_lettered_then_retry_relabels(
    services: Services, alice: Viewer
) -> None:
    # GIVEN a labeller that always fails and a queue that allows 3 deliveries
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((0, 200, 0)))
    assert up.image_id
    clock = ManualClock()
    services = with_clocked_queue(services, clock, visibility_timeout=1)
    always_failing = _pipeline(services, FlakyLabeler(failures=10**6))
    # WHEN it is delivered until the queue gives up (each failed delivery's visibility runs out)
    for expected in range(1, 4):
        msgs = services.queue.receive(max_messages=1)
        assert msgs and msgs[0].receive_count == expected
        with pytest.raises(RetryableError):
            always_failing.handle_message(msgs[0].body, receive_count=msgs[0].receive_count)
        clock.advance(1.5)
    assert services.queue.receive(max_messages=1) == []
    # THEN the image is failed with the reason, and the message sits in the dead-letter queue
    status, reason, attempts = image_row(services, alice, up.image_id)
    assert (
        status == ImageStatus.FAILED and "after 3 attempts" in (reason or "") and "crashed" in (reason or "")
    )
    assert attempts == 3
    assert services.queue.stats().dead == 1
    # AND a retry from the dashboard relabels it once the cause is fixed
    retry_image(services=services, viewer=alice, image_id=up.image_id)
    assert services.queue.stats().dead == 0 and services.queue.stats().visible == 1
    drain(services, pipeline=_pipeline(services, FlakyLabeler(failures=0)))
    assert image_row(services, alice, up.image_id)[0] == ImageStatus.LABELLED


def test_delete_leaves_nothing_behind(services: Services, alice: Viewer) -> None:
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((9, 9, 200)))
    assert up.image_id
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=alice, image_id=up.image_id).object_key
    delete_image(services=services, viewer=alice, image_id=up.image_id)
    assert not services.store.exists(key)
    assert services.queue.stats().visible == 0
    with transaction(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(LabelRow)) == 0
        assert image_q.list_images(session=s, viewer=alice).total == 0


def test_message_for_an_unknown_key_is_skipped(services: Services) -> None:
    body = make_s3_event(bucket="local", key="users/x/nope.jpg", size=10)
    outcome = build_pipeline(services).handle_message(body)
    assert outcome[0].status == "skipped"


def _refusals(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        r.labelkit  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "labelkit.pipeline" and r.levelno == logging.WARNING and hasattr(r, "labelkit")
    ]


def test_an_event_naming_another_bucket_labels_nothing_and_is_acknowledged(
    services: Services, alice: Viewer, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a Labelkit upload, and an event about the same key in another bucket
    # (the upload's own job is removed, so only the stray event is left)
    up = upload_image(services=services, owner_id=alice.user_id, filename="a.jpg", data=jpeg((9, 200, 9)))
    assert up.image_id
    with transaction(services.engine) as s:
        key = image_q.get_image(session=s, viewer=alice, image_id=up.image_id).object_key
    assert services.queue.purge_matching(up.image_id) == 1
    services.queue.send(make_s3_event(bucket="someone-elses-bucket", key=key, size=10))

    # WHEN the listener drains the queue
    with caplog.at_level(logging.INFO, logger="labelkit.pipeline"):
        drain(services)

    # THEN the image is not labelled, the message is gone (acknowledged, not dead-lettered)
    # and the refusal is logged with its reason
    assert image_row(services, alice, up.image_id)[0] == ImageStatus.PENDING
    assert services.queue.stats() == QueueStats(visible=0, in_flight=0, dead=0)
    [refusal] = _refusals(caplog)
    assert refusal["status"] == "refused" and refusal["key"] == key
    assert "'someone-elses-bucket', not this store's 'local'" in str(refusal["reason"])


@pytest.mark.parametrize("key", ["users/x//y.jpg", "users/x/../y.jpg", "/users/x/y.jpg"])
def test_a_key_the_store_refuses_is_a_permanent_refusal(
    services: Services, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a message with a valid S3 key that the store does not accept
    services.queue.send(make_s3_event(bucket="local", key=key, size=10))
    # WHEN the listener takes it
    with caplog.at_level(logging.INFO, logger="labelkit.pipeline"):
        drain(services)
    # THEN it is acknowledged at once (not retried until dead-lettered), and logged
    assert services.queue.stats() == QueueStats(visible=0, in_flight=0, dead=0)
    [refusal] = _refusals(caplog)
    assert refusal["status"] == "refused" and "the store refuses this key" in str(refusal["reason"])
    # AND the pipeline alone says the same, without raising
    [outcome] = build_pipeline(services).handle_message(make_s3_event(bucket="local", key=key, size=10))
    assert outcome.status == "refused"
