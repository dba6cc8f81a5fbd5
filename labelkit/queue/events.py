"""The one message format: the S3 event notification.

The local queue, SQS (fed by the bucket's notification) and the Lambda all carry
``{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ..},
"object": {"key": .., "size": ..}}}]}``. Keys arrive plus-encoded from S3, so
:func:`parse_s3_event` decodes them with ``unquote_plus``; ``s3:TestEvent``
messages (sent once when a notification is configured) yield no records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    bucket: str
    key: str  # decoded, as stored
    size: int | None
    event_name: str


class MalformedEvent(ValueError):
    """The body is not an S3 event notification (nor a test event)."""


def make_s3_event(*, bucket: str, key: str, size: int | None = None) -> str:
    """An ``ObjectCreated:Put`` notification body for ``key`` (encoded as S3 does)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
    }
    return json.dumps({"Records": [record]})


def parse_s3_event(body: str | bytes | dict[str, Any]) -> list[ObjectEvent]:
    """The object-created records in ``body``; ``[]`` for ``s3:TestEvent``.

    Raises ``MalformedEvent`` for anything that is not an S3 notification.
    """
    try:
        doc = json.loads(body) if isinstance(body, str | bytes) else body
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedEvent(f"message body is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise MalformedEvent("message body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    # An S3 notification delivered through SNS wraps the event in "Message".
    if "Records" not in doc and isinstance(doc.get("Message"), str):
        return parse_s3_event(doc["Message"])
    records = doc.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("message has no Records")
    events = []
    for rec in records:
        try:
            name = str(rec.get("eventName", ""))
            if not name.startswith("ObjectCreated"):
                continue
            s3 = rec["s3"]
            size = s3["object"].get("size")
            events.append(
                ObjectEvent(
                    bucket=str(s3["bucket"]["name"]),
                    key=unquote_plus(str(s3["object"]["key"])),
                    size=int(size) if size is not None else None,
                    event_name=name,
                )
            )
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise MalformedEvent(f"malformed S3 record: {e!r}") from e
    return events
