"""``SqsQueue`` and ``ensure_queues`` against moto's SQS (and S3 notifications into SQS)."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

import pytest

from labelkit.errors import QueueError
from labelkit.queue import JobQueue, QueueStats
from labelkit.queue.events import ObjectEvent, make_s3_event, parse_s3_event
from labelkit.queue.sqs import SqsQueue, ensure_queues
from labelkit.storage.s3 import S3Store
from tests.integration import aws_fixtures
from tests.integration.aws_fixtures import REGION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

pytestmark = pytest.mark.aws

# Shared moto fixtures (assigned, not imported, so they read as module fixtures).
aws = aws_fixtures.aws
s3_client = aws_fixtures.s3_client
sqs_client = aws_fixtures.sqs_client


@pytest.fixture
def queue(sqs_client: SQSClient) -> SqsQueue:
    url, _dlq = ensure_queues("labelkit-test-jobs", client=sqs_client, max_receives=2, visibility_timeout=1)
    # No dlq_url given: it is discovered from the RedrivePolicy.
    return SqsQueue(url, region=REGION, visibility_timeout=1, max_receives=2, client=sqs_client)


def test_satisfies_the_protocol(queue: SqsQueue) -> None:
    assert isinstance(queue, JobQueue)


def test_ensure_queues_sets_up_redrive_and_is_idempotent(sqs_client: SQSClient) -> None:
    url, dlq = ensure_queues("jobs", client=sqs_client, max_receives=3, visibility_timeout=30)
    again = ensure_queues("jobs", client=sqs_client, max_receives=5, visibility_timeout=60)
    assert again == (url, dlq)
    assert dlq.endswith("/jobs-dlq")
    attrs = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(":jobs-dlq")
    assert int(policy["maxReceiveCount"]) == 5
    assert attrs["VisibilityTimeout"] == "60"
    assert SqsQueue(url, client=sqs_client).dlq_url == dlq


def test_send_receive_delete(queue: SqsQueue) -> None:
    body = make_s3_event(bucket="b", key="users/u/🐈 a+b.jpg", size=5)
    message_id = queue.send(body)
    [msg] = queue.receive(max_messages=10)
    assert (msg.message_id, msg.body, msg.receive_count) == (message_id, body, 1)
    assert queue.stats() == QueueStats(visible=0, in_flight=1, dead=0)
    queue.delete(msg.receipt_handle)
    assert queue.stats() == QueueStats(visible=0, in_flight=0, dead=0)
    queue.delete(msg.receipt_handle)  # already deleted: ignored
    queue.delete("not-a-real-handle")  # invalid: ignored


def test_long_poll_waits_and_wakes_up(queue: SqsQueue) -> None:
    # WHEN nothing arrives THEN receive waits about wait_seconds
    start = time.monotonic()
    assert queue.receive(wait_seconds=1) == []
    assert time.monotonic() - start >= 0.9
    # WHEN a message arrives during the wait THEN it is returned before the wait ends
    timer = threading.Timer(0.3, queue.send, args=("late",))
    timer.start()
    try:
        start = time.monotonic()
        msgs = queue.receive(wait_seconds=20)
        elapsed = time.monotonic() - start
    finally:
        timer.join()
    assert [m.body for m in msgs] == ["late"]
    assert elapsed < 15  # woken by the message, before the 20 s wait ends


def test_redelivery_after_the_visibility_timeout(queue: SqsQueue) -> None:
    queue.send("job")
    [first] = queue.receive()
    time.sleep(1.1)  # past the 1 s visibility timeout (a slow machine only waits longer)
    [second] = queue.receive()
    assert second.message_id == first.message_id
    assert second.receive_count == 2
    assert second.receipt_handle != first.receipt_handle


def test_extend_keeps_it_hidden_and_release_shows_it(sqs_client: SQSClient) -> None:
    url, _ = ensure_queues("ext", client=sqs_client, max_receives=5, visibility_timeout=1)
    q = SqsQueue(url, visibility_timeout=1, max_receives=5, client=sqs_client)
    q.send("long job")
    [msg] = q.receive()
    q.extend(msg.receipt_handle, 120)  # far beyond what a busy machine can take to get on
    time.sleep(1.2)  # past the original 1 s timeout
    assert q.receive() == []
    q.release(msg.receipt_handle)
    [again] = q.receive()
    assert again.receive_count == 2
    with pytest.raises(QueueError):
        q.extend("not-a-real-handle", 5)
    with pytest.raises(QueueError):
        q.extend(again.receipt_handle, 13 * 3600)
    q.release("not-a-real-handle")  # ignored


def test_dead_letter_queue_then_redrive(queue: SqsQueue) -> None:
    # GIVEN a message received max_receives (2) times without being deleted
    message_id = queue.send("poison")
    for expected in (1, 2):
        [msg] = queue.receive()
        assert msg.receive_count == expected
        queue.release(msg.receipt_handle)
    # WHEN the queue is polled again THEN SQS has moved it to the DLQ
    assert queue.receive() == []
    assert queue.stats() == QueueStats(visible=0, in_flight=0, dead=1)
    # WHEN the dead letters are listed THEN it is there (and briefly hidden in the DLQ)
    [dead] = queue.dead_letters()
    assert dead.body == "poison"
    assert queue.stats().dead == 1
    # WHEN it is redriven THEN the main queue has it again with a fresh receive count
    queue.redrive(dead.receipt_handle)
    assert queue.stats() == QueueStats(visible=1, in_flight=0, dead=0)
    [back] = queue.receive()
    assert back.body == "poison"
    assert back.receive_count == 1
    assert back.message_id != message_id  # SQS gives the re-sent copy a new id
    with pytest.raises(QueueError):
        queue.redrive(dead.receipt_handle)  # already redriven: unknown now


def test_dead_letters_limit_and_missing_dlq(queue: SqsQueue, sqs_client: SQSClient) -> None:
    assert queue.dlq_url is not None
    for i in range(12):
        sqs_client.send_message(QueueUrl=queue.dlq_url, MessageBody=f"dead {i}")
    assert len(queue.dead_letters(limit=11)) == 11
    plain = sqs_client.create_queue(QueueName="no-dlq")["QueueUrl"]
    q = SqsQueue(plain, client=sqs_client)
    assert q.dlq_url is None
    assert q.dead_letters() == []
    assert q.stats().dead == 0


def test_purge_matching(queue: SqsQueue, sqs_client: SQSClient) -> None:
    queue.send(make_s3_event(bucket="b", key="users/u/img1.jpg", size=1))
    queue.send(make_s3_event(bucket="b", key="users/u/img2.jpg", size=1))
    assert queue.dlq_url is not None
    sqs_client.send_message(
        QueueUrl=queue.dlq_url, MessageBody=make_s3_event(bucket="b", key="users/u/img1.jpg", size=1)
    )
    assert queue.purge_matching("img1") == 2
    # The other message is visible again straight away.
    assert [parse_s3_event(m.body)[0].key for m in queue.receive(max_messages=10)] == ["users/u/img2.jpg"]
    assert queue.stats().dead == 0
    with pytest.raises(QueueError):
        queue.purge_matching("")


def test_errors_become_queue_errors(sqs_client: SQSClient) -> None:
    q = SqsQueue("https://sqs.us-east-1.amazonaws.com/123456789012/missing", client=sqs_client)
    with pytest.raises(QueueError):
        q.send("x")
    with pytest.raises(QueueError):
        q.receive()
    with pytest.raises(QueueError):
        q.stats()


def test_client_is_built_lazily(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import labelkit.aws

    calls: list[str] = []
    real = labelkit.aws.client

    def counting(service: str, *, region: str, client: object | None = None) -> object:
        calls.append(service)
        return real(service, region=region, client=client)

    monkeypatch.setattr(labelkit.aws, "client", counting)
    q = SqsQueue("https://sqs.us-east-1.amazonaws.com/123456789012/lazy", region=REGION)
    assert calls == []
    q.client.create_queue(QueueName="lazy")
    q.send("hello")
    assert [m.body for m in q.receive()] == ["hello"]
    assert calls == ["sqs"]


def test_s3_notification_to_sqs_round_trips_hostile_keys(s3_client: S3Client, sqs_client: SQSClient) -> None:
    # GIVEN a bucket whose object-created events go to the queue (as infra sets it up)
    url, _ = ensure_queues("uploads", client=sqs_client, max_receives=3, visibility_timeout=30)
    arn = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3_client.create_bucket(Bucket="lk-bucket")
    s3_client.put_bucket_notification_configuration(
        Bucket="lk-bucket",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    store = S3Store("lk-bucket", prefix="img", region=REGION, client=s3_client)
    q = SqsQueue(url, region=REGION, visibility_timeout=30, max_receives=3, client=sqs_client)
    key = "users/u 1/my photo + more ü%.jpg"
    # WHEN an object with spaces, '+', '%' and unicode in its key is stored
    store.put(key, b"jpeg bytes", content_type="image/jpeg")
    # THEN the worker skips the TestEvent and recovers the exact key
    events: list[ObjectEvent] = []
    bodies = []
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        for msg in q.receive(max_messages=10, wait_seconds=1):
            bodies.append(msg.body)
            events.extend(parse_s3_event(msg.body))  # s3:TestEvent -> []
            q.delete(msg.receipt_handle)
    assert any('"s3:TestEvent"' in b for b in bodies), bodies
    # S3 plus-encodes keys (moto also encodes "/" as %2F; AWS keeps it): unquote_plus handles both.
    assert any("my+photo+%2B+more" in b for b in bodies), bodies
    assert len(events) == 1
    assert events[0].bucket == "lk-bucket"
    assert events[0].key == "img/" + key
    assert store.relative_key(events[0].key) == key
    assert events[0].size == len(b"jpeg bytes")
    assert store.get(store.relative_key(events[0].key)) == b"jpeg bytes"
