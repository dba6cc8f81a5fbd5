"""Thumbnails made once (issue #18, item 5): the worker stores the gallery thumbnail when it
labels an image (local folder, or S3 ``thumbs/`` under the store's prefix) and the gallery
reads it back without decoding the photo; an image labelled before this has its thumbnail
made from the photo once and stored; deleting an image deletes its thumbnail. SQLite and
MariaDB; S3 through moto.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import unquote_plus

import pytest
import streamlit as st
import yaml
from PIL import Image as PILImage
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

import dashboard.core
from infra_scripts.cloudformation import TEMPLATE
from labelkit import aws as lk_aws
from labelkit import render
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import ImageFeatureRow, ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import thumbs as thumb_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.errors import NotFound
from labelkit.features import thumbnail_key
from labelkit.features.thumbnail import ThumbnailExtractor, photo_key_of, thumbnail_maker
from labelkit.queue.events import make_s3_event
from labelkit.services import Services, build_pipeline, build_services
from labelkit.settings import Settings, get_settings
from labelkit.testing.photos import encode, photo
from labelkit.uploads import delete_image, upload_image
from tests.dashboard import conftest as dash
from tests.integration import aws_fixtures

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Fixtures shared with the dashboard tests (bound by assignment, as aws_fixtures explains).
services = dash.services
auth = dash.auth
alice = dash.alice
bob = dash.bob
aws = aws_fixtures.aws


def jpeg(seed: int) -> bytes:
    """A 640 x 480 photo (a thumbnail of 320 x 240 at the default size), distinct per seed."""
    return encode(photo(640, 480, seed=seed), "JPEG", quality=90)


PHOTO = jpeg(5)
BUCKET = "labelkit-photos"
PREFIX = "site"


def _size(data: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        return im.size


def _features(services: Services, image_id: str) -> ImageFeatureRow | None:
    with transaction(services.engine) as s:
        return s.scalar(select(ImageFeatureRow).where(ImageFeatureRow.image_id == image_id))


def _object_key(services: Services, image_id: str) -> str:
    with transaction(services.engine) as s:
        return image_q.get_image(
            session=s, viewer=Viewer(user_id="-", is_admin=True), image_id=image_id
        ).object_key


def _card_images(at: AppTest) -> list[bytes]:
    """The gallery cards' pictures, decoded from their ``data:`` URLs."""
    urls = [img.proto.imgs[0].url for img in at.image]
    assert all(u.startswith("data:image/jpeg;base64,") for u in urls), urls
    return [base64.b64decode(u.split(",", 1)[1]) for u in urls]


def _gallery(principal: Principal) -> AppTest:
    at = dash.app(principal)  # the gallery is the default page
    assert not at.exception, at.exception
    return at


# --------------------------------------------------------------------------- the worker


@pytest.mark.parametrize("photo_key", ["users/u1/a.jpg", "users/u1/b.png", "users/u 2/c+d é.webp"])
def test_a_thumbnail_key_names_its_photo(photo_key: str) -> None:
    assert photo_key_of(thumbnail_key(photo_key)) == photo_key


@pytest.mark.parametrize("key", ["thumbs/.jpg", "thumbs/a.png", "users/u1/a.jpg", "thumbsx/a.jpg", "thumbs/"])
def test_a_key_no_thumbnail_has_names_no_photo(key: str) -> None:
    assert photo_key_of(key) is None


def test_the_extractor_hands_over_the_settings_thumbnail(settings: Settings) -> None:
    from labelkit.features import FeatureInput

    made = ThumbnailExtractor().extract(FeatureInput(PHOTO, make_thumbnail=thumbnail_maker(settings)))
    assert made.thumbnail_type == "image/jpeg" and made.thumbnail is not None
    assert _size(made.thumbnail) == (settings.thumbnail_size, settings.thumbnail_size * 3 // 4)


def test_the_worker_stores_the_thumbnail_in_the_local_folder(services: Services, alice: Principal) -> None:
    # GIVEN a photo uploaded WHEN the worker (as build_pipeline wires it) labels it
    image_id = dash.upload(services, alice, "cat.jpg", PHOTO)
    dash.drain(services)
    # THEN the gallery thumbnail is stored beside it, as a file, and recorded with the features
    key = _object_key(services, image_id)
    row = _features(services, image_id)
    assert row is not None and row.thumb_key == thumbnail_key(key) == f"thumbs/{key}.jpg"
    path = Path(services.settings.data_dir) / "images" / "thumbs" / f"{key}.jpg"
    stored = services.store.get(row.thumb_key)
    assert path.is_file() and path.read_bytes() == stored
    assert _size(stored) == (320, 240)  # the settings' thumbnail_size, the gallery's quality
    assert stored == thumbnail_maker(services.settings)(PHOTO)
    # AND deleting the image deletes its thumbnail and its features
    delete_image(services=services, viewer=alice.viewer, image_id=image_id)
    assert not services.store.exists(row.thumb_key) and not path.exists()
    assert _features(services, image_id) is None


def test_thumb_keys_are_scoped_to_the_viewer(services: Services, alice: Principal, bob: Principal) -> None:
    mine = dash.upload(services, bob, "bob.jpg", PHOTO)
    dash.drain(services)
    pending = dash.upload(services, bob, "later.jpg", PHOTO)  # not labelled yet: no thumbnail
    with transaction(services.engine) as s:
        ids = [mine, pending, "no-such-image"]
        assert thumb_q.thumb_keys(session=s, viewer=bob.viewer, image_ids=ids) == {
            mine: thumbnail_key(_object_key(services, mine))
        }
        other = Viewer(user_id=user_q.create_user(session=s, username="carol", password_hash="x").id)
        assert thumb_q.thumb_keys(session=s, viewer=other, image_ids=ids) == {}
        assert set(thumb_q.thumb_keys(session=s, viewer=alice.viewer, image_ids=ids)) == {mine}  # admin
        assert thumb_q.thumb_keys(session=s, viewer=bob.viewer, image_ids=[]) == {}
        # Recording a late thumbnail: never for another user's image, a pending one, or over one
        with pytest.raises(NotFound):  # another user's image is one that does not exist
            thumb_q.record_thumb_key(session=s, viewer=other, image_id=mine, thumb_key="thumbs/x")
        with pytest.raises(NotFound):
            thumb_q.record_thumb_key(session=s, viewer=bob.viewer, image_id="no-such-image", thumb_key="t/x")
        assert not thumb_q.record_thumb_key(session=s, viewer=bob.viewer, image_id=pending, thumb_key="t/x")
        assert not thumb_q.record_thumb_key(session=s, viewer=bob.viewer, image_id=mine, thumb_key="t/x")
    assert (row := _features(services, mine)) is not None
    assert row.thumb_key == thumbnail_key(_object_key(services, mine))


# --------------------------------------------------------------------------- the gallery


def test_the_gallery_shows_the_stored_thumbnail_without_decoding_the_photo(
    services: Services, alice: Principal
) -> None:
    # GIVEN two labelled photos whose originals are then made unreadable
    ids = [dash.upload(services, alice, f"p{n}.jpg", jpeg(n)) for n in (1, 2)]
    dash.drain(services)
    stored = {}
    for image_id in ids:
        key = _object_key(services, image_id)
        stored[image_id] = services.store.get(thumbnail_key(key))
        services.store.put(key, b"not a photo any more", content_type="image/jpeg")
    st.cache_data.clear()
    # WHEN the gallery's first render draws the cards (counting every decode of a photo)
    with mock.patch.object(dashboard.core, "make_thumbnail", autospec=True) as decode:
        at = _gallery(alice)
    # THEN every card shows the square crop of its stored thumbnail and no photo was decoded
    assert decode.call_count == 0
    shown = _card_images(at)
    assert sorted(shown) == sorted(render.square_crop(t) for t in stored.values())
    assert all(_size(s) == (240, 240) for s in shown)
    assert "preview unavailable" not in dash.texts(at)


def test_an_image_labelled_before_stored_thumbnails_gets_one_made_once(
    services: Services, alice: Principal
) -> None:
    # GIVEN a photo labelled before the worker stored thumbnails (no thumbnail, no key recorded)
    image_id = dash.upload(services, alice, "old.jpg", PHOTO)
    dash.drain(services)
    key = _object_key(services, image_id)
    services.store.delete(thumbnail_key(key))
    with transaction(services.engine) as s:
        s.execute(delete(ImageFeatureRow).where(ImageFeatureRow.image_id == image_id))
    st.cache_data.clear()
    # WHEN the gallery first shows it
    at = _gallery(alice)
    # THEN its thumbnail is made from the photo, as before, and stored and recorded
    (card,) = _card_images(at)
    made = thumbnail_maker(services.settings)(PHOTO)
    assert card == render.square_crop(made)
    assert services.store.get(thumbnail_key(key)) == made
    assert (row := _features(services, image_id)) is not None and row.thumb_key == thumbnail_key(key)
    # AND later renders (another process: caches empty) read it without the photo
    services.store.put(key, b"gone", content_type="image/jpeg")
    st.cache_data.clear()
    with mock.patch.object(dashboard.core, "make_thumbnail", autospec=True) as decode:
        again = _gallery(alice)
    assert decode.call_count == 0 and _card_images(again) == [card]


def test_a_pending_image_is_shown_from_its_photo_and_a_lost_thumbnail_is_made_again(
    services: Services, alice: Principal
) -> None:
    # GIVEN one photo not labelled yet, and one whose stored thumbnail went missing
    lost = dash.upload(services, alice, "lost.jpg", jpeg(8))
    dash.drain(services)
    services.store.delete(thumbnail_key(_object_key(services, lost)))
    pending = dash.upload(services, alice, "new.jpg", PHOTO)
    st.cache_data.clear()
    # WHEN the gallery renders THEN both cards show a thumbnail made from the photo
    at = _gallery(alice)
    assert len(_card_images(at)) == 2 and "preview unavailable" not in dash.texts(at)
    # AND nothing is stored for the pending one: the worker will store its own
    assert not services.store.exists(thumbnail_key(_object_key(services, pending)))
    assert (row := _features(services, pending)) is None or row.thumb_key is None  # (its hash is kept)


# --------------------------------------------------------------------------- S3 (moto)


@pytest.fixture
def s3_world(
    aws: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Services, S3Client, SQSClient, str]]:
    """A bucket whose uploads under ``<prefix>/users/`` notify a queue (as the stack's filter
    does), and the app's services over it (local auth, SQLite or MariaDB)."""
    s3: S3Client = lk_aws.client("s3", region=aws_fixtures.REGION)
    sqs: SQSClient = lk_aws.client("sqs", region=aws_fixtures.REGION)
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="labelkit-jobs")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PREFIX}/users/"}]}},
                }
            ]
        },
    )
    env = {
        "LABELKIT_DATA_DIR": str(settings.data_dir),
        "LABELKIT_DATABASE_URL": settings.database_url,
        "LABELKIT_LABELER": "fake",
        "LABELKIT_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
        "LABELKIT_QUEUE_URL": queue_url,
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_AWS_REGION": aws_fixtures.REGION,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield build_services(get_settings()), s3, sqs, queue_url
    st.cache_resource.clear()
    st.cache_data.clear()


def _messages(sqs: SQSClient, queue_url: str) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.mark.aws
def test_on_s3_the_thumbnail_is_stored_under_the_prefix_read_by_the_gallery_and_deleted(
    s3_world: tuple[Services, S3Client, SQSClient, str],
) -> None:
    services, s3, sqs, queue_url = s3_world
    _messages(sqs, queue_url)  # the s3:TestEvent sent when notifications were configured
    with transaction(services.engine) as s:
        owner = user_q.create_user(session=s, username="dora", password_hash="x")
    principal = Principal(user_id=owner.id, username="dora")
    # GIVEN a photo uploaded to S3: its notification is the only message
    up = upload_image(services=services, owner_id=owner.id, filename="dog.jpg", data=PHOTO)
    assert up.image_id is not None
    key = _object_key(services, up.image_id)
    (event,) = _messages(sqs, queue_url)
    assert unquote_plus(event["Records"][0]["s3"]["object"]["key"]) == f"{PREFIX}/{key}"

    # WHEN the worker handles it
    outcomes = build_pipeline(services).handle_message(event)
    assert [o.status for o in outcomes] == ["labelled"]
    # THEN the thumbnail is in the bucket under the prefix, typed and encrypted
    full = f"{PREFIX}/thumbs/{key}.jpg"
    head = s3.head_object(Bucket=BUCKET, Key=full)
    assert head["ContentType"] == "image/jpeg" and head["ServerSideEncryption"] == "AES256"
    assert _size(s3.get_object(Bucket=BUCKET, Key=full)["Body"].read()) == (320, 240)
    # AND storing it did not queue the thumbnail for labelling (the notification filter)
    assert _messages(sqs, queue_url) == []
    # AND a thumbnail's event, were one delivered, is skipped, not labelled or failed
    (skipped,) = build_pipeline(services).handle_message(
        make_s3_event(bucket=BUCKET, key=full, size=head["ContentLength"])
    )
    assert skipped.status == "skipped" and skipped.key == f"thumbs/{key}.jpg"

    # WHEN the gallery renders with the photo gone from the bucket
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}")
    at = _gallery(principal)
    # THEN the card shows the stored thumbnail
    stored = s3.get_object(Bucket=BUCKET, Key=full)["Body"].read()
    assert _card_images(at) == [render.square_crop(stored)]

    # WHEN the image is deleted THEN its thumbnail goes too
    delete_image(services=services, viewer=principal.viewer, image_id=up.image_id)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    with transaction(services.engine) as s:
        assert image_q.status_counts(session=s, viewer=principal.viewer)[ImageStatus.LABELLED] == 0


# --------------------------------------------------------------------------- the stack


class _KeepTags(yaml.SafeLoader):
    """The template with intrinsic functions read as their argument (``!Sub "x"`` -> "x")."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


_KeepTags.add_multi_constructor("!", _construct)


def test_the_stack_labels_only_uploads_lets_the_lambda_store_thumbnails_and_keeps_them() -> None:
    resources = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_KeepTags)["Resources"]
    bucket = resources["Bucket"]["Properties"]
    (notify,) = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert notify["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "users/"}]
    # Thumbnails live as long as their photo: no lifecycle rule expires them
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert not any(str(r.get("Prefix", "")).startswith("thumbs") for r in rules)
    (policy,) = resources["LambdaRole"]["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"] if isinstance(s, dict)}
    # It stores them, deletes one of an image deleted while labelled, and the reconciler lists
    # thumbs/ (and only thumbs/) to sweep those whose photo is gone (issue 25)
    assert statements["StoreThumbnails"]["Action"] == ["s3:PutObject", "s3:DeleteObject"]
    assert statements["StoreThumbnails"]["Resource"] == ["arn:${AWS::Partition}:s3:::${Bucket}/thumbs/*"]
    assert statements["ListThumbnails"]["Action"] == ["s3:ListBucket"]
    assert statements["ListThumbnails"]["Resource"] == ["arn:${AWS::Partition}:s3:::${Bucket}"]
    assert statements["ListThumbnails"]["Condition"] == {"StringLike": {"s3:prefix": ["thumbs/*"]}}


# --------------------------------------------------------------------------- the benchmark


def test_the_dashboard_benchmark_reports_the_run_without_stored_thumbnails() -> None:
    from bench.dashboard_load import LoadResult, Sample, Who, table
    from bench.queries import GenerateReport

    who = [Who(Principal(user_id="u1", username="u1"), 10)]

    def run(mode: str, first: float) -> LoadResult:
        return LoadResult(
            sessions=who,
            samples=[
                Sample(0, "user", "gallery", "first", first, 10, 10, start=0.0, end=first),
                Sample(0, "user", "gallery", "rerun", 0.25, 10, 10, start=first, end=first + 0.25),
            ],
            wall_seconds=first + 0.25,
            thumbnails=mode,
        )

    text = table(
        run("stored", 0.5),
        GenerateReport(images=10, users=1),
        "db",
        cores=2,
        reruns=1,
        before=run("photo", 4.0),
    )
    assert "the page's stored thumbnails read" in text
    assert "| gallery | first | 1 | 0.50 | 0.50 | 0.50 |" in text
    assert "Without stored thumbnails (thumbnails made from the photos" in text
    assert "gallery first render 4.00 s p50 / 4.00 s p95, rerun 0.25 s p50 / 0.25 s p95" in text


@pytest.mark.slow  # generates a benchmark database and renders pages: not for the inner loop
def test_the_benchmark_without_stored_thumbnails_makes_them_once(engine: Engine, db_url: str) -> None:
    from bench.dashboard_load import GALLERY_PAGE_SIZE, run_load
    from bench.queries import generate

    generate(engine, images=120, labels_per_image=4, users=6, chunk=120)
    # WHEN two sessions render the gallery of images that have photos but no stored thumbnails
    result = run_load(db_url, sessions=2, reruns=0, timeout=300, thumbnails="photo")
    # THEN every card shows one, made from its photo, and it is recorded for the next process
    assert result.errors == [] and result.thumbnails == "photo"
    gallery = [s for s in result.samples if s.page == "gallery"]
    assert gallery and all(s.rows == s.thumbnails > 0 for s in gallery), gallery
    with transaction(engine) as s:
        recorded = set(
            s.scalars(select(ImageFeatureRow.thumb_key).where(ImageFeatureRow.thumb_key.is_not(None)))
        )
        shown = [
            image_q.list_images(
                session=s, viewer=w.principal.viewer, page=1, page_size=GALLERY_PAGE_SIZE
            ).items
            for w in result.sessions
        ]
    labelled = {
        thumbnail_key(i.object_key) for page in shown for i in page if i.status == ImageStatus.LABELLED
    }
    assert recorded == labelled and 0 < len(labelled) <= result.photos  # not the pending: the worker will
