"""Authentication: the ``Authenticator`` protocol and how to pick one.

The dashboard only ever talks to an :class:`Authenticator`. ``LocalAuth``
(argon2 hashes in the Labelkit database) is the default; a Cognito adapter
will satisfy the same small protocol. Every failure is an
:class:`labelkit.errors.AuthError` whose message is shown to people as is
(``AccountLocked`` when too many wrong passwords locked the account).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from labelkit.db.repository import Viewer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from labelkit.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in person, as the dashboard keeps it in its session."""

    user_id: str
    username: str
    is_admin: bool = False

    @property
    def viewer(self) -> Viewer:
        """The scope every query of this person runs in."""
        return Viewer(user_id=self.user_id, is_admin=self.is_admin)


@runtime_checkable
class Authenticator(Protocol):
    def sign_up(self, username: str, password: str, email: str | None = None) -> Principal:
        """Create an account and sign it in. Raises ``AuthError`` with a message for people."""
        ...

    def sign_in(self, username: str, password: str) -> Principal:
        """Check the password. Raises ``AuthError`` (or ``AccountLocked``)."""
        ...

    def sign_out(self, principal: Principal) -> None:
        """End the session on the provider's side, if it keeps one."""
        ...


def make_authenticator(settings: Settings, *, engine: Engine) -> Authenticator:
    """The authenticator the settings ask for (``auth_mode``)."""
    if settings.auth_mode == "local":
        from labelkit.auth.local import LocalAuth

        return LocalAuth(
            engine,
            max_failures=settings.login_max_failures,
            lock_seconds=settings.login_lock_seconds,
        )
    from labelkit.errors import ConfigError

    raise ConfigError(f"auth_mode {settings.auth_mode!r} is not available in this build yet")
