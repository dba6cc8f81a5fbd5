"""Accounts: the brute-force backoff with an injected clock, passwords (and their hashes) never
logged anywhere, and signing out really ends the dashboard session. (Concurrency, strangers
and enumeration: ``test_sign_in_throttle.py``.)"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from labelkit.auth import Principal
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.models import User
from labelkit.errors import AccountLocked, AuthError
from labelkit.services import Services, build_pipeline
from labelkit.testing.clock import ManualDateTime as Clock
from labelkit.uploads import upload_image
from labelkit.worker import Listener
from tests.dashboard.conftest import RED, app

SECRET = "Tr0ub4dor&3-very-secret"
WRONG = "wrong-password-Zebra-42"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_five_wrong_passwords_make_the_next_attempt_wait(services: Services) -> None:
    clock = Clock()
    auth = LocalAuth(services.engine, max_failures=5, hasher=CHEAP, clock=clock)
    auth.sign_up("alice", SECRET)
    # GIVEN four wrong passwords: still only "wrong"
    for _ in range(4):
        with pytest.raises(AuthError) as e:
            auth.sign_in("alice", WRONG)
        assert type(e.value) is AuthError
    # WHEN the fifth is wrong too
    with pytest.raises(AccountLocked, match="try again in 30 seconds"):
        auth.sign_in("alice", WRONG)
    # THEN even the right password is refused during the wait, and says for how long
    clock.now += timedelta(seconds=29)
    with pytest.raises(AccountLocked, match="try again in 1 second"):
        auth.sign_in("alice", SECRET)
    # ... and once the wait is over the right password works, and resets the count
    clock.now += timedelta(seconds=2)
    assert auth.sign_in("alice", SECRET).username == "alice"
    for _ in range(4):
        with pytest.raises(AuthError) as e:
            auth.sign_in("alice", WRONG)
        assert type(e.value) is AuthError


@pytest.fixture
def all_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record of every logger at DEBUG, whatever handlers the code configures."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, old_level = Keep(level=logging.DEBUG), root.level
    # As `--log-level DEBUG` does (labelkit.logs.configure_logging): the root at DEBUG.
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old_level)


def _everything_logged(records: list[logging.LogRecord]) -> str:
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = []
    for r in records:
        parts.append(fmt.format(r))  # includes the traceback, if any
        parts.append(repr({k: v for k, v in vars(r).items() if k not in ("exc_info",)}))
    return "\n".join(parts)


def _log_everything_an_account_does(services: Services, records: list[logging.LogRecord]) -> tuple[str, str]:
    """Sign-up, sign-in right and wrong (through to a lockout), an unknown user, the
    dashboard's sign-in form, an upload and the listener labelling it. Returns
    (everything logged, the stored argon2 hash)."""
    auth = LocalAuth(services.engine, max_failures=5, hasher=CHEAP)
    alice = auth.sign_up("alice", SECRET)
    auth.sign_in("alice", SECRET)
    at = app()
    at.text_input(key="signin_username").input("alice")
    at.text_input(key="signin_password").input(SECRET)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert isinstance(at.session_state["principal"], Principal)
    for _ in range(5):
        with pytest.raises(AuthError):
            auth.sign_in("alice", WRONG)
    with pytest.raises(AuthError):
        auth.sign_in("nobody", SECRET)
    result = upload_image(services=services, owner_id=alice.user_id, filename="red.jpg", data=RED)
    assert result.outcome == "accepted"
    Listener(
        queue=services.queue,
        pipeline=build_pipeline(services),
        workers=1,
        wait_seconds=0,
        visibility_timeout=30,
    ).run(threading.Event(), drain=True)
    with transaction(services.engine) as s:
        stored_hash = s.scalars(select(User.password_hash).where(User.username == "alice")).one()
    assert stored_hash and stored_hash.startswith("$argon2")
    logged = _everything_logged(records)
    assert "account created: alice" in logged and "throttled" in logged and "image labelled" in logged
    return logged, stored_hash


def test_passwords_are_never_logged(services: Services, all_logs: list[logging.LogRecord]) -> None:
    # GIVEN everything logged at DEBUG through an account's life, an upload and the listener
    logged, _ = _log_everything_an_account_does(services, all_logs)
    # THEN no password (right or wrong) appears in any record
    assert SECRET not in logged and WRONG not in logged


def test_password_hashes_are_never_logged(services: Services, all_logs: list[logging.LogRecord]) -> None:
    # GIVEN everything logged at DEBUG through an account's life, an upload and the listener
    logged, stored_hash = _log_everything_an_account_does(services, all_logs)
    # THEN the argon2 hash (nor its digest part) appears in no record
    assert stored_hash not in logged and stored_hash.rsplit("$", 1)[-1] not in logged


def test_signing_out_ends_the_session(services: Services, auth: LocalAuth) -> None:
    alice = auth.sign_up("alice", SECRET)
    # GIVEN alice signed in on the gallery (AppTest drops the sidebar after switch_page, so
    # the session starts on the default page), with some of her state in the session
    at = app(alice)
    assert "Gallery" in [t.value for t in at.title]
    at.session_state["upload_results"] = ["leftover"]
    # WHEN she signs out
    at.button(key="sign_out").click().run()
    assert not at.exception
    # THEN no principal (nor anything else of hers) is left in the session state ...
    assert "principal" not in at.session_state and "upload_results" not in at.session_state
    assert any(b.label == "Sign in" for b in at.button)
    assert "Gallery" not in [t.value for t in at.title]
    # ... and asking for any page again (as a bookmarked URL would) gets the sign-in form
    for page in (
        "app_pages/gallery.py",
        "app_pages/upload.py",
        "app_pages/labels.py",
        "app_pages/review.py",
        "app_pages/image.py",
    ):
        try:
            at.switch_page(page).run()
        except ValueError as e:  # the page is not even offered
            assert "Could not find a navigation page" in str(e)
            continue
        assert not at.exception, (page, at.exception)
        assert any(b.label == "Sign in" for b in at.button), page
        assert "principal" not in at.session_state, page
        assert not {"Gallery", "Upload photos", "Labels", "Review"} & {t.value for t in at.title}, page
