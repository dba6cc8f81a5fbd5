"""Queries of signing in: browser sessions, sign-in handoffs, the attempt throttle, trusted devices.

Keyword-only functions taking the ``Session`` first, as in :mod:`labelkit.db.queries`;
callers own the transaction. Times come from the caller (``now``), so the auth layer's
injectable clock rules every expiry. Nothing here stores a token, an address or a username
in clear: callers pass SHA-256 hex digests.

Two rules keep the throttle exact under concurrency (before them, 20 parallel sign-ins checked
60 passwords before the old read-modify-write lock held):

* an attempt is counted by one ``UPDATE … SET failures = failures + 1 WHERE <not blocked>``
  *before* its password is checked; the row lock that UPDATE takes (MySQL) or the database
  write lock (SQLite) serialises attempts on the same key, and a refused UPDATE (0 rows)
  means "blocked", so no password is checked past the budget;
* a transaction that writes starts with its write, so on SQLite it takes the write lock
  first and never upgrades a read snapshot that a concurrent writer has made stale (which
  SQLite refuses at once, without waiting).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from labelkit.db.models import SessionHandoff, SignInThrottle, TrustedDevice, User, WebSession
from labelkit.db.queries import _scope as scope_q

# --------------------------------------------------------------------------- browser sessions


def create_web_session(
    *, session: Session, user_id: str, token_hash: str, now: datetime, lifetime_seconds: int
) -> None:
    session.add(
        WebSession(
            token_hash=token_hash,
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=lifetime_seconds),
        )
    )


def get_web_session(*, session: Session, token_hash: str) -> WebSession | None:
    return session.get(WebSession, token_hash)


def touch_web_session(*, session: Session, token_hash: str, now: datetime) -> None:
    """Move the idle timeout on (callers do it at most once a minute, not on every rerun)."""
    session.execute(
        update(WebSession)
        .where(WebSession.token_hash == token_hash)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def delete_web_session(*, session: Session, token_hash: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))


def delete_user_web_sessions(*, session: Session, user_id: str) -> int:
    """End every session of a user (all browsers); returns how many there were."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(WebSession).where(WebSession.user_id == user_id)
    )
    return int(result.rowcount or 0)


def prune_web_sessions(*, session: Session, now: datetime, idle_seconds: int) -> None:
    session.execute(
        delete(WebSession).where(
            (WebSession.expires_at <= now)
            | (WebSession.last_seen_at <= now - timedelta(seconds=idle_seconds))
        )
    )


# --------------------------------------------------------------------------- sign-in handoffs


def put_handoff(*, session: Session, browser_hash: str, user_id: str, expires_at: datetime) -> None:
    """Remember that the browser holding ``browser_hash``'s cookie has just signed in."""
    session.execute(delete(SessionHandoff).where(SessionHandoff.browser_hash == browser_hash))
    session.add(SessionHandoff(browser_hash=browser_hash, user_id=user_id, expires_at=expires_at))


def take_handoff(*, session: Session, browser_hash: str, now: datetime) -> str | None:
    """The user id of a live handoff for this browser, consumed (a second call gets None)."""
    # Claim it with a write first: of two requests at once, exactly one sees rowcount 1.
    claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SessionHandoff)
        .where(SessionHandoff.browser_hash == browser_hash, SessionHandoff.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.execute(delete(SessionHandoff).where(SessionHandoff.browser_hash == browser_hash))
        return None
    user_id = session.scalar(
        select(SessionHandoff.user_id).where(SessionHandoff.browser_hash == browser_hash)
    )
    session.execute(delete(SessionHandoff).where(SessionHandoff.browser_hash == browser_hash))
    return user_id


def prune_handoffs(*, session: Session, now: datetime) -> None:
    session.execute(delete(SessionHandoff).where(SessionHandoff.expires_at <= now))


# --------------------------------------------------------------------------- attempt throttle


def ensure_throttle_keys(*, session: Session, keys: Sequence[str], now: datetime) -> None:
    """Create missing counters (a no-op for existing ones, whatever runs concurrently)."""
    rows = [
        {"key_hash": k, "failures": 0, "blocked_until": None, "updated_at": now} for k in sorted(set(keys))
    ]
    scope_q._insert_ignore(session, SignInThrottle.__table__, rows)


def count_attempt(*, session: Session, key: str, now: datetime, window_seconds: int) -> int | None:
    """Count one attempt under ``key`` unless it is blocked; returns the new count, or None.

    A key untouched for ``window_seconds`` starts again from 1.
    """
    stale = now - timedelta(seconds=window_seconds)
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SignInThrottle)
        .where(
            SignInThrottle.key_hash == key,
            (SignInThrottle.blocked_until.is_(None)) | (SignInThrottle.blocked_until <= now),
        )
        .values(
            failures=case((SignInThrottle.updated_at < stale, 1), else_=SignInThrottle.failures + 1),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    # Our UPDATE holds the row (MySQL) or the database (SQLite): this read sees our count.
    return session.scalar(select(SignInThrottle.failures).where(SignInThrottle.key_hash == key))


def blocked_until(*, session: Session, key: str) -> datetime | None:
    return session.scalar(select(SignInThrottle.blocked_until).where(SignInThrottle.key_hash == key))


def block_key(*, session: Session, key: str, until: datetime) -> None:
    session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.key_hash == key)
        .values(blocked_until=until)
        .execution_options(synchronize_session=False)
    )


def reset_key(*, session: Session, key: str) -> None:
    session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.key_hash == key)
        .values(failures=0, blocked_until=None)
        .execution_options(synchronize_session=False)
    )


def uncount_attempt(*, session: Session, key: str, unblock: bool) -> None:
    """Take back one counted attempt (it succeeded or was never checked)."""
    values: dict[str, Any] = {
        "failures": case((SignInThrottle.failures > 0, SignInThrottle.failures - 1), else_=0)
    }
    if unblock:
        values["blocked_until"] = None
    session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.key_hash == key)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def prune_throttle(*, session: Session, now: datetime, window_seconds: int) -> None:
    """Forget counters idle for longer than the window whose block (if any) is over."""
    stale = now - timedelta(seconds=window_seconds)
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.updated_at < stale,
            (SignInThrottle.blocked_until.is_(None)) | (SignInThrottle.blocked_until <= now),
        )
    )


# --------------------------------------------------------------------------- trusted devices


def trust_device(
    *, session: Session, token_hash: str, user_id: str, now: datetime, expires_at: datetime
) -> None:
    session.execute(
        delete(TrustedDevice).where(TrustedDevice.token_hash == token_hash, TrustedDevice.user_id == user_id)
    )
    session.add(TrustedDevice(token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at))


def is_trusted_device(*, session: Session, token_hash: str, user_id: str, now: datetime) -> bool:
    expires = session.scalar(
        select(TrustedDevice.expires_at).where(
            TrustedDevice.token_hash == token_hash, TrustedDevice.user_id == user_id
        )
    )
    return expires is not None and expires > now


# --------------------------------------------------------------------------- users


def note_sign_in(*, session: Session, user_id: str, now: datetime, password_hash: str | None = None) -> None:
    """A successful sign-in: its time, and the password's new hash if it was rehashed."""
    values: dict[str, Any] = {"last_login_at": now}
    if password_hash is not None:
        values["password_hash"] = password_hash
    session.execute(
        update(User).where(User.id == user_id).values(**values).execution_options(synchronize_session=False)
    )
