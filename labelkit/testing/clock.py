"""Clocks that move only when a test moves them, for code that takes ``clock=``.

* :class:`ManualClock` - wall-clock seconds (``time.time``'s kind), for the local queue's
  visibility timeouts: ``LocalQueue(..., clock=clock)`` then ``clock.advance(30)``
  instead of sleeping out a timeout.
* :class:`ManualDateTime` - aware UTC datetimes (``labelkit.db.models.utcnow``'s kind),
  for session expiry, sign-in throttles and account locks.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class ManualClock:
    """Unix seconds, starting at the real time, moving only by :meth:`advance`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualDateTime:
    """Aware UTC datetimes, starting now, moving only by :meth:`advance` or assignment."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
