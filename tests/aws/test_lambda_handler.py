"""The Lambda handler over the real AWS event path, in moto, with labels in the real MariaDB:

S3 put -> bucket notification -> SQS -> messages received from SQS -> the Lambda
SQS event built from them (as the event source mapping does) -> ``lambda_handler``.

moto cannot invoke Lambdas without Docker, so the handler is called directly; the
test then does what the event source mapping does with the partial batch
response: deletes the messages that succeeded and leaves the failed ones.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from PIL import Image
from sqlalchemy import func, select, update

from labelkit import aws as lk_aws
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import upgrade
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import ImageStatus, LabelRow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.domain import LabelResult, Viewer
from labelkit.errors import ConfigError, LabelerError
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.fake import FakeLabeler
from labelkit.queue.events import make_s3_event
from labelkit.queue.sqs import ensure_queues
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.uploads import upload_image
from lambda_labeler import handler
from tests.conftest import _reset_mysql
from tests.integration.aws_fixtures import REGION, aws  # noqa: F401

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.aws

BUCKET = "photos"
PREFIX = "uploads"


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (160, 120)) -> bytes:
    im = Image.new("RGB", size, color)
    im.paste((255 - color[0], 255 - color[1], 255 - color[2]), (0, 0, size[0] // 5, size[1] // 5))
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    return out.getvalue()


@dataclass
class FakeLambdaContext:
    function_name: str = "labelkit-labeler"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:labelkit-labeler"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@dataclass
class World:
    s3: S3Client
    sqs: SQSClient
    queue_url: str
    services: Services
    owner_id: str

    def upload(self, name: str, data: bytes) -> str:
        result = upload_image(services=self.services, owner_id=self.owner_id, filename=name, data=data)
        assert result.outcome == "accepted" and result.image_id, result
        return result.image_id

    def receive(self, count: int) -> list[dict[str, Any]]:
        """``count`` real messages from the queue, with all their system attributes."""
        messages: list[dict[str, Any]] = []
        for _ in range(20):
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
            )
            messages += [dict(m) for m in resp.get("Messages", [])]
            if len(messages) >= count:
                break
        assert len(messages) == count, [m["Body"][:80] for m in messages]
        return messages

    def acknowledge(self, messages: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """What the event source mapping does with a partial batch response."""
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def make_visible(self, message: dict[str, Any]) -> None:
        """Skip the visibility timeout (the redelivery a real queue would make later)."""
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    def status(self, image_id: str) -> tuple[ImageStatus, str | None]:
        with transaction(self.services.engine) as s:
            img = image_q.get_image(session=s, viewer=Viewer(user_id=self.owner_id), image_id=image_id)
            return img.status, img.failure_reason

    def labels(self, image_id: str) -> list[tuple[str, str]]:
        with transaction(self.services.engine) as s:
            viewer = Viewer(user_id=self.owner_id)
            rows = label_q.labels_for_image(session=s, viewer=viewer, image_id=image_id)
            return sorted((r.name, r.model_version) for r in rows)

    def label_rows(self) -> int:
        with transaction(self.services.engine) as s:
            return int(s.scalar(select(func.count()).select_from(LabelRow)) or 0)

    def queue_counts(self) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The Lambda event the SQS event source mapping sends for ``messages``."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                    "SentTimestamp": m["Attributes"]["SentTimestamp"],
                    "SenderId": m["Attributes"].get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                    "ApproximateFirstReceiveTimestamp": m["Attributes"]["ApproximateFirstReceiveTimestamp"],
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


@pytest.fixture
def fresh_container() -> Iterator[None]:
    handler._reset_for_tests()
    yield
    handler._reset_for_tests()


@pytest.fixture
def world(
    aws: None,  # noqa: F811
    mysql_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fresh_container: None,
) -> World:
    """A bucket notifying a queue (with a DLQ), a migrated MariaDB, a user, and the
    LABELKIT_* environment the handler reads."""
    _reset_mysql(mysql_server_url)
    upgrade(make_engine(mysql_server_url))  # infra migrates; the Lambda never does
    s3: S3Client = lk_aws.client("s3", region=REGION)
    sqs: SQSClient = lk_aws.client("sqs", region=REGION)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, _dlq = ensure_queues("labelkit-jobs", client=sqs, max_receives=3, visibility_timeout=60)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attrs["QueueArn"]
    # Only uploads notify, as the stack's filter says: the worker's thumbnails (thumbs/) do not.
    uploads = {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PREFIX}/users/"}]}}
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"], "Filter": uploads}
            ]
        },
    )
    env = {
        "LABELKIT_DATABASE_URL": mysql_server_url,
        "LABELKIT_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
        "LABELKIT_QUEUE_URL": queue_url,
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_QUEUE_MAX_RECEIVES": "3",
        "LABELKIT_AWS_REGION": REGION,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The "dashboard" side, with its own settings object (the handler reads the env itself).
    services = build_services(Settings(labeler="fake"), migrate=False)
    with transaction(services.engine) as s:
        owner_id = user_q.create_user(session=s, username="alice", password_hash="x").id
    return World(s3=s3, sqs=sqs, queue_url=queue_url, services=services, owner_id=owner_id)


def queue_arn_of(world: World) -> str:
    attrs = world.sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["QueueArn"])
    return attrs["Attributes"]["QueueArn"]


def invoke(world: World, messages: list[dict[str, Any]]) -> dict[str, Any]:
    context = cast("LambdaContext", FakeLambdaContext())
    response = handler.lambda_handler(sqs_event(messages, queue_arn_of(world)), context)
    return dict(response)


# --------------------------------------------------------------------------- settings


def test_lambda_defaults_to_rekognition_and_needs_rds_and_s3() -> None:
    base = {"database_url": "mysql+pymysql://labelkit@db/labelkit", "storage_url": "s3://photos/uploads"}
    assert handler.lambda_settings(Settings(**base)).labeler == "rekognition"  # type: ignore[arg-type]
    assert handler.lambda_settings(Settings(**base, labeler="fake")).labeler == "fake"  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="s3://"):
        handler.lambda_settings(Settings(database_url=base["database_url"]))
    with pytest.raises(ConfigError, match="LABELKIT_DATABASE_URL"):
        handler.lambda_settings(Settings(storage_url=base["storage_url"]))


def test_importing_the_handler_builds_nothing(fresh_container: None) -> None:
    assert handler._pipeline is None


# --------------------------------------------------------------------------- the event path


@pytest.mark.mysql
def test_s3_notification_to_sqs_to_lambda_to_mariadb(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    # GIVEN two uploads; S3 itself notified the queue (after its s3:TestEvent)
    red = world.upload("red photo +1.jpg", jpeg((220, 10, 10)))
    blue = world.upload("blue.jpg", jpeg((10, 10, 220)))
    messages = world.receive(3)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert bodies[0].get("Event") == "s3:TestEvent"
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in messages)

    # WHEN the Lambda gets the batch
    response = invoke(world, messages)
    world.acknowledge(messages, response)

    # THEN nothing failed, both images are labelled in MariaDB and the queue is empty
    assert response == {"batchItemFailures": []}
    assert world.status(red) == (ImageStatus.LABELLED, None)
    assert world.status(blue) == (ImageStatus.LABELLED, None)
    assert world.labels(red) == [("Red Thing", "fake-1"), ("Red Thing", "fake-1"), ("Thing", "fake-1")]
    assert world.labels(blue) == [("Blue Thing", "fake-1"), ("Blue Thing", "fake-1"), ("Thing", "fake-1")]
    assert world.queue_counts() == (0, 0)
    assert world.services.engine.dialect.name == "mysql"


@pytest.mark.mysql
def test_redelivery_of_the_same_batch_writes_nothing_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    ids = [world.upload(f"{i}.jpg", jpeg((40 * i, 200 - 40 * i, 90))) for i in range(3)]
    first = world.receive(4)
    assert invoke(world, first) == {"batchItemFailures": []}
    pipeline = handler._pipeline
    rows = world.label_rows()
    assert rows == 3 * 3

    # WHEN the same messages come back (the deletes were lost: visibility ran out)
    for m in first:
        world.make_visible(m)
    again = world.receive(4)
    assert sorted(m["MessageId"] for m in again) == sorted(m["MessageId"] for m in first)
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in again} == {"2"}
    response = invoke(world, again)

    # THEN they are acknowledged and no label row is written again; the warm container
    # reused its pipeline
    assert response == {"batchItemFailures": []}
    assert world.label_rows() == rows
    assert all(world.status(i)[0] is ImageStatus.LABELLED for i in ids)
    assert handler._pipeline is pipeline


class FlakyLabeler:
    """The fake labeller, except that it is 'briefly unavailable' for keys ``failing`` matches."""

    def __init__(self, failing: Callable[[str], bool]) -> None:
        self.inner = FakeLabeler()
        self.failing = failing
        self.calls: list[str] = []

    @property
    def model_version(self) -> str:
        return self.inner.model_version

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        assert image.s3_bucket == BUCKET and image.s3_key
        self.calls.append(image.s3_key)
        if self.failing(image.s3_key):
            raise LabelerError("The labeller is briefly unavailable.")
        return self.inner.label(image, options)


@pytest.mark.mysql
def test_one_bad_image_never_fails_its_batch(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    # GIVEN a good image, one whose labelling fails transiently, a corrupt one (its row
    # written as the dashboard would, then damaged bytes stored) and a body that is no S3 event
    good = world.upload("good.jpg", jpeg((10, 200, 10)))
    flaky = world.upload("flaky.jpg", jpeg((200, 200, 10)))
    with transaction(world.services.engine) as s:
        corrupt_img = image_q.create_image(
            session=s,
            owner_id=world.owner_id,
            original_name="corrupt.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=2000,
            width=160,
            height=120,
            sha256="0" * 64,
        )
        corrupt, corrupt_key = corrupt_img.id, corrupt_img.object_key
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{corrupt_key}", Body=jpeg((9, 9, 9))[:600])
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody="not an S3 event")
    messages = world.receive(5)  # s3:TestEvent, 3 puts, the stray message
    by_body = {m["MessageId"]: m["Body"] for m in messages}
    flaky_id = next(mid for mid, body in by_body.items() if flaky in body)

    flaky_labeler = FlakyLabeler(failing=lambda key: flaky in key)
    handler.get_pipeline().labelers = [flaky_labeler]

    # WHEN the Lambda gets the batch
    response = invoke(world, messages)
    world.acknowledge(messages, response)

    # THEN only the transient failure is reported, so only it comes back
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky_id}]}
    assert world.status(good) == (ImageStatus.LABELLED, None)
    status, reason = world.status(corrupt)
    assert status is ImageStatus.FAILED and reason and "damaged or truncated" in reason
    assert world.status(flaky)[0] is not ImageStatus.LABELLED
    assert world.queue_counts() == (0, 1)

    # AND when it comes back and the labeller has recovered, it is labelled
    flaky_labeler.failing = lambda key: False
    retry = [m for m in messages if m["MessageId"] == flaky_id]
    world.make_visible(retry[0])
    redelivered = world.receive(1)
    assert redelivered[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    response = invoke(world, redelivered)
    world.acknowledge(redelivered, response)
    assert response == {"batchItemFailures": []}
    assert world.status(flaky) == (ImageStatus.LABELLED, None)
    assert world.queue_counts() == (0, 0)


@pytest.mark.mysql
def test_last_delivery_marks_the_image_failed_and_leaves_the_message_for_the_dlq(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    image = world.upload("flaky.jpg", jpeg((200, 200, 10)))
    test_event, message = world.receive(2)
    world.acknowledge([test_event], {"batchItemFailures": []})
    handler.get_pipeline().labelers = [FlakyLabeler(failing=lambda key: True)]
    for attempt in (1, 2, 3):
        if attempt > 1:
            world.make_visible(message)
            (message,) = world.receive(1)
        assert message["Attributes"]["ApproximateReceiveCount"] == str(attempt)
        # Every record of the batch failed: Powertools raises (an invocation error, so the
        # whole batch is retried and the error shows in the function's metrics).
        with pytest.raises(BatchProcessingError):
            invoke(world, [message])
    status, reason = world.status(image)
    assert status is ImageStatus.FAILED
    assert reason == "Labelling failed after 3 attempts: The labeller is briefly unavailable."


@pytest.mark.mysql
def test_rekognition_is_the_lambdas_default_labeller(world: World) -> None:
    # GIVEN no LABELKIT_LABELER: the Lambda uses Rekognition (moto's canned answer)
    image = world.upload("phone.jpg", jpeg((120, 137, 132), size=(320, 240)))
    messages = world.receive(2)
    response = invoke(world, messages)
    assert response == {"batchItemFailures": []}
    assert world.status(image) == (ImageStatus.LABELLED, None)
    assert world.labels(image) == [("Mobile Phone", "rekognition-3.0"), ("Mobile Phone", "rekognition-3.0")]
    assert handler.get_pipeline().model_version == "rekognition-3.0"


def test_a_scheduled_invocation_reconciles_stuck_images(world: World) -> None:
    # GIVEN an image whose last delivery began an hour ago and never finished (the worker
    # died on each of the 3 allowed deliveries), so no delivery will come again
    image_id = world.upload("stuck.jpg", jpeg((200, 10, 10)))
    with transaction(world.services.engine) as s:
        s.execute(
            update(ImageRow)
            .where(ImageRow.id == image_id)
            .values(
                status=ImageStatus.LABELLING,
                attempts=3,
                updated_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
    # WHEN the EventBridge schedule invokes the function
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    report = handler.lambda_handler(event, cast("LambdaContext", FakeLambdaContext()))
    # THEN the image is failed with a reason a person can act on
    assert report["exhausted_failed"] == 1
    status, reason = world.status(image_id)
    assert status == ImageStatus.FAILED and reason and "did not finish in 3 attempts" in reason


# --------------------------------------------------------------------------- refusals


@pytest.mark.mysql
def test_events_the_store_cannot_own_are_refused_and_acknowledged(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    # GIVEN a real upload (S3 notified the queue), and two stray notifications: one from
    # another bucket about the same key, one with a valid S3 key the store refuses
    image = world.upload("photo.jpg", jpeg((10, 200, 10)))
    test_event, real = world.receive(2)
    with transaction(world.services.engine) as s:
        key = image_q.get_image(session=s, viewer=Viewer(user_id=world.owner_id), image_id=image).object_key
    size = len(jpeg((10, 200, 10)))
    world.sqs.send_message(
        QueueUrl=world.queue_url,
        MessageBody=make_s3_event(bucket="someone-elses-bucket", key=f"{PREFIX}/{key}", size=size),
    )
    world.sqs.send_message(
        QueueUrl=world.queue_url,
        MessageBody=make_s3_event(bucket=BUCKET, key=f"{PREFIX}/users/x//y.jpg", size=size),
    )
    strays = world.receive(2)

    # WHEN the Lambda gets the test event and the strays
    with caplog.at_level(logging.INFO, logger="labelkit.pipeline"):
        response = invoke(world, [test_event, *strays])
    world.acknowledge([test_event, *strays], response)

    # THEN all three are acknowledged (none comes back to reach the DLQ), the image is
    # not labelled by the stranger's event, and both refusals are logged with a reason
    assert response == {"batchItemFailures": []}
    assert world.status(image)[0] is ImageStatus.PENDING
    reasons = sorted(
        str(r.labelkit["reason"])  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "labelkit.pipeline" and r.levelno == logging.WARNING
    )
    assert len(reasons) == 2
    assert "'someone-elses-bucket', not this store's 'photos'" in reasons[0]
    assert "the store refuses this key" in reasons[1]
    assert world.queue_counts() == (0, 1)  # only the real notification, still in flight

    # AND the real notification still labels the image
    response = invoke(world, [real])
    world.acknowledge([real], response)
    assert response == {"batchItemFailures": []}
    assert world.status(image) == (ImageStatus.LABELLED, None)
    assert world.queue_counts() == (0, 0)
