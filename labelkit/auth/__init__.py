"""Authentication: the ``Authenticator`` protocol and how to pick one.

The dashboard only ever talks to an :class:`Authenticator`. ``LocalAuth``
(argon2 hashes in the Labelkit database) is the default; ``CognitoAuth``
(Amazon Cognito through pycognito) satisfies the same small protocol, plus
:class:`AccountRecovery` for the flows only a provider with e-mail codes has.
Every failure is an :class:`labelkit.errors.AuthError` whose message is shown
to people as is::

    AuthError
    ├── AccountLocked          too many attempts from this client (or on this account): wait
    ├── ConfirmationRequired   sign-up worked; the account waits for the e-mailed code
    └── NewPasswordRequired    an admin-created account must choose its own password first

The two last ones are "not yet" answers rather than failures; a caller that
only knows ``AuthError`` still shows a sensible message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from labelkit.domain import Viewer
from labelkit.errors import AuthError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from labelkit.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in person, as the dashboard keeps it in its session."""

    user_id: str
    username: str
    is_admin: bool = False
    # The provider's access token (Cognito), kept only to end the session on sign-out.
    access_token: str | None = field(default=None, repr=False, compare=False)

    @property
    def viewer(self) -> Viewer:
        """The scope every query of this person runs in."""
        return Viewer(user_id=self.user_id, is_admin=self.is_admin)


@dataclass(frozen=True, slots=True)
class SignInClient:
    """Where an attempt comes from, for the sign-in throttle (never logged).

    ``address`` is the browser's IP address (behind nginx, the one uvicorn takes from
    ``X-Forwarded-For`` of the trusted local proxy), ``"local"`` without one. ``device`` is the
    browser's device cookie: a browser that signed in to an account before is let through
    when strangers have spent that account's budget.
    """

    address: str = "local"
    device: str = field(default="", repr=False)


@runtime_checkable
class Authenticator(Protocol):
    def sign_up(
        self, username: str, password: str, email: str | None = None, *, client: SignInClient | None = None
    ) -> Principal:
        """Create an account and sign it in. Raises ``AuthError`` with a message for people."""
        ...

    def sign_in(self, username: str, password: str, *, client: SignInClient | None = None) -> Principal:
        """Check the password. Raises ``AuthError`` (or ``AccountLocked``)."""
        ...

    def sign_out(self, principal: Principal) -> None:
        """End the session on the provider's side, if it keeps one."""
        ...


class ConfirmationRequired(AuthError):
    """The account exists but is not confirmed: ask for the code sent to ``destination``."""

    def __init__(self, message: str, *, username: str, destination: str = "") -> None:
        super().__init__(message)
        self.username = username
        self.destination = destination


class NewPasswordRequired(AuthError):
    """The password was right, but the account must choose a new one before signing in."""

    def __init__(self, message: str, *, username: str) -> None:
        super().__init__(message)
        self.username = username


@runtime_checkable
class AccountRecovery(Protocol):
    """Optional flows of providers that send codes by e-mail (Cognito). ``LocalAuth`` has none."""

    def confirm_sign_up(self, username: str, code: str) -> None:
        """Confirm a new account with the e-mailed code (then the person signs in)."""
        ...

    def resend_code(self, username: str) -> str:
        """Send the confirmation code again; returns where it went (masked)."""
        ...

    def forgot_password(self, username: str) -> str:
        """Send a password-reset code; returns where it went (masked)."""
        ...

    def reset_password(self, username: str, code: str, new_password: str) -> None:
        """Set a new password with the reset code."""
        ...

    def complete_new_password(self, username: str, password: str, new_password: str) -> Principal:
        """Answer the new-password challenge (:class:`NewPasswordRequired`) and sign in."""
        ...


def make_authenticator(settings: Settings, *, engine: Engine) -> Authenticator:
    """The authenticator the settings ask for (``auth_mode``)."""
    if settings.auth_mode == "local":
        from labelkit.auth.local import LocalAuth

        return LocalAuth.from_settings(settings, engine=engine)
    if settings.auth_mode == "cognito":
        from labelkit.auth.cognito import CognitoAuth

        return CognitoAuth.from_settings(settings, engine=engine)
    from labelkit.errors import ConfigError

    raise ConfigError(f"auth_mode {settings.auth_mode!r} is not available")
