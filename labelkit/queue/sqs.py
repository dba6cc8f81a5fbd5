"""``SqsQueue``: the ``JobQueue`` on Amazon SQS, with a dead-letter queue.

SQS itself enforces the visibility timeout and the redrive policy (after
``maxReceiveCount`` receives a message moves to the DLQ); ``max_receives`` here
only mirrors that setting for callers (e.g. to mark an image ``failed`` on the
last attempt). The boto3 client is injected or built lazily on first use.

SQS cannot peek at messages, which shapes three operations:

* :meth:`SqsQueue.dead_letters` *receives* from the DLQ with a short visibility
  (``peek_visibility`` seconds), so the listed dead letters are hidden from
  other readers of the DLQ for that long. Their handles are remembered in this
  process for :meth:`SqsQueue.redrive`.
* :meth:`SqsQueue.redrive` sends the body back to the main queue, then deletes
  the DLQ copy (at-least-once: a failure between the two leaves a duplicate,
  which the idempotent pipeline tolerates).
* :meth:`SqsQueue.purge_matching` is best effort: it can only see messages that
  are visible, and receiving main-queue messages to inspect them counts as a
  receive towards ``maxReceiveCount``.

Unlike ``LocalQueue``, SQS may still accept the receipt handle of an earlier
delivery for ``delete`` (AWS documents that such a delete "succeeds, but the
message might not be deleted"; moto deletes it): workers must not rely on a stale
handle being refused.

``ClientError``/``BotoCoreError`` are translated into ``QueueError``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from labelkit import aws
from labelkit.errors import QueueError
from labelkit.queue import QueueMessage, QueueStats

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

MAX_WAIT = 20  # SQS's longest long poll
MAX_BATCH = 10  # SQS's largest receive batch
MAX_VISIBILITY = 12 * 3600
_INVALID_HANDLE = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})
_HANDLE_CACHE = 10_000


@contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as e:
        raise QueueError(f"SQS: cannot {action}: {e}") from e


def _queue_name_from_arn(arn: str) -> tuple[str, str]:
    """``(name, account_id)`` from ``arn:aws:sqs:region:account:name``."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise QueueError(f"not an SQS queue ARN: {arn!r}")
    return parts[5], parts[4]


class SqsQueue:
    """A ``JobQueue`` on SQS. ``dlq_url`` is discovered from the RedrivePolicy if not given."""

    def __init__(
        self,
        queue_url: str,
        region: str = "us-east-1",
        visibility_timeout: int = 120,
        max_receives: int = 4,
        client: SQSClient | None = None,
        dlq_url: str | None = None,
        peek_visibility: int = 10,
    ) -> None:
        if not queue_url:
            raise QueueError("SqsQueue needs a queue URL")
        self.queue_url = queue_url
        self.region = region
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.peek_visibility = peek_visibility
        self._client = client
        self._dlq_url = dlq_url
        self._dlq_resolved = dlq_url is not None
        self._lock = threading.Lock()
        # DLQ receipt handle -> (message id, body), for redrive; bounded.
        self._dead: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __repr__(self) -> str:
        return f"SqsQueue({self.queue_url!r})"

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws.client("sqs", region=self.region)
        return self._client

    @property
    def dlq_url(self) -> str | None:
        """The dead-letter queue's URL (from the RedrivePolicy), or None if it has none."""
        if not self._dlq_resolved:
            with _aws_errors("find the dead-letter queue"):
                attrs = self.client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
                ).get("Attributes", {})
                policy = attrs.get("RedrivePolicy")
                if policy:
                    arn = json.loads(policy)["deadLetterTargetArn"]
                    name, account = _queue_name_from_arn(arn)
                    self._dlq_url = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)[
                        "QueueUrl"
                    ]
                else:
                    logger.warning("SQS queue %s has no RedrivePolicy: no dead-letter queue", self.queue_url)
            self._dlq_resolved = True
        return self._dlq_url

    # --- sending and receiving ----------------------------------------------

    def send(self, body: str) -> str:
        with _aws_errors("send a message"):
            return self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"]

    def _receive_from(
        self, url: str, *, max_messages: int, wait_seconds: float, visibility: int | None
    ) -> list[QueueMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": min(MAX_BATCH, max(1, int(max_messages))),
            "WaitTimeSeconds": min(MAX_WAIT, max(0, math.ceil(wait_seconds))),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility is not None:
            kwargs["VisibilityTimeout"] = visibility
        resp = self.client.receive_message(**kwargs)
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in resp.get("Messages", [])
        ]

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0) -> list[QueueMessage]:
        """Long-polls up to ``wait_seconds`` (at most 20) for up to ``max_messages`` (at most 10)."""
        with _aws_errors("receive messages"):
            return self._receive_from(
                self.queue_url,
                max_messages=max_messages,
                wait_seconds=wait_seconds,
                visibility=self.visibility_timeout,
            )

    def delete(self, receipt_handle: str) -> None:
        """Acknowledge a message; an invalid (stale) handle is ignored."""
        try:
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
        except ClientError as e:
            if aws.error_code(e) in _INVALID_HANDLE:
                logger.info("SQS: delete with an invalid receipt handle ignored")
                return
            raise QueueError(f"SQS: cannot delete a message: {e}") from e
        except BotoCoreError as e:
            raise QueueError(f"SQS: cannot delete a message: {e}") from e

    def extend(self, receipt_handle: str, seconds: int) -> None:
        """Hide the message ``seconds`` more from now; ``QueueError`` if the handle is no longer valid."""
        if seconds < 0 or seconds > MAX_VISIBILITY:
            raise QueueError(f"visibility extension must be 0..{MAX_VISIBILITY} seconds")
        with _aws_errors("extend a message's visibility"):
            self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=int(seconds)
            )

    def release(self, receipt_handle: str) -> None:
        """Make the message visible again now; an invalid handle is ignored."""
        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
            )
        except ClientError as e:
            if aws.error_code(e) in _INVALID_HANDLE:
                logger.info("SQS: release with an invalid receipt handle ignored")
                return
            raise QueueError(f"SQS: cannot release a message: {e}") from e
        except BotoCoreError as e:
            raise QueueError(f"SQS: cannot release a message: {e}") from e

    # --- inspection and dead letters -----------------------------------------

    def _counts(self, url: str) -> tuple[int, int]:
        attrs = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        return (
            int(attrs.get("ApproximateNumberOfMessages", "0")),
            int(attrs.get("ApproximateNumberOfMessagesNotVisible", "0")),
        )

    def stats(self) -> QueueStats:
        """Approximate counts (SQS's own, eventually consistent)."""
        with _aws_errors("read queue statistics"):
            visible, in_flight = self._counts(self.queue_url)
            dead = sum(self._counts(self.dlq_url)) if self.dlq_url else 0
        return QueueStats(visible=visible, in_flight=in_flight, dead=dead)

    def dead_letters(self, *, limit: int = 100) -> Sequence[QueueMessage]:
        """Up to ``limit`` dead letters, received from the DLQ.

        They stay hidden for ``peek_visibility`` seconds afterwards (SQS cannot
        peek), so a second listing within that time shows fewer. Their handles
        are kept in this process for :meth:`redrive`.
        """
        url = self.dlq_url
        if url is None or limit <= 0:
            return []
        seen: dict[str, QueueMessage] = {}
        with _aws_errors("list dead letters"):
            while len(seen) < limit:
                batch = self._receive_from(
                    url,
                    max_messages=min(MAX_BATCH, limit - len(seen)),
                    wait_seconds=0,
                    visibility=self.peek_visibility,
                )
                fresh = [m for m in batch if m.message_id not in seen]
                if not fresh:
                    break
                for m in fresh:
                    seen[m.message_id] = m
        with self._lock:
            for m in seen.values():
                self._dead[m.receipt_handle] = (m.message_id, m.body)
            while len(self._dead) > _HANDLE_CACHE:
                self._dead.popitem(last=False)
        return list(seen.values())

    def redrive(self, receipt_handle: str) -> None:
        """Send a dead letter listed by :meth:`dead_letters` back to the main queue.

        Raises ``QueueError`` for a handle this process did not list (SQS cannot
        look a body up by handle).
        """
        with self._lock:
            entry = self._dead.get(receipt_handle)
        url = self.dlq_url
        if entry is None or url is None:
            raise QueueError("SQS: unknown dead-letter handle; list the dead letters again")
        message_id, body = entry
        with _aws_errors("redrive a dead letter"):
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)
        try:
            self.client.delete_message(QueueUrl=url, ReceiptHandle=receipt_handle)
        except ClientError as e:
            if aws.error_code(e) not in _INVALID_HANDLE:
                raise QueueError(f"SQS: redriven, but cannot delete the dead letter: {e}") from e
            logger.warning("SQS: dead letter %s redriven but its handle expired; it may reappear", message_id)
        except BotoCoreError as e:
            raise QueueError(f"SQS: redriven, but cannot delete the dead letter: {e}") from e
        with self._lock:
            self._dead.pop(receipt_handle, None)

    def purge_matching(self, needle: str) -> int:
        """Best effort: delete visible messages of the queue and its DLQ whose body contains ``needle``.

        Limits: in-flight messages are not seen; messages received while
        scanning count one receive towards ``maxReceiveCount`` (they are
        released straight after); at most ``10 * 100`` messages per queue are
        inspected.
        """
        if not needle:
            raise QueueError("purge_matching needs a non-empty needle")
        urls = [self.queue_url] + ([self.dlq_url] if self.dlq_url else [])
        deleted = 0
        with _aws_errors("purge messages"):
            for url in urls:
                keep: list[str] = []
                seen: set[str] = set()
                for _ in range(100):
                    batch = self._receive_from(
                        url, max_messages=MAX_BATCH, wait_seconds=0, visibility=self.peek_visibility
                    )
                    fresh = [m for m in batch if m.message_id not in seen]
                    if not fresh:
                        break
                    for m in fresh:
                        seen.add(m.message_id)
                        if needle in m.body:
                            self.client.delete_message(QueueUrl=url, ReceiptHandle=m.receipt_handle)
                            deleted += 1
                        else:
                            keep.append(m.receipt_handle)
                for start in range(0, len(keep), MAX_BATCH):
                    chunk = keep[start : start + MAX_BATCH]
                    self.client.change_message_visibility_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                            for i, h in enumerate(chunk)
                        ],
                    )
        return deleted


def ensure_queues(
    name: str, *, client: SQSClient, max_receives: int, visibility_timeout: int
) -> tuple[str, str]:
    """Create (or update) queue ``name`` and its DLQ ``name-dlq`` with a redrive policy.

    Returns ``(queue_url, dlq_url)``. The DLQ keeps messages for 14 days (the maximum).
    """
    with _aws_errors(f"create the queues for {name}"):
        dlq_url = _create_or_update(client, f"{name}-dlq", {"MessageRetentionPeriod": str(14 * 24 * 3600)})
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
        attrs = {
            "VisibilityTimeout": str(visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": str(MAX_WAIT),
            "RedrivePolicy": json.dumps(policy),
        }
        queue_url = _create_or_update(client, name, attrs)
    return queue_url, dlq_url


def _create_or_update(client: SQSClient, name: str, attrs: dict[str, str]) -> str:
    try:
        return client.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]  # type: ignore[arg-type]
    except ClientError as e:
        if aws.error_code(e) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise QueueError(f"SQS: cannot create queue {name}: {e}") from e
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    client.set_queue_attributes(QueueUrl=url, Attributes=attrs)  # type: ignore[arg-type]
    return url
