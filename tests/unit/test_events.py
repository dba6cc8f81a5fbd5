"""The one message format: S3 event notifications, made and parsed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.parser.models import S3Model, S3SqsEventNotificationModel

from labelkit.queue.events import MalformedEvent, ObjectEvent, make_s3_event, parse_s3_event

HOSTILE_KEYS = [
    "users/u1/plain.jpg",
    "users/u1/with space.jpg",
    "users/u1/a+b.jpg",
    "users/u1/a + b++.jpg",
    "users/u1/100%.jpg",
    "users/u1/%2B%20literal.jpg",
    "users/ü/猫 🐈.png",
    "users/u1/q?x=1&y=#frag.jpg",
    "users/u1/semi;colon,comma'quote\".jpg",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_round_trip_keeps_the_exact_key(key: str) -> None:
    body = make_s3_event(bucket="my-bucket", key=key, size=1234)
    assert parse_s3_event(body) == [
        ObjectEvent(bucket="my-bucket", key=key, size=1234, event_name="ObjectCreated:Put")
    ]


def test_keys_are_encoded_as_s3_does() -> None:
    # S3 plus-encodes keys in notifications: spaces become '+', '+' becomes %2B, '/' stays.
    doc = json.loads(make_s3_event(bucket="b", key="users/u 1/a+b.jpg", size=3))
    assert doc["Records"][0]["s3"]["object"]["key"] == "users/u+1/a%2Bb.jpg"


def test_parse_accepts_str_bytes_and_dict() -> None:
    body = make_s3_event(bucket="b", key="k 1", size=7)
    expected = [ObjectEvent(bucket="b", key="k 1", size=7, event_name="ObjectCreated:Put")]
    assert parse_s3_event(body) == expected
    assert parse_s3_event(body.encode()) == expected
    assert parse_s3_event(json.loads(body)) == expected


def test_a_record_without_size_parses_with_size_none() -> None:
    # Older local messages and other producers may leave the size out.
    doc = json.loads(make_s3_event(bucket="b", key="k 1", size=7))
    del doc["Records"][0]["s3"]["object"]["size"]
    assert parse_s3_event(doc) == [
        ObjectEvent(bucket="b", key="k 1", size=None, event_name="ObjectCreated:Put")
    ]


# --- the local event against Powertools' own S3 models (third-party readers)

ETAG = "9b2cf535f27731c974343645a3985328"


def test_powertools_s3model_parses_the_local_event() -> None:
    # GIVEN the event the local queue carries for an upload
    body = make_s3_event(bucket="local", key="users/ü/🐈 a+b.jpg", size=1234, etag=ETAG, region="eu-west-1")
    # WHEN Powertools' strict pydantic model parses it
    event = S3Model.model_validate_json(body)
    # THEN every field a real S3 record has is there, with values that make sense locally
    [record] = event.Records
    assert (record.eventVersion, record.eventSource, record.awsRegion) == ("2.1", "aws:s3", "eu-west-1")
    assert record.eventName == "ObjectCreated:Put"
    assert abs((datetime.now(UTC) - record.eventTime).total_seconds()) < 3600
    assert record.userIdentity.principalId == "labelkit"
    assert str(record.requestParameters.sourceIPAddress) == "127.0.0.1/32"
    assert len(record.responseElements.x_amz_request_id) == 16 and record.responseElements.x_amz_id_2
    assert record.s3.s3SchemaVersion == "1.0" and record.s3.configurationId == "labelkit-local"
    assert record.s3.bucket.name == "local" and record.s3.bucket.arn == "arn:aws:s3:::local"
    assert record.s3.bucket.ownerIdentity.principalId == "labelkit"
    assert record.s3.object is not None
    assert unquote_plus(record.s3.object.key) == "users/ü/🐈 a+b.jpg"
    assert (record.s3.object.size, record.s3.object.eTag) == (1234, ETAG)
    assert record.s3.object.sequencer and int(record.s3.object.sequencer, 16) > 0


def test_powertools_s3model_accepts_it_inside_an_sqs_delivery() -> None:
    body = make_s3_event(bucket="photos", key="uploads/users/u/i.jpg", size=5, etag=ETAG)
    sqs_event = {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185",
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:labelkit-jobs",
                "awsRegion": "us-east-1",
            }
        ]
    }
    parsed = S3SqsEventNotificationModel.model_validate(sqs_event)
    assert parsed.Records[0].body.Records[0].s3.bucket.name == "photos"


def test_powertools_s3event_reads_the_local_event() -> None:
    body = make_s3_event(bucket="local", key="users/u 1/a+b.jpg", size=99, etag=ETAG)
    event = S3Event(json.loads(body))
    assert (event.bucket_name, event.object_key) == ("local", "users/u 1/a+b.jpg")
    record = event.record
    assert record.aws_region == "us-east-1" and record.event_source == "aws:s3"
    assert record.user_identity.principal_id == "labelkit"
    assert record.request_parameters.source_ip_address == "127.0.0.1"
    assert set(record.response_elements) == {"x-amz-request-id", "x-amz-id-2"}
    assert record.s3.configuration_id == "labelkit-local"
    assert record.s3.bucket.arn == "arn:aws:s3:::local"
    assert record.s3.bucket.owner_identity.principal_id == "labelkit"
    obj = record.s3.get_object
    assert (obj.size, obj.etag) == (99, ETAG) and obj.sequencer


def test_sequencers_grow_for_later_events() -> None:
    first, second = (
        json.loads(make_s3_event(bucket="b", key="k", size=1))["Records"][0]["s3"]["object"]["sequencer"]
        for _ in range(2)
    )
    assert int(second, 16) >= int(first, 16)


def test_parse_accepts_aws_sample_s3_event() -> None:
    # The sample record Powertools documents (from AWS's own sample event).
    [sample] = S3Model.model_fields["Records"].examples or []
    assert parse_s3_event({"Records": [sample]}) == [
        ObjectEvent(
            bucket="lambda-artifacts-deafc19498e3f2df",
            key="b21b84d653bb07b05b1e6b33684dc11b",
            size=1305107,
            event_name="ObjectCreated:Put",
        )
    ]


def test_test_event_yields_nothing() -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-01-01T00:00:00.000Z",
        "Bucket": "b",
        "RequestId": "X",
        "HostId": "Y",
    }
    assert parse_s3_event(json.dumps(test_event)) == []


def test_sns_wrapped_event_is_unwrapped() -> None:
    inner = make_s3_event(bucket="b", key="a b.jpg", size=1)
    assert parse_s3_event(json.dumps({"Type": "Notification", "Message": inner}))[0].key == "a b.jpg"


def test_non_object_created_records_are_skipped() -> None:
    doc: dict[str, Any] = json.loads(make_s3_event(bucket="b", key="keep.jpg", size=1))
    removed = json.loads(json.dumps(doc["Records"][0]))
    removed["eventName"] = "ObjectRemoved:Delete"
    removed["s3"]["object"]["key"] = "gone.jpg"
    copied = json.loads(json.dumps(doc["Records"][0]))
    copied["eventName"] = "ObjectCreated:Copy"
    copied["s3"]["object"]["key"] = "copy.jpg"
    doc["Records"] += [removed, copied]
    events = parse_s3_event(doc)
    assert [(e.key, e.event_name) for e in events] == [
        ("keep.jpg", "ObjectCreated:Put"),
        ("copy.jpg", "ObjectCreated:Copy"),
    ]


def test_no_records_at_all_is_an_empty_list() -> None:
    assert parse_s3_event({"Records": []}) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        b"\xff\xfe",
        "[]",
        "42",
        "null",
        "{}",
        json.dumps({"Records": "nope"}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}}}]}),
        json.dumps(
            {
                "Records": [
                    {
                        "eventName": "ObjectCreated:Put",
                        "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": "big"}},
                    }
                ]
            }
        ),
        json.dumps({"Records": ["a string"]}),
    ],
)
def test_malformed_bodies_raise(body: str | bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse_s3_event(body)


def test_malformed_event_is_a_value_error() -> None:
    # Callers (the pipeline) may catch ValueError for "permanently bad message".
    assert issubclass(MalformedEvent, ValueError)
