"""The AWS event path in moto, with labels landing in the real MariaDB:

object put in S3 -> bucket notification -> SQS -> listener -> labels in MariaDB.

The dashboard does not enqueue (``s3_notifies_queue=True``): the message the
listener handles is the one S3 itself sent, plus-encoded key and all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from labelkit.db.engine import transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Viewer
from labelkit.queue.sqs import ensure_queues
from labelkit.services import build_pipeline, build_services
from labelkit.settings import Settings
from labelkit.worker import Listener
from tests.integration.test_pipeline import jpeg

pytestmark = [pytest.mark.aws, pytest.mark.mysql]

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def test_s3_notification_to_listener_to_mariadb(aws: None, mysql_server_url: str, tmp_path: object) -> None:
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    # GIVEN a bucket whose notifications feed an SQS queue with a dead-letter queue
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    s3.create_bucket(Bucket="photos")
    queue_url, _dlq = ensure_queues("labelkit-jobs", client=sqs, max_receives=3, visibility_timeout=30)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket="photos",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    settings = Settings(
        database_url=mysql_server_url,
        storage_url="s3://photos/uploads",
        queue_url=queue_url,
        s3_notifies_queue=True,
        labeler="fake",
        aws_region=REGION,
    )
    services = build_services(settings)
    with transaction(services.engine) as s:
        owner = user_q.create_user(session=s, username="alice", password_hash="x")
        viewer = Viewer(user_id=owner.id)

    # WHEN two photos are uploaded (the dashboard's path: row, then S3 put; no enqueue)
    from labelkit.uploads import upload_image

    ids = []
    for name, color in (("red photo +1.jpg", (220, 0, 0)), ("blue.jpg", (0, 0, 220))):
        result = upload_image(services=services, owner_id=owner.id, filename=name, data=jpeg(color))
        assert result.outcome == "accepted"
        ids.append(result.image_id)
    head = s3.head_object(Bucket="photos", Key=f"uploads/users/{owner.id}/{ids[0]}.jpg")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "image/jpeg"

    # AND the listener drains the queue S3 filled (the s3:TestEvent included)
    listener = Listener(queue=services.queue, pipeline=build_pipeline(services), workers=2, wait_seconds=1)
    listener.run(threading.Event(), drain=True)

    # THEN both images are labelled in MariaDB and the queue is empty
    with transaction(services.engine) as s:
        images = [image_q.get_image(session=s, viewer=viewer, image_id=i) for i in ids if i]
        labels = {
            img.original_name: sorted(
                r.name for r in label_q.labels_for_image(session=s, viewer=viewer, image_id=img.id)
            )
            for img in images
        }
    assert [img.status for img in images] == [ImageStatus.LABELLED, ImageStatus.LABELLED]
    assert labels == {
        "red photo +1.jpg": ["Red Thing", "Red Thing", "Thing"],
        "blue.jpg": ["Blue Thing", "Blue Thing", "Thing"],
    }
    stats = services.queue.stats()
    assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 0)
    assert services.engine.dialect.name == "mysql"
