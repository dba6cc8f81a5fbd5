"""A stop request is honoured even when a worker is stuck (issue 15: frozen worker).

A worker blocked forever (a socket read on a connection whose other side vanished,
say) must not keep the listener from stopping: after the grace period ``run``
returns and the process can exit; the message in hand comes back after its
visibility timeout. No network: an in-memory queue and a pipeline that blocks.
"""

from __future__ import annotations

import threading
from typing import Any

from labelkit.queue import QueueMessage
from labelkit.worker import Listener


class OneMessageQueue:
    max_receives = 4

    def __init__(self) -> None:
        self.given = False
        self.deleted: list[str] = []

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0) -> list[QueueMessage]:
        if self.given:
            threading.Event().wait(min(wait_seconds, 0.05))
            return []
        self.given = True
        return [QueueMessage(message_id="m1", receipt_handle="h1", body="{}", receive_count=1)]

    def delete(self, receipt_handle: str) -> None:
        self.deleted.append(receipt_handle)

    def extend(self, receipt_handle: str, seconds: int) -> None:
        pass

    def release(self, receipt_handle: str) -> None:
        pass


class BlockingPipeline:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.forever = threading.Event()  # never set

    def handle_message(self, body: Any, *, receive_count: int = 1) -> list[Any]:
        self.entered.set()
        self.forever.wait()
        return []


def test_stop_returns_after_the_grace_period_with_a_blocked_worker() -> None:
    # GIVEN a listener whose only worker is blocked forever inside a job
    queue, pipeline = OneMessageQueue(), BlockingPipeline()
    listener = Listener(queue=queue, pipeline=pipeline, workers=1, wait_seconds=1, stop_grace=0.5)  # type: ignore[arg-type]
    stop = threading.Event()
    runner = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    runner.start()
    assert pipeline.entered.wait(timeout=60)
    # WHEN it is asked to stop
    stop.set()
    # THEN run returns (the grace is 0.5 s; 60 s only bounds a very busy machine)
    runner.join(timeout=60)
    assert not runner.is_alive(), "the listener did not stop with a worker blocked"
    assert queue.deleted == []  # the unfinished job was not acknowledged: it will be redelivered


def test_housekeeping_runs_at_start_and_keeps_running_after_a_failure() -> None:
    calls: list[int] = []
    ran_twice = threading.Event()

    def housekeeping() -> None:
        calls.append(1)
        if len(calls) >= 2:
            ran_twice.set()
        raise RuntimeError("database down")  # logged, tried again later

    queue, pipeline = OneMessageQueue(), BlockingPipeline()
    queue.given = True  # nothing to label
    listener = Listener(
        queue=queue,  # type: ignore[arg-type]
        pipeline=pipeline,  # type: ignore[arg-type]
        workers=1,
        wait_seconds=1,
        housekeeping=housekeeping,
        housekeeping_every=0.05,
        stop_grace=0.5,
    )
    stop = threading.Event()
    runner = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    runner.start()
    assert ran_twice.wait(timeout=60)
    stop.set()
    runner.join(timeout=60)
    assert not runner.is_alive()
