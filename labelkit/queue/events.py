"""The one message format: the S3 event notification.

The local queue, SQS (fed by the bucket's notification) and the Lambda all carry
S3's ``{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ..},
"object": {"key": .., "size": ..}}}]}``.

:func:`make_s3_event` writes the *whole* record S3 sends (``eventVersion`` 2.1,
``awsRegion``, ``userIdentity``, ``requestParameters``, ``responseElements``,
``s3.configurationId``, the bucket's ``ownerIdentity`` and ``arn``, the object's
``eTag`` and ``sequencer``), so third-party readers of S3 events (Powertools'
``S3Model`` and ``S3Event``, AWS's sample consumers) accept what the local queue
carries. The values say where the event came from: region from the settings,
principal ``labelkit``, source address ``127.0.0.1``, configuration
``labelkit-local``, a sequencer that grows with time, and the object's MD5 as the
``eTag`` when the producer has the bytes (an upload), else an empty tag (a retry
or relabel; nothing reads it).

:func:`parse_s3_event` is deliberately lenient: it needs only the bucket name and
the key, because moto's notifications (and messages queued by older Labelkit
versions) omit ``userIdentity``, ``requestParameters`` and ``sequencer``, which
Powertools' strict ``S3Model`` requires. Keys arrive plus-encoded from S3 and are
decoded with ``unquote_plus``; ``s3:TestEvent`` messages (sent once when a
notification is configured) yield no records.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

LOCAL_CONFIGURATION_ID = "labelkit-local"
LOCAL_PRINCIPAL = "labelkit"
LOCAL_SOURCE_IP = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    bucket: str
    key: str  # decoded, as stored
    size: int | None
    event_name: str


class MalformedEvent(ValueError):
    """The body is not an S3 event notification (nor a test event)."""


def make_s3_event(
    *,
    bucket: str,
    key: str,
    size: int,
    etag: str = "",
    region: str = "us-east-1",
) -> str:
    """An ``ObjectCreated:Put`` notification body for ``key`` (encoded as S3 does),
    with every field of a real S3 record (see the module docstring for the values)."""
    request_id = os.urandom(8).hex().upper()
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": LOCAL_PRINCIPAL},
        "requestParameters": {"sourceIPAddress": LOCAL_SOURCE_IP},
        "responseElements": {
            "x-amz-request-id": request_id,
            "x-amz-id-2": base64.b64encode(os.urandom(48)).decode("ascii"),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": LOCAL_CONFIGURATION_ID,
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": LOCAL_PRINCIPAL},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": int(size),
                "eTag": etag,
                # S3's sequencer is a hex string that grows for later events on a key.
                "sequencer": f"{time.time_ns():018X}",
            },
        },
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
