"""The one message format: S3 event notifications, made and parsed."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
    doc = json.loads(make_s3_event(bucket="b", key="users/u 1/a+b.jpg"))
    assert doc["Records"][0]["s3"]["object"]["key"] == "users/u+1/a%2Bb.jpg"
    assert "size" not in doc["Records"][0]["s3"]["object"]


def test_parse_accepts_str_bytes_and_dict() -> None:
    body = make_s3_event(bucket="b", key="k 1", size=None)
    expected = [ObjectEvent(bucket="b", key="k 1", size=None, event_name="ObjectCreated:Put")]
    assert parse_s3_event(body) == expected
    assert parse_s3_event(body.encode()) == expected
    assert parse_s3_event(json.loads(body)) == expected


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
