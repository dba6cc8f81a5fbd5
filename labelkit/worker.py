"""The worker loop: N workers receive messages, run the pipeline, delete on success.

Run by ``python -m sqs_listener`` (the long-poll worker) and by the demo.

Delivery is at least once: a message is deleted only after its labels are
committed, so a worker killed at any moment loses nothing (the message comes
back after its visibility timeout) and duplicates nothing (writes are
idempotent). While a job runs, a heartbeat keeps the message hidden.

Stopping (``stop`` event, set on SIGTERM/SIGINT): each worker finishes the
message in hand, takes no more, and hands back any message it received but
had not started (visibility 0), so another worker can have it at once. A worker
that cannot finish within ``stop_grace`` seconds (blocked on a dead connection,
say) is left behind: ``run`` returns anyway and the process exits; its message
comes back after its visibility timeout, so nothing is lost.

Housekeeping (``housekeeping``, e.g. :func:`labelkit.reconcile.reconcile`) runs at
start and every ``housekeeping_every`` seconds in a thread of its own; a failure
is logged and tried again next time, it never stops the workers. So do ``learning``
(:func:`labelkit.learning.learn_changed`, every ``learning_every`` seconds) and ``people``
(:func:`labelkit.people.recluster_changed`, every ``people_every`` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labelkit.pipeline import Pipeline, RetryableError
from labelkit.queue import JobQueue, QueueMessage
from labelkit.queue.events import MalformedEvent
from labelkit.retry import a_few_times, until_stopped

if TYPE_CHECKING:
    from labelkit.services import Services

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
        stop_grace: float = 15.0,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_every: float = 300.0,
        learning: Callable[[], object] | None = None,
        learning_every: float = 10.0,
        people: Callable[[], object] | None = None,
        people_every: float = 15.0,
    ) -> None:
        self.queue = queue
        self.pipeline = pipeline
        self.workers = workers
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.stop_grace = stop_grace
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self.learning = learning
        self.learning_every = learning_every
        self.people = people
        self.people_every = people_every
        self.stats = ListenerStats()

    def run(self, stop: threading.Event, *, drain: bool = False) -> ListenerStats:
        """Run until ``stop`` is set (or, with ``drain``, until the queue has nothing to give)."""
        threads = [
            threading.Thread(target=self._work, args=(stop, drain), name=f"worker-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for name, task, every in (
            ("housekeeping", self.housekeeping, self.housekeeping_every),
            ("learning", self.learning, self.learning_every),
            ("people", self.people, self.people_every),
        ):
            if task is not None and not drain:
                threading.Thread(
                    target=_every, args=(stop, name, task, every), name=name, daemon=True
                ).start()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads) and not stop.wait(0.1):
            pass
        # Stopping (or drained): give the workers the grace period to finish what they hold.
        deadline = time.monotonic() + self.stop_grace
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            logger.warning(
                "stopping without %s (still blocked after %.0fs); their messages will be redelivered",
                ", ".join(stuck),
                self.stop_grace,
            )
        return self.stats

    def _work(self, stop: threading.Event, drain: bool) -> None:
        # Long-poll in slices of at most STOP_LATENCY seconds so a stop request is noticed
        # quickly (an empty receive is cheap on SQS and locally). Draining ends at the first
        # empty receive, after at most a second's wait (less if wait_seconds is shorter).
        wait = min(self.wait_seconds, 1) if drain else min(self.wait_seconds, STOP_LATENCY)
        # Queue unreachable (database down, SQS throttling): wait and try again, never
        # exit; the messages are safe where they are.
        receiving = until_stopped(stop, what="receive", log=logger)
        while not stop.is_set():
            messages = receiving(self.queue.receive, max_messages=1, wait_seconds=wait)
            if messages is None:  # stopped while the queue was unreachable
                return
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
        def delete() -> bool:
            self.queue.delete(message.receipt_handle)
            self.stats.add(done=1)
            return True

        # Not deleting only means one harmless redelivery (writes are idempotent).
        a_few_times(what="delete", log=logger)(delete)

    def _release(self, message: QueueMessage) -> None:
        try:
            self.queue.release(message.receipt_handle)
        except Exception:
            logger.warning("could not release message %s", message.message_id, exc_info=True)


def _every(stop: threading.Event, name: str, task: Callable[[], object], seconds: float) -> None:
    """Run ``task`` now and then every ``seconds`` until ``stop``; a failure waits for the next turn."""
    while not stop.is_set():
        try:
            task()
        except Exception:
            logger.warning("%s failed; trying again later", name, exc_info=True)
        stop.wait(seconds)


def label_queued(services: Services) -> ListenerStats:
    """Label everything queued now, in this process, and return when the queue is empty (the
    demo loader and ``labelkit upload --label``; a running listener would do the same), then
    group the new faces again as the listener does once photos stop coming."""
    from labelkit.people import recluster_changed
    from labelkit.services import build_pipeline

    settings = services.settings
    stats = Listener(
        queue=services.queue,
        pipeline=build_pipeline(services),
        workers=settings.listener_workers,
        wait_seconds=1,
        visibility_timeout=settings.queue_visibility_timeout,
    ).run(threading.Event(), drain=True)
    recluster_changed(services.engine, quiet_seconds=0)
    return stats
