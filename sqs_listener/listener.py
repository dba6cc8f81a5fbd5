"""The listener loop: N workers receive messages, run the pipeline, delete on success.

Delivery is at least once: a message is deleted only after its labels are
committed, so a worker killed at any moment loses nothing (the message comes
back after its visibility timeout) and duplicates nothing (writes are
idempotent). While a job runs, a heartbeat keeps the message hidden.

Stopping (``stop`` event, set on SIGTERM/SIGINT): each worker finishes the
message in hand, takes no more, and hands back any message it received but
had not started (visibility 0), so another worker can have it at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from labelkit.pipeline import Pipeline, RetryableError
from labelkit.queue import JobQueue, QueueMessage
from labelkit.queue.events import MalformedEvent

logger = logging.getLogger(__name__)

STOP_LATENCY = 5  # seconds: the longest a worker waits in one receive


@dataclass
class ListenerStats:
    received: int = 0
    done: int = 0
    retried: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Heartbeat:
    """Extends a message's visibility every ``timeout / 3`` seconds while a job runs."""

    def __init__(self, queue: JobQueue, receipt_handle: str, timeout: int) -> None:
        self._queue, self._handle, self._timeout = queue, receipt_handle, timeout
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._done.wait(max(1.0, self._timeout / 3)):
            try:
                self._queue.extend(self._handle, self._timeout)
            except Exception:  # a missed beat only risks a redelivery, which is safe
                logger.warning("could not extend message visibility", exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class Listener:
    def __init__(
        self,
        *,
        queue: JobQueue,
        pipeline: Pipeline,
        workers: int = 2,
        wait_seconds: int = 20,
        visibility_timeout: int = 120,
    ) -> None:
        self.queue = queue
        self.pipeline = pipeline
        self.workers = workers
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.stats = ListenerStats()

    def run(self, stop: threading.Event, *, drain: bool = False) -> ListenerStats:
        """Run until ``stop`` is set (or, with ``drain``, until the queue has nothing to give)."""
        threads = [
            threading.Thread(target=self._work, args=(stop, drain), name=f"worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
        return self.stats

    def _work(self, stop: threading.Event, drain: bool) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                # Long-poll in slices of at most STOP_LATENCY seconds so a stop request
                # is noticed quickly (an empty receive is cheap on SQS and locally).
                wait = 1 if drain else min(self.wait_seconds, STOP_LATENCY)
                messages = self.queue.receive(max_messages=1, wait_seconds=wait)
                backoff = 0.5
            except Exception:
                # Queue unreachable (database down, SQS throttling): wait and try again,
                # never exit; the messages are safe where they are.
                logger.warning("receive failed; retrying in %.1fs", backoff, exc_info=True)
                stop.wait(backoff)
                backoff = min(backoff * 2, 15.0)
                continue
            if not messages:
                if drain:
                    return
                continue
            for i, message in enumerate(messages):
                if stop.is_set():
                    for rest in messages[i:]:
                        self._release(rest)
                    return
                self.stats.add(received=1)
                self._process(message)

    def _process(self, message: QueueMessage) -> None:
        try:
            with Heartbeat(self.queue, message.receipt_handle, self.visibility_timeout):
                self.pipeline.handle_message(message.body, receive_count=message.receive_count)
        except RetryableError:
            self.stats.add(retried=1)
            return  # not deleted: it comes back after the visibility timeout
        except MalformedEvent as e:
            logger.error("dropping a message that is not an S3 event: %s", e)
        except Exception:
            logger.exception("unexpected error handling message %s", message.message_id)
            self.stats.add(errors=1)
            return
        self._delete(message)

    def _delete(self, message: QueueMessage) -> None:
        for attempt in range(5):
            try:
                self.queue.delete(message.receipt_handle)
                self.stats.add(done=1)
                return
            except Exception:
                # Not deleting only means one harmless redelivery (writes are idempotent).
                logger.warning("delete failed (attempt %d)", attempt + 1, exc_info=True)
                time.sleep(0.5 * (attempt + 1))

    def _release(self, message: QueueMessage) -> None:
        try:
            self.queue.release(message.receipt_handle)
        except Exception:
            logger.warning("could not release message %s", message.message_id, exc_info=True)
