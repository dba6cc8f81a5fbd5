"""Session tokens: resume after a reload, end on sign-out, expire, store no secret."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.engine import Engine

from labelkit.auth.local import LocalAuth
from labelkit.auth.sessions import SessionStore
from labelkit.db.engine import transaction
from labelkit.db.models import WebSession


def test_a_token_resumes_the_same_person_until_sign_out(engine: Engine) -> None:
    principal = LocalAuth(engine).sign_up("alice", "correct horse battery")
    store = SessionStore(engine)
    token = store.issue(principal)
    assert store.resume(token) == principal
    with transaction(engine) as s:
        stored = s.scalars(select(WebSession.token_hash)).all()
    assert token not in stored and len(stored) == 1  # only a hash is kept
    store.revoke(token)
    assert store.resume(token) is None


def test_unknown_and_expired_tokens_sign_nobody_in(engine: Engine) -> None:
    principal = LocalAuth(engine).sign_up("alice", "correct horse battery")
    short = SessionStore(engine, lifetime_seconds=1)
    token = short.issue(principal)
    assert short.resume("not-a-token") is None
    assert short.resume("") is None
    time.sleep(1.2)
    assert short.resume(token) is None
    with transaction(engine) as s:
        assert s.scalars(select(WebSession)).all() == []  # removed on sight
