"""Browser sessions that survive a page reload.

Streamlit keeps state per WebSocket session, so a reload used to sign people
out. After sign-in the dashboard issues a random token, stores only its
SHA-256 in ``web_sessions`` and sets it as a cookie; a new Streamlit session
reads the cookie and resumes as the same person. Sign-out deletes the row,
so a copied cookie is useless afterwards. The user's role is read from the
database on every resume (an admin demoted meanwhile is no longer admin).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.engine import Engine

from labelkit.auth import Principal
from labelkit.db import repository as repo
from labelkit.db.engine import transaction

COOKIE_NAME = "labelkit_session"
DEFAULT_LIFETIME = 14 * 24 * 3600


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, engine: Engine, *, lifetime_seconds: int = DEFAULT_LIFETIME) -> None:
        self._engine = engine
        self.lifetime_seconds = lifetime_seconds

    def issue(self, principal: Principal) -> str:
        """A new session token for ``principal`` (give it to the browser; it is not stored)."""
        token = secrets.token_urlsafe(32)
        with transaction(self._engine) as s:
            repo.create_web_session(
                session=s,
                user_id=principal.user_id,
                token_hash=_hash(token),
                lifetime_seconds=self.lifetime_seconds,
            )
        return token

    def resume(self, token: str) -> Principal | None:
        """Who the token signs in, or None if it is unknown, expired or signed out."""
        if not token or len(token) > 256:
            return None
        with transaction(self._engine) as s:
            user = repo.user_for_web_session(session=s, token_hash=_hash(token))
            if user is None:
                return None
            return Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)

    def revoke(self, token: str) -> None:
        with transaction(self._engine) as s:
            repo.delete_web_session(session=s, token_hash=_hash(token))
