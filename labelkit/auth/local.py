"""Local accounts: argon2id password hashes in the ``users`` table.

Rules people see:

* usernames are 3-32 characters of letters, digits, ``.``, ``_`` and ``-``
  (case-insensitive); passwords are 8-128 characters;
* the first account becomes the admin (``repository.create_user``);
* after ``max_failures`` wrong passwords in a row the account is locked for
  ``lock_seconds``; a locked account refuses even the right password;
* a wrong password and an unknown username give the *same* message, and an
  unknown username still costs one hash verification, so neither the text nor
  the timing tells which usernames exist.

Passwords are never logged or stored; only their argon2 hashes are.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from labelkit.auth import Principal
from labelkit.db import repository as repo
from labelkit.db.engine import transaction
from labelkit.db.models import utcnow
from labelkit.errors import AccountLocked, AuthError

logger = logging.getLogger(__name__)

WRONG_CREDENTIALS = "Wrong username or password."
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 128


def validate_username(username: str) -> str:
    name = username.strip()
    if not USERNAME_RE.fullmatch(name):
        raise AuthError(
            "Usernames are 3–32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def validate_password(password: str, *, username: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Passwords need at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AuthError(f"Passwords can have at most {MAX_PASSWORD} characters.")
    if not password.strip():
        raise AuthError("A password cannot be only spaces.")
    if username and password.casefold() == username.strip().casefold():
        raise AuthError("The password must not be the username.")


def _locked_message(until: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts; try again in {minutes} {unit}."


class LocalAuth:
    """:class:`labelkit.auth.Authenticator` over the Labelkit database."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int = 5,
        lock_seconds: int = 300,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._max_failures = max_failures
        self._lock_seconds = lock_seconds
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        # Verified against for unknown usernames, so they take as long as known ones.
        self._dummy_hash = self._hasher.hash("labelkit-timing-equaliser")

    def sign_up(self, username: str, password: str, email: str | None = None) -> Principal:
        name = validate_username(username)
        validate_password(password, username=name)
        clean_email = (email or "").strip() or None
        if clean_email is not None and ("@" not in clean_email or len(clean_email) > 254):
            raise AuthError("That email address does not look right.")
        password_hash = self._hasher.hash(password)
        try:
            with transaction(self._engine) as s:
                if repo.get_user_by_username(session=s, username=name) is not None:
                    raise AuthError("That username is taken; please choose another.")
                user = repo.create_user(
                    session=s, username=name, password_hash=password_hash, email=clean_email
                )
                principal = Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)
        except IntegrityError as e:
            # Two sign-ups with the same name at once: the unique key let one in.
            raise AuthError("That username is taken; please choose another.") from e
        logger.info("account created: %s (admin=%s)", principal.username, principal.is_admin)
        return principal

    def sign_in(self, username: str, password: str) -> Principal:
        now = self._clock()
        with transaction(self._engine) as s:
            user = repo.get_user_by_username(session=s, username=username)
            if user is None or user.password_hash is None:
                self._verify(self._dummy_hash, password)
                raise AuthError(WRONG_CREDENTIALS)
            if user.locked_until is not None and user.locked_until > now:
                raise AccountLocked(_locked_message(user.locked_until, now))
            failure: AuthError | None = None
            principal: Principal | None = None
            if not self._verify(user.password_hash, password):
                was_locked = user.locked_until
                repo.record_login_failure(
                    session=s, user=user, max_failures=self._max_failures, lock_seconds=self._lock_seconds
                )
                if user.locked_until is not None and user.locked_until != was_locked:
                    # Count the lock from our clock (injectable for tests), not the repository's.
                    user.locked_until = now + timedelta(seconds=self._lock_seconds)
                    logger.warning("account %s locked after repeated failed sign-ins", user.username)
                    failure = AccountLocked(_locked_message(user.locked_until, now))
                else:
                    failure = AuthError(WRONG_CREDENTIALS)
            else:
                if self._hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = self._hasher.hash(password)
                repo.record_login_success(session=s, user=user)
                principal = Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)
        # Raised after the transaction committed, so the failure count is kept.
        if failure is not None or principal is None:
            raise failure or AuthError(WRONG_CREDENTIALS)
        return principal

    def sign_out(self, principal: Principal) -> None:
        # Local sessions live only in the dashboard's session state; nothing to revoke.
        logger.info("signed out: %s", principal.username)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            logger.warning("a stored password hash could not be checked")
            return False
