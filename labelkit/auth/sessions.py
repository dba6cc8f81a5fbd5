"""Browser sessions that survive a page reload, with a cookie no script can read.

Streamlit keeps state per WebSocket session and cannot set a cookie from Python; a cookie set
from JavaScript cannot be HttpOnly. So the cookie is only ever set by the server, on plain HTTP
responses (``dashboard/web.py``), and signing in goes through a *handoff*:

1. every page load that comes without a session cookie gets one: a random token that means
   nothing yet (HttpOnly, ``SameSite=Strict``; over HTTPS named ``__Host-labelkit_session``
   and ``Secure``, see :func:`cookie_name`);
2. the sign-in form (over the WebSocket, whose handshake carried that cookie) checks the
   password, then :meth:`SessionStore.begin` records "the browser holding this cookie *and*
   this one-time secret signed in as X" for one minute; the secret goes over the WebSocket to
   the signing-in tab only, which is sent to ``/session/start?h=<secret>``;
3. that HTTP request carries the same cookie and the secret: :meth:`SessionStore.complete`
   consumes the handoff and answers with a *new* random token (the session id changes at
   sign-in), which the response sets as the HttpOnly cookie, and redirects to the app.

The cookie alone collects nothing: someone who planted a cookie of their choosing in the
browser (a sibling subdomain, a plain-HTTP page on the same host) and polls
``/session/start`` with it does not have the tab's secret, so the session goes to the tab that
signed in and to no one else. The secret is in the URL of that one request only: single use,
one minute, worthless without the cookie, and answered by a redirect to a URL without it.
No session token ever appears in a URL, in the page or in script-readable storage; only
SHA-256 hashes are stored (the handoff under the hash of cookie and secret together).

:meth:`resume` is asked on every page rerun, so revoking a session (sign-out in any tab, the
user being deleted) ends every tab of it at its next interaction; a session also ends after
``lifetime_seconds`` (14 days) or ``idle_seconds`` (8 hours) without use. The user's role is
read from the database each time (an admin demoted meanwhile is no longer admin).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy.engine import Engine

from labelkit.auth import Principal
from labelkit.db import accounts
from labelkit.db.engine import transaction
from labelkit.db.models import utcnow
from labelkit.db.queries import users as user_q

if TYPE_CHECKING:
    from labelkit.settings import Settings

COOKIE_NAME: Final = "labelkit_session"
DEVICE_COOKIE_NAME: Final = "labelkit_device"
SECURE_PREFIX: Final = "__Host-"
DEFAULT_LIFETIME: Final = 14 * 24 * 3600
DEFAULT_IDLE: Final = 8 * 3600
HANDOFF_SECONDS: Final = 60
_TOUCH_AFTER: Final = 60  # seconds between writes of last_seen_at
_MAX_TOKEN: Final = 256


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def plausible_token(token: str | None) -> bool:
    """A value we could have issued (so junk cookies cost no database lookup)."""
    return bool(token) and 20 <= len(token or "") <= _MAX_TOKEN and (token or "").isascii()


def cookie_name(name: str, *, secure: bool) -> str:
    """What cookie ``name`` is called on a connection: ``__Host-`` + name over HTTPS.

    A browser keeps a ``__Host-`` cookie only if it came from this very host over HTTPS with
    ``Secure``, ``Path=/`` and no ``Domain``, so no sibling subdomain and no plain-HTTP page can
    plant one. Browsers refuse the prefix without ``Secure``, so plain HTTP (``make run`` on
    localhost) keeps the plain name; each side reads only the name of its own connection.
    """
    return SECURE_PREFIX + name if secure else name


def _handoff_key(browser_token: str, secret: str) -> str:
    """What a handoff is stored under: the hash of the browser's cookie and the tab's secret."""
    return hash_token(f"{browser_token}\n{secret}")


class SessionStore:
    def __init__(
        self,
        engine: Engine,
        *,
        lifetime_seconds: int = DEFAULT_LIFETIME,
        idle_seconds: int = DEFAULT_IDLE,
        device_days: int = 180,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self.lifetime_seconds = lifetime_seconds
        self.idle_seconds = idle_seconds
        self.device_seconds = device_days * 24 * 3600
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, engine: Engine) -> SessionStore:
        return cls(
            engine,
            lifetime_seconds=settings.session_max_seconds,
            idle_seconds=settings.session_idle_seconds,
            device_days=settings.trusted_device_days,
        )

    # --- signing in: the handoff ---------------------------------------------------------

    def begin(self, principal: Principal, *, browser_token: str | None) -> str | None:
        """Record that the browser holding ``browser_token`` (its current cookie) signed in as
        ``principal``; returns the handoff's one-time secret, for the signing-in tab only.
        None when there is no usable cookie (the session then lives in the tab)."""
        if not plausible_token(browser_token):
            return None
        assert browser_token is not None
        secret = new_token()
        now = self._clock()
        with transaction(self._engine) as s:
            accounts.put_handoff(
                session=s,
                browser_hash=_handoff_key(browser_token, secret),
                user_id=principal.user_id,
                expires_at=now + timedelta(seconds=HANDOFF_SECONDS),
            )
        return secret

    def complete(
        self, browser_token: str | None, secret: str | None, *, device_token: str | None = None
    ) -> str | None:
        """Turn this browser's handoff into a session: the new cookie token, or None. Both the
        cookie the handoff was made for and its one-time ``secret`` must match; either alone
        collects nothing (and spends nothing: the right pair still works afterwards).

        With ``device_token``, the browser is also remembered as one that signed in to this
        account (the sign-in throttle lets it through when strangers spent the account's budget).
        """
        if not plausible_token(browser_token) or not plausible_token(secret):
            return None
        assert browser_token is not None and secret is not None
        now = self._clock()
        token = new_token()
        with transaction(self._engine) as s:
            user_id = accounts.take_handoff(
                session=s, browser_hash=_handoff_key(browser_token, secret), now=now
            )
            if user_id is None:
                return None
            accounts.create_web_session(
                session=s,
                user_id=user_id,
                token_hash=hash_token(token),
                now=now,
                lifetime_seconds=self.lifetime_seconds,
            )
            if plausible_token(device_token):
                assert device_token is not None
                accounts.trust_device(
                    session=s,
                    token_hash=hash_token(device_token),
                    user_id=user_id,
                    now=now,
                    expires_at=now + timedelta(seconds=self.device_seconds),
                )
            accounts.prune_handoffs(session=s, now=now)
        return token

    # --- every rerun -------------------------------------------------------------------

    def resume(self, token: str | None) -> Principal | None:
        """Who the token signs in, or None if it is unknown, expired, idle or signed out."""
        if not plausible_token(token):
            return None
        assert token is not None
        digest = hash_token(token)
        now = self._clock()
        with transaction(self._engine) as s:
            row = accounts.get_web_session(session=s, token_hash=digest)
            if row is None:
                return None
            seen = row.last_seen_at or row.created_at
            alive = row.expires_at > now and seen + timedelta(seconds=self.idle_seconds) > now
            user = user_q.get_user(session=s, user_id=row.user_id) if alive else None
            principal = (
                Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)
                if user is not None
                else None
            )
            touch = principal is not None and seen + timedelta(seconds=_TOUCH_AFTER) <= now
        # Writes in transactions of their own that start with the write (see labelkit.db.accounts).
        if principal is None:
            self.revoke(token)
        elif touch:
            with transaction(self._engine) as s:
                accounts.touch_web_session(session=s, token_hash=digest, now=now)
        return principal

    # --- signing out -------------------------------------------------------------------

    def revoke(self, token: str | None) -> None:
        if not plausible_token(token):
            return
        assert token is not None
        with transaction(self._engine) as s:
            accounts.delete_web_session(session=s, token_hash=hash_token(token))

    def revoke_user(self, user_id: str) -> int:
        """End every session of ``user_id`` in every browser; returns how many ended."""
        with transaction(self._engine) as s:
            return accounts.delete_user_web_sessions(session=s, user_id=user_id)
