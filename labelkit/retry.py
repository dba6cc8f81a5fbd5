"""Every retry and back-off policy of Labelkit, each named once, on tenacity.

* :func:`lock_conflict` - MySQL/MariaDB chose this transaction as a deadlock victim or it
  hit a lock-wait conflict: run it again at once after a short random pause that grows
  with each attempt (the database engine and the local queue's claim).
* :func:`until_stopped` - a dependency is down (the queue's database, SQS): wait and try
  again, doubling the pause up to a cap, for ever, until the worker is told to stop (the
  worker's receive loop).
* :func:`a_few_times` - a harmless step worth a few more tries before giving up (the
  worker's delete: not deleting only means one redelivery, and writes are idempotent).
* :data:`RESTART_BACKOFF` - pauses before restarting a crashed child (``make run``).
* :func:`poll` - ask again at a fixed interval until an answer is final or a deadline
  passes (CloudFormation change sets and stacks, in ``infra_scripts``).

This module imports nothing of the project; callers pass their own predicates and loggers.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_fixed,
    wait_incrementing,
)

_T = TypeVar("_T")


def _random_pause(low: float, high: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        return random.uniform(low, high) * state.attempt_number

    return wait


def lock_conflict(
    is_conflict: Callable[[BaseException], bool], *, attempts: int = 4, log: logging.Logger | None = None
) -> Retrying:
    """Up to ``attempts`` tries while the error is a lock conflict (5-50 ms x attempt between
    them, random so the two sides of a deadlock do not collide again); then the error."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=_random_pause(0.005, 0.05),
        retry=retry_if_exception(is_conflict),
        reraise=True,
        before_sleep=(lambda _s: log.info("lock conflict; trying again")) if log else None,
    )


class _Stopped(Exception):
    """Raised out of a back-off pause that a stop request ended."""


def until_stopped(
    stop: threading.Event, *, what: str, log: logging.Logger, first: float = 0.5, cap: float = 15.0
) -> Callable[..., Any]:
    """A caller of ``fn(*args)`` that tries until one succeeds, pausing ``first``, twice that,
    ... up to ``cap`` seconds between tries. A stop request ends a pause at once, and then
    no further try is made: the call returns ``None``."""

    def before_sleep(state: RetryCallState) -> None:
        pause = state.next_action.sleep if state.next_action else 0.0
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s failed; retrying in %.1fs", what, pause, exc_info=exc)

    def pause(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopped

    retrying = Retrying(
        stop=lambda _s: stop.is_set(),
        wait=wait_exponential(multiplier=first, min=first, max=cap),
        retry=retry_if_exception_type(Exception),
        sleep=pause,
        before_sleep=before_sleep,
        retry_error_callback=lambda _s: None,
    )

    def call(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        try:
            return retrying(fn, *args, **kwargs)
        except _Stopped:
            return None

    return call


def a_few_times(*, what: str, log: logging.Logger, attempts: int = 5, first: float = 0.5) -> Retrying:
    """Up to ``attempts`` tries, pausing ``first``, 2 x ``first``, ... between them; each
    failure is logged; after the last the call returns ``None`` (given up, said in the log)."""

    def after(state: RetryCallState) -> None:
        if state.outcome is not None and state.outcome.failed:
            log.warning(
                "%s failed (attempt %d)", what, state.attempt_number, exc_info=state.outcome.exception()
            )

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_incrementing(start=first, increment=first),
        retry=retry_if_exception_type(Exception),
        after=after,
        retry_error_callback=lambda _s: None,
    )


class _Crashes:
    """What tenacity's wait policies read of a retry: how many tries so far."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


#: 1 s after a crash, doubling with each quick crash in a row, at most 30 s.
RESTART_BACKOFF = wait_exponential(multiplier=1, min=1, max=30)


def restart_pause(crashes_in_a_row: int) -> float:
    """Seconds to wait before restarting a child that crashed ``crashes_in_a_row`` times."""
    return float(RESTART_BACKOFF(_Crashes(max(1, crashes_in_a_row))))  # type: ignore[arg-type]


def poll(
    ask: Callable[[], _T],
    *,
    done: Callable[[_T], bool],
    every: float,
    timeout: float,
    sleep: Callable[[float], Any],
) -> _T:
    """``ask()`` every ``every`` seconds until ``done(answer)`` or ``timeout`` seconds have
    passed; returns the last answer either way (the caller decides what a timeout means)."""
    retrying = Retrying(
        retry=retry_if_result(lambda answer: not done(answer)),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(every),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    return retrying(ask)
