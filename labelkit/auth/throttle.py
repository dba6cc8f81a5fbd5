"""The sign-in throttle: how many passwords anyone may try, from where, and how often.

Every attempt is counted in the database *before* its password is checked, under several keys
at once (SHA-256 digests, so no address or username is stored in clear):

=====================  ===================================  ==============================
key                    counts                               free failures (settings)
=====================  ===================================  ==============================
client + account       one address trying one username      ``login_max_failures`` (5)
trusted browser        a browser that signed in to this     ``login_max_failures`` (5)
                       account before, instead of the two
                       keys below
account                every untrusted client together      ``login_account_max_failures`` (20)
client                 one address over every username      ``login_client_max_failures`` (50)
                       (and refused sign-ups)
=====================  ===================================  ==============================

Once a key's budget is spent, each further attempt first waits ``login_backoff_seconds``, then
twice that, up to ``login_backoff_max_seconds``: a backoff, not a lock. A blocked attempt is
refused without checking its password; a correct password resets its own client + account
(or browser) key and takes its count back from the wider ones. A key left alone for
``login_window_seconds`` starts from zero again.

Why this shape: the old per-user counter was read, compared and written back, so
20 parallel attempts all read "0 failures" and 60 passwords were checked before the lock
held; and anyone could lock the admin out by typing five wrong passwords. Now a stranger's
failures spend the stranger's own budget (client + account) and the shared account budget,
but the owner's browser (which signed in before: device cookie) has a budget of its own, so
strangers cannot lock the owner out; distributed guessing from many addresses still meets
the account budget; one address spraying many usernames meets the client budget. The keys
treat unknown usernames exactly like existing ones, so neither the messages nor the waits
tell which accounts exist.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from labelkit.db import accounts
from labelkit.db.engine import in_transaction, transaction
from labelkit.db.models import utcnow
from labelkit.errors import AccountLocked

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from labelkit.auth import SignInClient
    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

_PRUNE_EVERY = 200  # attempts between deletions of old counters


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = 5
    account_free_failures: int = 20
    client_free_failures: int = 50
    backoff_seconds: int = 30
    backoff_max_seconds: int = 900
    window_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            free_failures=settings.login_max_failures,
            account_free_failures=settings.login_account_max_failures,
            client_free_failures=settings.login_client_max_failures,
            backoff_seconds=settings.login_backoff_seconds,
            backoff_max_seconds=settings.login_backoff_max_seconds,
            window_seconds=settings.login_window_seconds,
        )

    def wait_after(self, count: int, free: int) -> int | None:
        """Seconds an attempt numbered ``count`` makes the next one wait (None: no wait)."""
        if count < free:
            return None
        # 2**exponent is bounded so a long-lived key cannot overflow the arithmetic.
        exponent = min(count - free, 30)
        return int(min(self.backoff_max_seconds, self.backoff_seconds * 2**exponent))


@dataclass(slots=True)
class Attempt:
    """One counted attempt: every key it counts on with that key's free failures; ``own``
    (reset when the attempt succeeds) is one of them, or "" for a sign-up."""

    own: str
    budgets: dict[str, int]
    # Keys this attempt blocked (it spent their budget), and until when: unblocked if it succeeds.
    blocked: dict[str, datetime] = field(default_factory=dict)
    counted_at: datetime | None = None

    def wait_message(self) -> str | None:
        """What to tell the person if this attempt failed: the wait it started, if any."""
        if not self.blocked or self.counted_at is None:
            return None
        return wait_message((max(self.blocked.values()) - self.counted_at).total_seconds())

    @property
    def wider(self) -> list[str]:
        return sorted(k for k in self.budgets if k != self.own)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def wait_message(seconds: float) -> str:
    if seconds < 90:
        n = max(1, math.ceil(seconds))
        return f"Too many sign-in attempts; try again in {n} second{'s' if n != 1 else ''}."
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many sign-in attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}."


class SignInThrottle:
    """Counts attempts (:meth:`begin`) and settles them (:meth:`succeeded` / :meth:`cancel`)."""

    def __init__(
        self, engine: Engine, policy: ThrottlePolicy | None = None, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._engine = engine
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._attempts = 0

    # --- keys -----------------------------------------------------------------------

    @staticmethod
    def _client_key(client: SignInClient) -> str:
        return _digest("client", client.address)

    def attempt_for(self, username: str, client: SignInClient, *, trusted: bool) -> Attempt:
        """The keys an attempt on ``username`` (already normalised) counts on, with budgets."""
        p = self.policy
        if trusted:
            own = _digest("device", username, client.device)
            return Attempt(own=own, budgets={own: p.free_failures})
        own = _digest("client+account", client.address, username)
        return Attempt(
            own=own,
            budgets={
                own: p.free_failures,
                _digest("account", username): p.account_free_failures,
                self._client_key(client): p.client_free_failures,
            },
        )

    # --- attempts -------------------------------------------------------------------

    def begin(self, username: str, client: SignInClient, *, trusted: bool) -> Attempt:
        """Count an attempt on every key, or raise ``AccountLocked`` (nothing counted) if one
        of them is waiting out its backoff."""
        return self._claim(self.attempt_for(username, client, trusted=trusted))

    def begin_sign_up(self, client: SignInClient) -> Attempt:
        """Count a sign-up on the client's key: probing for free names spends the same budget
        as guessing passwords. Settle it with :meth:`succeeded` once the account exists."""
        key = self._client_key(client)
        return self._claim(Attempt(own="", budgets={key: self.policy.client_free_failures}))

    def _claim(self, attempt: Attempt) -> Attempt:
        now = self._clock()
        keys = sorted(attempt.budgets)
        refused: list[datetime | None] = []

        def work(s: Session) -> None:
            refused.clear()
            attempt.blocked.clear()
            attempt.counted_at = now
            accounts.ensure_throttle_keys(session=s, keys=keys, now=now)
            # Sorted, so two attempts sharing keys lock them in the same order (no deadlock).
            for key in keys:
                count = accounts.count_attempt(
                    session=s, key=key, now=now, window_seconds=self.policy.window_seconds
                )
                if count is None:
                    refused.append(accounts.blocked_until(session=s, key=key))
                    raise _Refused
                wait = self.policy.wait_after(count, attempt.budgets[key])
                if wait is not None:
                    until = now + timedelta(seconds=wait)
                    accounts.block_key(session=s, key=key, until=until)
                    attempt.blocked[key] = until

        try:
            in_transaction(self._engine, work)
        except _Refused:
            # The transaction rolled back: a refused attempt counts nowhere.
            until = max((u for u in refused if u is not None), default=now)
            raise AccountLocked(wait_message((until - now).total_seconds())) from None
        self._maybe_prune(now)
        return attempt

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right (or the account was created): reset the attempt's own key,
        take its count back from the wider keys (and the blocks it set there)."""

        def work(s: Session) -> None:
            if attempt.own:
                accounts.reset_key(session=s, key=attempt.own)
            for key in attempt.wider:
                accounts.uncount_attempt(session=s, key=key, unblock=key in attempt.blocked)

        in_transaction(self._engine, work)

    def cancel(self, attempt: Attempt) -> None:
        """The attempt was never checked (e.g. the server was too busy): take it back everywhere."""

        def work(s: Session) -> None:
            for key in sorted(attempt.budgets):
                accounts.uncount_attempt(session=s, key=key, unblock=key in attempt.blocked)

        in_transaction(self._engine, work)

    def _maybe_prune(self, now: datetime) -> None:
        self._attempts += 1
        if self._attempts % _PRUNE_EVERY:
            return
        with transaction(self._engine) as s:
            accounts.prune_throttle(session=s, now=now, window_seconds=self.policy.window_seconds)


class _Refused(Exception):
    """Inside the claim transaction: a key is blocked (rolls the transaction back)."""
