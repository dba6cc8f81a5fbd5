"""The pipeline's feature hook (labelkit.features): what extractors return is written with the
labels, a thumbnail is stored beside the photo, an extractor that fails does not fail the
image, and deleting the image deletes its features. SQLite and MariaDB."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from labelkit.db.engine import transaction
from labelkit.db.models import ImageFeatureRow, ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import users as user_q
from labelkit.domain import ImageFeatures, Viewer
from labelkit.features import FeatureInput, thumbnail_key
from labelkit.labelers import options_from
from labelkit.labelers.fake import FakeLabeler
from labelkit.pipeline import Pipeline
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.uploads import delete_image, upload_image
from labelkit.worker import Listener
from tests.integration.test_pipeline import jpeg


class HashOfLength:
    name = "length"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        return ImageFeatures(phash=f"{len(image.data):016x}", embedding=b"\x01\x02", embedding_model="test")


class Thumbnails:
    name = "thumbnail"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        return ImageFeatures(thumbnail=image.thumbnail, thumbnail_type="image/jpeg")


class Broken:
    name = "broken"

    def extract(self, image: FeatureInput) -> ImageFeatures:
        raise RuntimeError("this extractor always fails")


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


def _drain(services: Services, pipeline: Pipeline) -> None:
    Listener(
        queue=services.queue,
        pipeline=pipeline,
        workers=1,
        wait_seconds=0,
        visibility_timeout=services.settings.queue_visibility_timeout,
    ).run(threading.Event(), drain=True)


def test_features_are_written_with_the_labels_and_deleted_with_the_image(services: Services) -> None:
    with transaction(services.engine) as s:
        owner = Viewer(user_id=user_q.create_user(session=s, username="ann", password_hash="x").id)
    data = jpeg((200, 30, 30))
    up = upload_image(services=services, owner_id=owner.user_id, filename="red.jpg", data=data)
    assert up.image_id is not None
    pipeline = Pipeline(
        engine=services.engine,
        store=services.store,
        labelers=[FakeLabeler()],
        options=options_from(services.settings),
        max_receives=3,
        extractors=[Broken(), HashOfLength(), Thumbnails()],
        make_thumbnail=lambda b: b"\xff\xd8thumb of " + str(len(b)).encode(),
    )

    _drain(services, pipeline)

    with transaction(services.engine) as s:
        img = image_q.get_image(session=s, viewer=owner, image_id=up.image_id)
        assert img.status == ImageStatus.LABELLED
        row = s.get(ImageFeatureRow, up.image_id)
        assert row is not None
        assert (row.owner_id, row.phash, row.embedding, row.embedding_model) == (
            owner.user_id,
            f"{len(data):016x}",
            b"\x01\x02",
            "test",
        )
        assert row.thumb_key == thumbnail_key(img.object_key)
    assert services.store.get(thumbnail_key(img.object_key)) == b"\xff\xd8thumb of " + str(len(data)).encode()

    delete_image(services=services, viewer=owner, image_id=up.image_id)
    with transaction(services.engine) as s:
        assert s.scalars(select(ImageFeatureRow)).all() == []
    assert not services.store.exists(thumbnail_key(img.object_key))
