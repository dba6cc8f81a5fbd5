"""Local accounts: argon2id password hashes in the ``users`` table.

Rules people see:

* usernames are 3-32 characters of letters, digits, ``.``, ``_`` and ``-``
  (case-insensitive); passwords are 8-128 characters and must not be easy to guess
  (:mod:`labelkit.auth.passwords`: zxcvbn, so "12345678" or "password" are refused);
* the first account becomes the admin (``labelkit.db.queries.users.create_user``);
* wrong passwords are throttled per client + account, per account and per client, with a
  doubling wait rather than a lock (:mod:`labelkit.auth.throttle`); the attempt is counted
  before its password is checked, so parallel attempts cannot overrun the budget;
* a wrong password and an unknown username give the *same* message, an unknown username
  still costs one hash verification and is throttled like a real one, so neither the text,
  the timing nor the waits tell which usernames exist. Sign-up cannot hide whether a name is
  free (it either creates the account or does not), so a refused name says only "not
  available" and spends the client's attempt budget like a wrong password.

At most ``parallel_hashes`` argon2 computations run at once (each takes 64 MiB with the
library's defaults: 20 parallel sign-ins used to add 450-650 MB); the others wait their turn.

Passwords are never logged or stored; only their argon2 hashes are.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from labelkit.auth import Principal, SignInClient
from labelkit.auth.passwords import MAX_PASSWORD, MIN_PASSWORD, check_new_password
from labelkit.auth.sessions import hash_token
from labelkit.auth.throttle import SignInThrottle, ThrottlePolicy
from labelkit.db import accounts
from labelkit.db.engine import transaction
from labelkit.db.models import utcnow
from labelkit.db.queries import users as user_q
from labelkit.errors import AccountLocked, AuthError

if TYPE_CHECKING:
    from labelkit.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["MAX_PASSWORD", "MIN_PASSWORD", "LocalAuth", "validate_password", "validate_username"]

WRONG_CREDENTIALS = "Wrong username or password."
NOT_AVAILABLE = "That username is not available; please choose another."
BUSY = "Signing in is busy right now; try again in a moment."
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")
# Longer input is never a password we accept; it is refused without hashing it.
_LONGEST_ATTEMPT = 4 * MAX_PASSWORD


def validate_username(username: str) -> str:
    name = username.strip()
    if not USERNAME_RE.fullmatch(name):
        raise AuthError(
            "Usernames are 3–32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def validate_password(password: str, *, username: str = "", min_strength: int = 3) -> None:
    check_new_password(password, username=username, min_strength=min_strength)


class LocalAuth:
    """:class:`labelkit.auth.Authenticator` over the Labelkit database."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int = 5,
        policy: ThrottlePolicy | None = None,
        hasher: PasswordHasher | None = None,
        parallel_hashes: int = 2,
        hash_wait_seconds: float = 30.0,
        min_strength: int = 3,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self._min_strength = min_strength
        self.throttle = SignInThrottle(
            engine, policy or ThrottlePolicy(free_failures=max_failures), clock=clock
        )
        # Bounds argon2's memory (64 MiB a hash by default) and CPU under a burst of sign-ins.
        self._hashing = threading.BoundedSemaphore(parallel_hashes)
        self._hash_wait = hash_wait_seconds
        # Verified against for unknown usernames, so they take as long as known ones.
        self._dummy_hash = self._hasher.hash("labelkit-timing-equaliser")

    @classmethod
    def from_settings(cls, settings: Settings, *, engine: Engine) -> LocalAuth:
        return cls(
            engine,
            policy=ThrottlePolicy.from_settings(settings),
            parallel_hashes=settings.login_parallel_hashes,
            min_strength=settings.password_min_strength,
        )

    def sign_up(
        self, username: str, password: str, email: str | None = None, *, client: SignInClient | None = None
    ) -> Principal:
        name = validate_username(username)
        check_new_password(password, username=name, min_strength=self._min_strength)
        clean_email = (email or "").strip() or None
        if clean_email is not None and ("@" not in clean_email or len(clean_email) > 254):
            raise AuthError("That email address does not look right.")
        attempt = self.throttle.begin_sign_up(client or SignInClient())
        with transaction(self._engine) as s:
            taken = user_q.get_user_by_username(session=s, username=name) is not None
        if taken:
            # The count stays on the client's budget: probing for names costs like guessing.
            raise AuthError(NOT_AVAILABLE)
        try:
            password_hash = self._hash(password)
        except AuthError:
            self.throttle.cancel(attempt)
            raise
        try:
            with transaction(self._engine) as s:
                user = user_q.create_user(
                    session=s, username=name, password_hash=password_hash, email=clean_email
                )
                principal = Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)
        except IntegrityError as e:
            # Two sign-ups with the same name at once: the unique key let one in.
            raise AuthError(NOT_AVAILABLE) from e
        self.throttle.succeeded(attempt)
        logger.info("account created: %s (admin=%s)", principal.username, principal.is_admin)
        return principal

    def sign_in(self, username: str, password: str, *, client: SignInClient | None = None) -> Principal:
        client = client or SignInClient()
        name = user_q.normalize_username(username)
        now = self._clock()
        with transaction(self._engine) as s:
            user = user_q.get_user_by_username(session=s, username=name) if name else None
            stored = user.password_hash if user is not None else None
            user_id = user.id if user is not None else ""
            trusted = bool(
                user is not None
                and client.device
                and accounts.is_trusted_device(
                    session=s, token_hash=hash_token(client.device), user_id=user.id, now=now
                )
            )
            principal = (
                Principal(user_id=user.id, username=user.username, is_admin=user.is_admin)
                if user is not None
                else None
            )
        # Counted (or refused: AccountLocked) before any password is checked.
        attempt = self.throttle.begin(name, client, trusted=trusted)
        try:
            ok = self._check(stored, password)
        except AuthError:
            self.throttle.cancel(attempt)
            raise
        if not ok or principal is None or stored is None:
            waiting = attempt.wait_message()
            if waiting is not None:
                # Not the username: the log must not become the enumeration oracle either.
                logger.warning("sign-in throttled: %d key(s) blocked after failures", len(attempt.blocked))
                raise AccountLocked(waiting)
            raise AuthError(WRONG_CREDENTIALS)
        rehashed = self._rehash_if_needed(stored, password)
        with transaction(self._engine) as s:
            accounts.note_sign_in(session=s, user_id=user_id, now=self._clock(), password_hash=rehashed)
        self.throttle.succeeded(attempt)
        return principal

    def sign_out(self, principal: Principal) -> None:
        # The dashboard revokes the browser session (labelkit.auth.sessions); nothing else to end.
        logger.info("signed out: %s", principal.username)

    # --- internals ---------------------------------------------------------------

    def _check(self, stored: str | None, password: str) -> bool:
        """Verify ``password`` (against a dummy hash when there is no account), at most
        ``parallel_hashes`` at a time."""
        if len(password) > _LONGEST_ATTEMPT:
            return False
        with self._hash_slot():
            return self._verify(stored or self._dummy_hash, password) and stored is not None

    def _hash(self, password: str) -> str:
        with self._hash_slot():
            return self._hasher.hash(password)

    def _rehash_if_needed(self, stored: str, password: str) -> str | None:
        if not self._hasher.check_needs_rehash(stored):
            return None
        return self._hash(password)

    def _hash_slot(self) -> _Slot:
        return _Slot(self._hashing, self._hash_wait)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(password_hash, password))
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            logger.warning("a stored password hash could not be checked")
            return False


class _Slot:
    """``with`` one of the hashing semaphore's slots, or ``AuthError(BUSY)`` after ``wait`` s."""

    def __init__(self, semaphore: threading.BoundedSemaphore, wait: float) -> None:
        self._semaphore = semaphore
        self._wait = wait

    def __enter__(self) -> None:
        if not self._semaphore.acquire(timeout=self._wait):
            raise AuthError(BUSY)

    def __exit__(self, *exc: object) -> None:
        self._semaphore.release()
