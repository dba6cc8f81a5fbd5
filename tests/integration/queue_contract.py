"""Behaviour every ``LocalQueue`` backend must show (shared by SQLite and MariaDB tests).

A test module subclasses :class:`LocalQueueContract` and provides a ``queue_db_url``
fixture naming a database whose tables already exist. Each test uses its own
queue name, so one database can serve a whole module.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import Engine

from labelkit.db.engine import make_engine
from labelkit.errors import QueueError
from labelkit.queue import JobQueue, QueueStats
from labelkit.queue.events import make_s3_event, parse_s3_event
from labelkit.queue.local import LocalQueue
from labelkit.testing.clock import ManualClock as _Clock

QueueFactory = Callable[..., LocalQueue]


def _drain_without_deleting(url: str, name: str, batch: int, results: list[str] | None = None) -> list[str]:
    """Receive until the queue looks empty; never delete (the visibility timeout is long)."""
    engine = make_engine(url)
    try:
        q = LocalQueue(engine, name=name, visibility_timeout=300, max_receives=10, poll_interval=0.05)
        got: list[str] = []
        empty_polls = 0
        while empty_polls < 3:
            msgs = q.receive(max_messages=batch, wait_seconds=0.1)
            if not msgs:
                empty_polls += 1
                continue
            empty_polls = 0
            got.extend(m.message_id for m in msgs)
        if results is not None:
            results.extend(got)
        return got
    finally:
        engine.dispose()


def _process_worker(
    url: str, name: str, batch: int, start: threading.Barrier, out: multiprocessing.Queue[list[str]]
) -> None:
    start.wait(timeout=60)  # spawned processes start slowly: begin receiving together
    out.put(_drain_without_deleting(url, name, batch))


class LocalQueueContract:
    @pytest.fixture
    def engine(self, queue_db_url: str) -> Iterator[Engine]:
        eng = make_engine(queue_db_url)
        yield eng
        eng.dispose()

    @pytest.fixture
    def make_queue(self, engine: Engine) -> QueueFactory:
        name = f"test-{uuid.uuid4().hex[:12]}"

        def factory(**kwargs: object) -> LocalQueue:
            kwargs.setdefault("name", name)
            kwargs.setdefault("poll_interval", 0.05)
            return LocalQueue(engine, **kwargs)  # type: ignore[arg-type]

        return factory

    # --- basics ----------------------------------------------------------------

    def test_satisfies_the_protocol(self, make_queue: QueueFactory) -> None:
        assert isinstance(make_queue(), JobQueue)

    def test_send_receive_delete(self, make_queue: QueueFactory) -> None:
        # GIVEN a queue with one S3-shaped message (unicode body: utf8mb4 on MySQL)
        q = make_queue(visibility_timeout=30)
        body = make_s3_event(bucket="b", key="users/ü/🐈 cat+1.jpg", size=3)
        message_id = q.send(body)
        # WHEN it is received
        [msg] = q.receive()
        # THEN it is the message, on its first delivery, and hidden while in flight
        assert msg.message_id == message_id
        assert msg.body == body
        assert parse_s3_event(msg.body)[0].key == "users/ü/🐈 cat+1.jpg"
        assert msg.receive_count == 1
        assert q.receive() == []
        assert q.stats() == QueueStats(visible=0, in_flight=1, dead=0)
        # WHEN it is deleted THEN it is gone for good
        q.delete(msg.receipt_handle)
        assert q.stats() == QueueStats(visible=0, in_flight=0, dead=0)
        q.delete(msg.receipt_handle)  # a second delete is ignored

    def test_batches_come_in_send_order(self, make_queue: QueueFactory) -> None:
        q = make_queue()
        ids = [q.send(f"m{i}") for i in range(5)]
        first = q.receive(max_messages=3)
        rest = q.receive(max_messages=10)
        assert [m.message_id for m in first] == ids[:3]
        assert [m.message_id for m in rest] == ids[3:]
        assert len({m.receipt_handle for m in first + rest}) == 5

    def test_queues_with_different_names_are_separate(self, engine: Engine) -> None:
        a = LocalQueue(engine, name=f"a-{uuid.uuid4().hex[:8]}")
        b = LocalQueue(engine, name=f"b-{uuid.uuid4().hex[:8]}")
        a.send("for a")
        assert b.receive() == []
        assert b.stats() == QueueStats(0, 0, 0)
        assert [m.body for m in a.receive()] == ["for a"]

    # --- long polling --------------------------------------------------------------

    def test_receive_waits_then_returns_empty(self, make_queue: QueueFactory) -> None:
        q = make_queue()
        start = time.monotonic()
        assert q.receive(wait_seconds=0.4) == []
        # It waited; the upper bound only says "it came back", a busy machine may be slow.
        assert 0.35 <= time.monotonic() - start < 30

    def test_receive_wakes_up_for_a_message_sent_while_waiting(self, make_queue: QueueFactory) -> None:
        q = make_queue()
        timer = threading.Timer(0.3, q.send, args=("late",))
        timer.start()
        try:
            start = time.monotonic()
            msgs = q.receive(wait_seconds=60)
            elapsed = time.monotonic() - start
        finally:
            timer.join()
        assert [m.body for m in msgs] == ["late"]
        assert 0.2 <= elapsed < 30  # woken by the message, long before the 60 s wait ends

    # --- visibility and receipt handles --------------------------------------------

    def test_redelivery_after_visibility_timeout_with_a_new_handle(self, make_queue: QueueFactory) -> None:
        # GIVEN a message received once and not deleted
        q = make_queue(visibility_timeout=1)
        q.send("job")
        [first] = q.receive()
        # WHEN its visibility timeout passes
        time.sleep(1.1)  # waiting past a deadline: a slow machine only waits longer
        [second] = q.receive()
        # THEN it comes back, counted, with a different receipt handle
        assert second.message_id == first.message_id
        assert second.receive_count == 2
        assert second.receipt_handle != first.receipt_handle
        # AND the stale handle can neither delete, release nor extend it
        q.delete(first.receipt_handle)
        q.release(first.receipt_handle)
        with pytest.raises(QueueError):
            q.extend(first.receipt_handle, 60)
        assert q.stats() == QueueStats(visible=0, in_flight=1, dead=0)
        q.delete(second.receipt_handle)
        assert q.stats() == QueueStats(0, 0, 0)

    def test_extend_keeps_the_message_hidden(self, make_queue: QueueFactory) -> None:
        q = make_queue(visibility_timeout=1)
        q.send("long job")
        [msg] = q.receive()
        q.extend(msg.receipt_handle, 120)  # far beyond what a busy machine can take to get on
        time.sleep(1.2)  # past the original timeout
        assert q.receive() == []
        assert q.stats().in_flight == 1
        q.delete(msg.receipt_handle)  # the handle is still current after extending
        assert q.stats() == QueueStats(0, 0, 0)

    def test_release_makes_it_visible_now_and_keeps_the_count(self, make_queue: QueueFactory) -> None:
        q = make_queue(visibility_timeout=60)
        q.send("job")
        [msg] = q.receive()
        q.release(msg.receipt_handle)
        assert q.stats() == QueueStats(visible=1, in_flight=0, dead=0)
        [again] = q.receive()
        assert again.receive_count == 2

    def test_extend_rejects_out_of_range_seconds(self, make_queue: QueueFactory) -> None:
        q = make_queue()
        q.send("job")
        [msg] = q.receive()
        with pytest.raises(QueueError):
            q.extend(msg.receipt_handle, -1)
        with pytest.raises(QueueError):
            q.extend(msg.receipt_handle, 13 * 3600)

    # --- dead letters ------------------------------------------------------------------

    def test_dead_letter_after_max_receives_then_redrive(self, make_queue: QueueFactory) -> None:
        # GIVEN a message delivered max_receives (2) times without success
        q = make_queue(visibility_timeout=60, max_receives=2)
        message_id = q.send("poison")
        for expected in (1, 2):
            [msg] = q.receive()
            assert msg.receive_count == expected
            q.release(msg.receipt_handle)
        last_handle = msg.receipt_handle
        # WHEN someone tries to receive it again
        assert q.receive() == []
        # THEN it is dead-lettered instead of delivered
        assert q.stats() == QueueStats(visible=0, in_flight=0, dead=1)
        [dead] = q.dead_letters()
        assert (dead.message_id, dead.body, dead.receive_count) == (message_id, "poison", 2)
        # AND the handle of the last delivery cannot touch the dead letter
        q.delete(last_handle)
        assert q.stats().dead == 1
        # WHEN it is redriven THEN it is live again with a fresh receive count
        q.redrive(dead.receipt_handle)
        q.redrive(dead.receipt_handle)  # twice is harmless
        assert q.stats() == QueueStats(visible=1, in_flight=0, dead=0)
        assert q.dead_letters() == []
        [again] = q.receive()
        assert (again.message_id, again.receive_count) == (message_id, 1)

    def test_dead_letter_after_visibility_timeouts(self, make_queue: QueueFactory) -> None:
        clock = _Clock()
        q = make_queue(visibility_timeout=1, max_receives=1, clock=clock)
        q.send("poison")
        assert len(q.receive()) == 1
        assert q.receive() == []  # still hidden
        clock.now += 1.1  # the visibility timeout passes
        assert q.receive() == []
        assert q.stats() == QueueStats(visible=0, in_flight=0, dead=1)

    def test_dead_letters_respects_limit(self, make_queue: QueueFactory) -> None:
        q = make_queue(max_receives=1)
        for i in range(3):
            q.send(f"m{i}")
        for m in q.receive(max_messages=3):
            q.release(m.receipt_handle)
        assert q.receive() == []
        assert [m.body for m in q.dead_letters(limit=2)] == ["m0", "m1"]
        assert len(q.dead_letters()) == 3

    # --- purge ---------------------------------------------------------------------------

    def test_purge_matching_removes_live_in_flight_and_dead(self, make_queue: QueueFactory) -> None:
        q = make_queue(max_receives=1)
        q.send(make_s3_event(bucket="b", key="users/u1/abc123.jpg", size=1))  # will be dead
        for m in q.receive():
            q.release(m.receipt_handle)
        q.receive()  # moves it to the dead letters
        q.send(make_s3_event(bucket="b", key="users/u1/abc123.jpg", size=1))
        q.receive()  # in flight
        q.send(make_s3_event(bucket="b", key="users/u1/abc123.jpg", size=1))  # visible
        q.send(make_s3_event(bucket="b", key="users/u1/ABC123.jpg", size=1))  # other case: kept
        q.send("100% done_x")
        assert q.stats() == QueueStats(visible=3, in_flight=1, dead=1)
        # WHEN the image's entries are purged
        assert q.purge_matching("abc123") == 3
        # THEN only other messages remain (match is exact and case-sensitive; % and _ are literal)
        assert q.stats() == QueueStats(visible=2, in_flight=0, dead=0)
        assert q.purge_matching("_") == 1
        assert q.purge_matching("%") == 0
        assert q.purge_matching("ABC123") == 1
        assert q.stats() == QueueStats(0, 0, 0)
        with pytest.raises(QueueError):
            q.purge_matching("")

    # --- durability and concurrency ------------------------------------------------------

    def test_messages_survive_a_restart(self, queue_db_url: str, make_queue: QueueFactory) -> None:
        # GIVEN two messages, one of them in flight
        q = make_queue(visibility_timeout=60)
        q.send("first")
        q.send("second")
        [in_flight] = q.receive()
        q.engine.dispose()
        # WHEN a new process would open the same database
        engine = make_engine(queue_db_url)
        try:
            q2 = LocalQueue(engine, name=q.name, visibility_timeout=60)
            # THEN it sees the same state and can finish the work
            assert q2.stats() == QueueStats(visible=1, in_flight=1, dead=0)
            [msg] = q2.receive()
            assert msg.body == "second"
            q2.delete(in_flight.receipt_handle)
            q2.delete(msg.receipt_handle)
            assert q2.stats() == QueueStats(0, 0, 0)
        finally:
            engine.dispose()

    def test_concurrent_threads_never_share_a_message(
        self, queue_db_url: str, make_queue: QueueFactory
    ) -> None:
        q = make_queue()
        sent = {q.send(f"m{i}") for i in range(120)}
        results: list[list[str]] = [[] for _ in range(4)]
        threads = [  # each thread has its own engine, like a separate worker
            threading.Thread(target=_drain_without_deleting, args=(queue_db_url, q.name, 3, results[i]))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        got = [mid for r in results for mid in r]
        assert len(got) == len(set(got)), "a message was delivered twice within its visibility timeout"
        assert set(got) == sent

    @pytest.mark.slow
    def test_concurrent_processes_never_share_a_message(
        self, queue_db_url: str, make_queue: QueueFactory
    ) -> None:
        q = make_queue()
        sent = {q.send(f"m{i}") for i in range(150)}
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue[list[str]] = ctx.Queue()
        start = ctx.Barrier(3)
        procs = [
            ctx.Process(target=_process_worker, args=(queue_db_url, q.name, 2, start, out)) for _ in range(3)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        got = [mid for r in results for mid in r]
        assert len(got) == len(set(got)), "a message was delivered twice within its visibility timeout"
        assert set(got) == sent
        assert sum(1 for r in results if r) >= 2, "the processes should have competed for messages"
