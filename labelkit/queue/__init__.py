"""Job queues: the ``JobQueue`` protocol and its adapters.

``LocalQueue`` keeps messages in a table of the Labelkit database (SQLite by
default), ``SqsQueue`` uses Amazon SQS. Both carry the same S3-event-shaped
bodies (see :mod:`labelkit.queue.events`) with at-least-once delivery: a
received message stays hidden for the visibility timeout and comes back unless
it is deleted; after ``max_receives`` deliveries it goes to the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from labelkit.settings import Settings


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int  # 1 on first delivery


@dataclass(frozen=True, slots=True)
class QueueStats:
    visible: int  # waiting to be received
    in_flight: int  # received, not yet deleted, still hidden
    dead: int  # in the dead-letter queue


@runtime_checkable
class JobQueue(Protocol):
    max_receives: int

    def send(self, body: str) -> str:
        """Enqueue ``body``; returns the message id."""
        ...

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0) -> list[QueueMessage]:
        """Up to ``max_messages`` messages, waiting up to ``wait_seconds`` for the first."""
        ...

    def delete(self, receipt_handle: str) -> None:
        """Acknowledge a message (after success). Unknown/stale handles are ignored."""
        ...

    def extend(self, receipt_handle: str, seconds: int) -> None:
        """Keep a message hidden ``seconds`` more from now (long jobs)."""
        ...

    def release(self, receipt_handle: str) -> None:
        """Make a received message visible again now (worker shutting down)."""
        ...

    def stats(self) -> QueueStats: ...

    def dead_letters(self, *, limit: int = 100) -> Sequence[QueueMessage]:
        """Messages in the dead-letter queue (receipt handles usable with ``redrive``)."""
        ...

    def redrive(self, receipt_handle: str) -> None:
        """Move one dead letter back to the main queue with a fresh receive count."""
        ...

    def purge_matching(self, needle: str) -> int:
        """Delete every message (live or dead) whose body contains ``needle``; returns the count.

        Used when an image is deleted, so no queue entry is left orphaned."""
        ...


def make_queue(settings: Settings, *, engine: Engine | None = None) -> JobQueue:
    """The queue the settings ask for. ``engine`` is the Labelkit database (local queue)."""
    if settings.uses_sqs:
        from labelkit.queue.sqs import SqsQueue

        return SqsQueue(
            queue_url=settings.queue_url,
            region=settings.aws_region,
            visibility_timeout=settings.queue_visibility_timeout,
            max_receives=settings.queue_max_receives,
        )
    from labelkit.db.engine import get_engine
    from labelkit.queue.local import LocalQueue

    return LocalQueue(
        engine if engine is not None else get_engine(settings),
        name=settings.queue_name,
        visibility_timeout=settings.queue_visibility_timeout,
        max_receives=settings.queue_max_receives,
    )
