"""Session tokens: resume the same person until sign-out, expire, store no secret
(SQLite and MariaDB). The browser handoff and revocation across tabs are in
``tests/security/test_sessions.py``."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from labelkit.auth.local import LocalAuth
from labelkit.auth.sessions import SessionStore, hash_token, new_token
from labelkit.db.engine import transaction
from labelkit.db.models import WebSession
from labelkit.testing.clock import ManualDateTime as Clock


def test_a_token_resumes_the_same_person_until_sign_out(engine: Engine) -> None:
    principal = LocalAuth(engine).sign_up("alice", "correct horse battery")
    store = SessionStore(engine)
    browser = new_token()
    secret = store.begin(principal, browser_token=browser)
    token = store.complete(browser, secret)
    assert token is not None
    assert store.resume(token) == principal
    with transaction(engine) as s:
        stored = s.scalars(select(WebSession.token_hash)).all()
    # only hashes are kept: neither the session token nor the browser's cookie
    assert token not in stored and browser not in stored and hash_token(token) in stored
    store.revoke(token)
    assert store.resume(token) is None


def test_unknown_and_expired_tokens_sign_nobody_in(engine: Engine) -> None:
    principal = LocalAuth(engine).sign_up("alice", "correct horse battery")
    clock = Clock()
    store = SessionStore(engine, lifetime_seconds=60, clock=clock)
    browser = new_token()
    secret = store.begin(principal, browser_token=browser)
    token = store.complete(browser, secret)
    assert store.resume("not-a-token") is None
    assert store.resume("") is None
    assert store.resume(None) is None
    assert store.resume(token) == principal
    clock.now += timedelta(seconds=61)
    assert store.resume(token) is None
