"""LocalAuth on a throwaway SQLite database: hashing, first admin, validation, backoff."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from labelkit.auth import Authenticator, Principal
from labelkit.auth.local import WRONG_CREDENTIALS, LocalAuth
from labelkit.db.engine import make_engine, transaction
from labelkit.db.migrate import upgrade
from labelkit.db.queries import users as user_q
from labelkit.errors import AccountLocked, AuthError
from labelkit.testing.clock import ManualDateTime as Clock

PASSWORD = "correct horse battery"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(engine: Engine, clock: Clock) -> LocalAuth:
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return LocalAuth(engine, max_failures=5, hasher=fast, clock=clock)


def test_local_auth_satisfies_the_protocol(auth: LocalAuth) -> None:
    assert isinstance(auth, Authenticator)


def test_passwords_are_stored_as_argon2_hashes(auth: LocalAuth, engine: Engine) -> None:
    auth.sign_up("Alice", PASSWORD, "alice@example.com")
    with transaction(engine) as s:
        user = user_q.get_user_by_username(session=s, username="alice")
        assert user is not None and user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert user.email == "alice@example.com"


def test_first_account_is_admin_and_the_next_is_not(auth: LocalAuth) -> None:
    first = auth.sign_up("alice", PASSWORD)
    second = auth.sign_up("bob", PASSWORD)
    assert first.is_admin and not second.is_admin
    assert auth.sign_in("ALICE", PASSWORD) == first  # usernames are case-insensitive
    assert first.viewer.user_id == first.user_id and first.viewer.is_admin


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("al", PASSWORD, "Usernames are 3–32"),
        ("a" * 33, PASSWORD, "Usernames are 3–32"),
        ("bad name", PASSWORD, "Usernames are 3–32"),
        ("<script>", PASSWORD, "Usernames are 3–32"),
        ("alice", "short", "at least 8"),
        ("alice", "x" * 129, "at most 128"),
        ("alice", "        ", "only spaces"),
        ("alice.b-2", "a good password", ""),  # valid
        ("alice1234", "Alice1234", "must not be the username"),
    ],
)
def test_sign_up_validates_username_and_password(
    auth: LocalAuth, username: str, password: str, message: str
) -> None:
    if not message:
        assert isinstance(auth.sign_up(username, password), Principal)
        return
    with pytest.raises(AuthError, match=message):
        auth.sign_up(username, password)


def test_taken_username_is_refused(auth: LocalAuth) -> None:
    auth.sign_up("alice", PASSWORD)
    with pytest.raises(AuthError, match="^That username is not available; please choose another.$"):
        auth.sign_up("Alice", PASSWORD)


def test_unknown_user_and_wrong_password_give_the_same_message(auth: LocalAuth) -> None:
    auth.sign_up("alice", PASSWORD)
    with pytest.raises(AuthError) as unknown:
        auth.sign_in("nobody", PASSWORD)
    with pytest.raises(AuthError) as wrong:
        auth.sign_in("alice", "wrong password")
    assert str(unknown.value) == str(wrong.value) == WRONG_CREDENTIALS
    assert type(unknown.value) is type(wrong.value) is AuthError


def test_backoff_after_five_failures_doubles_and_ends(auth: LocalAuth, clock: Clock) -> None:
    alice = auth.sign_up("alice", PASSWORD)
    # GIVEN four wrong passwords: still only "wrong"
    for _ in range(4):
        with pytest.raises(AuthError, match=WRONG_CREDENTIALS):
            auth.sign_in("alice", "nope nope")
    # WHEN the fifth is wrong too: a 30 s wait starts
    with pytest.raises(AccountLocked, match=r"^Too many sign-in attempts; try again in 30 seconds\.$"):
        auth.sign_in("alice", "nope nope")
    # THEN even the right password waits, with the time left
    clock.now += timedelta(seconds=20)
    with pytest.raises(AccountLocked, match="try again in 10 seconds"):
        auth.sign_in("alice", PASSWORD)
    # AND once the wait is over one more try is allowed; wrong again, the wait doubles
    clock.now += timedelta(seconds=11)
    with pytest.raises(AccountLocked, match="try again in 60 seconds"):
        auth.sign_in("alice", "nope nope")
    clock.now += timedelta(seconds=61)
    assert auth.sign_in("alice", PASSWORD) == alice


def test_success_resets_the_failure_count(auth: LocalAuth) -> None:
    auth.sign_up("alice", PASSWORD)
    for _ in range(4):
        with pytest.raises(AuthError):
            auth.sign_in("alice", "nope nope")
    auth.sign_in("alice", PASSWORD)
    for _ in range(4):  # four more: not locked, the count started again
        with pytest.raises(AuthError, match=WRONG_CREDENTIALS):
            auth.sign_in("alice", "nope nope")
    auth.sign_in("alice", PASSWORD)


def test_passwords_never_reach_the_logs(auth: LocalAuth, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth.sign_up("alice", PASSWORD)
    with pytest.raises(AuthError):
        auth.sign_in("alice", "secret-wrong-one")
    principal = auth.sign_in("alice", PASSWORD)
    auth.sign_out(principal)
    assert PASSWORD not in caplog.text and "secret-wrong-one" not in caplog.text
