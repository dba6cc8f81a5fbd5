"""With ``Worker=ec2`` and ``WebTier=cluster`` every host runs ``python -m sqs_listener``: N
copies share the stack's queue. Here three real listener processes (three hosts) on SQS and S3
in a moto server, over the real MariaDB, label uploads whose bucket notification S3 sends, and
a second copy of every notification (S3 delivers at least once), while each copy also runs the
reconciler every 5 seconds: every image is labelled exactly once, nothing is dead-lettered or
left on the queue, and the work was shared."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from labelkit.db.engine import transaction
from labelkit.db.models import Image
from labelkit.queue.events import make_s3_event
from labelkit.queue.sqs import ensure_queues
from labelkit.services import Services, build_services
from labelkit.settings import Settings
from labelkit.testing.workers import (
    listener_env,
    make_owner,
    start_listener,
    stop,
    unsettled,
    upload_many,
    wait_until,
)
from tests.helpers import free_port, wait_http
from tests.integration.test_pipeline import jpeg
from tests.reliability.harness import assert_each_labelled_exactly_once

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

pytestmark = [pytest.mark.aws, pytest.mark.mysql, pytest.mark.slow]

REGION = "us-east-1"
HOSTS = 3
IMAGES = 24
BUCKET = "labelkit-demo-123456789012-us-east-1"


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A moto server, and this process's AWS clients pointed at it (the listeners get the same)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60)
        yield env
    finally:
        server.stop()


def test_a_listener_on_every_host_labels_each_upload_once(
    moto_server: dict[str, str], mysql_server_url: str, tmp_path: Path
) -> None:
    from tests.conftest import _reset_mysql

    _reset_mysql(mysql_server_url)
    # GIVEN the stack's bucket notifying its queue (with a dead-letter queue), as the template makes them
    s3 = boto3.client("s3", region_name=REGION)
    sqs: SQSClient = boto3.client("sqs", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    queue_url, dlq_url = ensure_queues(
        "labelkit-demo-jobs", client=sqs, max_receives=4, visibility_timeout=30
    )
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "users/"}]}},
                }
            ]
        },
    )
    stack_env = {
        "LABELKIT_DATA_DIR": str(tmp_path / "data"),
        "LABELKIT_DATABASE_URL": mysql_server_url,
        "LABELKIT_STORAGE_URL": f"s3://{BUCKET}",
        "LABELKIT_QUEUE_URL": queue_url,
        "LABELKIT_QUEUE_VISIBILITY_TIMEOUT": "30",
        "LABELKIT_QUEUE_MAX_RECEIVES": "4",
        "LABELKIT_S3_NOTIFIES_QUEUE": "true",
        "LABELKIT_AWS_REGION": REGION,
        "LABELKIT_LABELER": "fake",  # Rekognition on EC2; moto's is canned
        "LABELKIT_RECONCILE_EVERY_SECONDS": "5",
    }
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=mysql_server_url,
        storage_url=f"s3://{BUCKET}",
        queue_url=queue_url,
        s3_notifies_queue=True,
        labeler="fake",
        aws_region=REGION,
    )
    services = build_services(settings)
    # AND three hosts' listeners, each up and long-polling before anything is uploaded
    env = listener_env({**moto_server, **stack_env})
    logs = [tmp_path / f"host-{i}.log" for i in range(HOSTS)]
    listeners = [start_listener(env, tmp_path, log) for log in logs]
    try:
        wait_until(
            lambda: (
                all("listening on SQS" in log.read_text() for log in logs if log.exists())
                and all(log.exists() for log in logs)
            ),
            timeout=180,
            what="the three listeners to listen",
        )

        # WHEN photos are uploaded (the dashboard's path: the row, then the S3 object, whose
        # notification is the job) and every notification is delivered a second time
        blobs = [jpeg((180 + i, 10, 20 + i)) if i % 2 else jpeg((10, 20 + i, 180 + i)) for i in range(IMAGES)]
        ids = upload_many(services, make_owner(services), blobs)
        with transaction(services.engine) as s:
            keys = s.execute(select(Image.object_key, Image.bytes).where(Image.id.in_(ids))).all()
        for key, size in keys:
            sqs.send_message(QueueUrl=queue_url, MessageBody=make_s3_event(bucket=BUCKET, key=key, size=size))

        # THEN every image is labelled exactly once, and the queue empties with nothing dead-lettered
        wait_until(
            lambda: _settled(services, ids),
            timeout=300,
            what=f"all {IMAGES} images to be labelled by the hosts",
        )
        wait_until(
            lambda: _queue_empty(sqs, queue_url),
            timeout=120,
            what="the queue to empty (duplicates acknowledged)",
        )
    finally:
        for proc in listeners:
            stop(proc)
    assert_each_labelled_exactly_once(services, ids)
    assert _queue_empty(sqs, dlq_url)
    # AND the hosts shared the work: two copies of every job (and S3's test event) were received,
    # by more than one host
    received = [_received(log) for log in logs]
    assert sum(received) >= 2 * IMAGES, received
    assert sum(1 for n in received if n > 0) >= 2, received


def _settled(services: Services, ids: list[str]) -> bool:
    return unsettled(services, ids) == 0


def _queue_empty(sqs: SQSClient, url: str) -> bool:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0
    )


def _received(log: Path) -> int:
    """How many messages the listener says it received (its last words on SIGTERM)."""
    found = re.findall(r"stopped: received (\d+), done \d+", log.read_text())
    assert found, f"{log.name} did not stop cleanly:\n{log.read_text()[-2000:]}"
    return int(found[-1])
