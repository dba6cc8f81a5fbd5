"""The retry policies (labelkit/retry.py), each on its own; their users are tested where
they are used (the outage, supervision, queue-contract and CloudFormation tests)."""

from __future__ import annotations

import logging
import threading

import pytest

from labelkit.retry import a_few_times, lock_conflict, poll, restart_pause, until_stopped


class Conflict(Exception):
    pass


def _flaky(failures: int, exc: type[Exception] = Conflict) -> tuple[list[int], object]:
    calls: list[int] = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc("boom")
        return "done"

    return calls, work


def test_a_lock_conflict_is_tried_again_and_other_errors_are_not() -> None:
    is_conflict = lambda e: isinstance(e, Conflict)  # noqa: E731
    calls, work = _flaky(2)
    assert lock_conflict(is_conflict, attempts=4)(work) == "done" and len(calls) == 3
    calls, work = _flaky(9)
    with pytest.raises(Conflict):  # the database's own error, not a wrapper, after the last try
        lock_conflict(is_conflict, attempts=4)(work)
    assert len(calls) == 4
    calls, work = _flaky(1, ValueError)
    with pytest.raises(ValueError):
        lock_conflict(is_conflict, attempts=4)(work)
    assert len(calls) == 1


def test_a_few_times_gives_up_quietly_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    calls, work = _flaky(99)
    with caplog.at_level(logging.WARNING):
        assert a_few_times(what="delete", log=logging.getLogger("t"), attempts=3, first=0.01)(work) is None
    assert len(calls) == 3
    assert [r.getMessage() for r in caplog.records] == [f"delete failed (attempt {i})" for i in (1, 2, 3)]


def test_until_stopped_backs_off_until_it_works_or_is_stopped(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    calls, work = _flaky(2)
    with caplog.at_level(logging.WARNING):
        assert until_stopped(stop, what="receive", log=logging.getLogger("t"), first=0.01)(work) == "done"
    assert [r.getMessage() for r in caplog.records] == ["receive failed; retrying in 0.0s"] * 2
    # a stop request ends a back-off at once, and the call answers None
    calls, work = _flaky(10**6)
    stopper = threading.Timer(0.5, stop.set)
    stopper.start()
    assert until_stopped(stop, what="receive", log=logging.getLogger("t"), first=60)(work) is None
    assert len(calls) == 1  # the first pause (60 s) was cut short by the stop


def test_restarts_wait_one_second_doubling_to_thirty() -> None:
    assert [restart_pause(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_poll_answers_when_done_or_with_the_last_answer_at_the_deadline() -> None:
    answers = iter(["CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"])
    slept: list[float] = []
    got = poll(
        lambda: next(answers),
        done=lambda s: not s.endswith("_IN_PROGRESS"),
        every=5,
        timeout=60,
        sleep=slept.append,
    )
    assert got == "CREATE_COMPLETE" and slept == [5, 5]
    assert (
        poll(
            lambda: "UPDATE_IN_PROGRESS", done=lambda s: False, every=0.01, timeout=0.1, sleep=lambda s: None
        )
        == "UPDATE_IN_PROGRESS"
    )
