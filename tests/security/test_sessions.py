"""Browser sessions: the handoff that sets the HttpOnly cookie (collected only with the
signing-in tab's one-time secret, never with the cookie alone), revocation that reaches every
tab at its next interaction, the idle timeout beside the 14-day maximum (SQLite and MariaDB).

The cookie flags themselves, and a planted cookie polled against the real product, are
checked in real Chromium (``test_http_browser.py``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.auth.local import LocalAuth
from labelkit.auth.sessions import SessionStore, cookie_name, hash_token, new_token
from labelkit.db.engine import transaction
from labelkit.db.models import SessionHandoff, User
from labelkit.services import Services
from labelkit.testing.clock import ManualDateTime as Clock
from tests.dashboard.conftest import APP, PASSWORD, app, texts


@pytest.fixture
def alice(auth: LocalAuth) -> Principal:
    return auth.sign_up("alice", PASSWORD)


def _tab(who: Principal, token: str) -> AppTest:
    """A dashboard tab whose WebSocket session resumed the cookie session ``token``."""
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.session_state["principal"] = who
    at.session_state["_session_token"] = token
    return at.run()


def _signed_in(store: SessionStore, who: Principal) -> str:
    """A session token as /session/start hands it to a browser."""
    browser = new_token()
    secret = store.begin(who, browser_token=browser)
    token = store.complete(browser, secret)
    assert token is not None
    return token


def test_a_handoff_is_collected_once_by_the_browser_it_was_made_for(
    services: Services, alice: Principal
) -> None:
    store = SessionStore(services.engine)
    browser, other = new_token(), new_token()
    # GIVEN a sign-in over the WebSocket of the browser holding cookie `browser`
    secret = store.begin(alice, browser_token=browser)
    assert secret is not None and secret != browser
    # THEN another browser (a link sent to someone else) collects nothing, even with the secret
    assert store.complete(other, secret) is None
    # AND the right one gets a *new* token (the session id changes at sign-in) ...
    token = store.complete(browser, secret)
    assert token is not None and token not in (browser, secret)
    assert store.resume(token) == alice
    # ... once only; the pre-sign-in cookie itself never signs anyone in
    assert store.complete(browser, secret) is None
    assert store.resume(browser) is None
    # AND a browser without a cookie keeps its sign-in in the tab only
    assert store.begin(alice, browser_token=None) is None


def test_a_planted_cookie_without_the_tabs_secret_collects_nothing(
    services: Services, alice: Principal
) -> None:
    store = SessionStore(services.engine)
    # GIVEN a pre-sign-in cookie an attacker planted in alice's browser (so knows), and
    # alice signing in there: the one-time secret goes to her tab only
    planted = new_token()
    secret = store.begin(alice, browser_token=planted)
    assert secret is not None
    # WHEN the attacker polls the handoff with the cookie: without a secret, or guessing one
    stolen = [
        store.complete(planted, guess) for guess in (None, "", planted, *(new_token() for _ in range(20)))
    ]
    # THEN nothing is handed over, and alice's tab still collects her session
    assert stolen == [None] * len(stolen)
    token = store.complete(planted, secret)
    assert token is not None and store.resume(token) == alice


def test_only_hashes_of_the_cookie_and_the_secret_are_stored(services: Services, alice: Principal) -> None:
    store = SessionStore(services.engine)
    browser = new_token()
    secret = store.begin(alice, browser_token=browser)
    assert secret is not None
    with transaction(services.engine) as s:
        (stored,) = s.scalars(select(SessionHandoff.browser_hash)).all()
    # neither value in clear, and not the cookie's hash alone (which its holder could compute)
    assert stored not in (browser, secret, hash_token(browser), hash_token(secret))
    assert len(stored) == 64


def test_cookies_are_host_prefixed_over_https_only() -> None:
    # Browsers refuse a __Host- cookie without Secure, so plain HTTP keeps the plain name.
    assert cookie_name("labelkit_session", secure=True) == "__Host-labelkit_session"
    assert cookie_name("labelkit_device", secure=True) == "__Host-labelkit_device"
    assert cookie_name("labelkit_session", secure=False) == "labelkit_session"


def test_a_handoff_expires_after_a_minute(services: Services, alice: Principal) -> None:
    clock = Clock()
    store = SessionStore(services.engine, clock=clock)
    browser = new_token()
    secret = store.begin(alice, browser_token=browser)
    clock.now += timedelta(seconds=61)
    assert store.complete(browser, secret) is None


def test_sessions_end_when_idle_or_after_their_lifetime(services: Services, alice: Principal) -> None:
    clock = Clock()
    store = SessionStore(services.engine, lifetime_seconds=14 * 24 * 3600, idle_seconds=8 * 3600, clock=clock)
    # GIVEN a session used every 7 hours: it stays alive (each use moves the idle timeout on) ...
    token = _signed_in(store, alice)
    for _ in range(6):
        clock.now += timedelta(hours=7)
        assert store.resume(token) == alice
    # ... THEN 8 hours without use end it
    clock.now += timedelta(hours=8, seconds=1)
    assert store.resume(token) is None
    # AND however busy, a session ends 14 days (48 x 7 hours) after sign-in
    token = _signed_in(store, alice)
    for _ in range(47):
        clock.now += timedelta(hours=7)
        assert store.resume(token) == alice
    clock.now += timedelta(hours=7)
    assert store.resume(token) is None


def test_sign_out_in_one_tab_ends_every_tab_of_that_browser_at_its_next_interaction(
    services: Services, alice: Principal
) -> None:
    store = SessionStore(services.engine)
    token = _signed_in(store, alice)
    # GIVEN two tabs of the same browser, both signed in through the same cookie session
    tabs = [_tab(alice, token) for _ in range(2)]
    for at in tabs:
        assert "Gallery" in texts(at), texts(at)
    # WHEN the first tab signs out
    tabs[0].button(key="sign_out").click().run()
    assert any(b.label == "Sign in" for b in tabs[0].button)
    # THEN the second tab, at its next interaction, shows the sign-in page and forgets alice
    tabs[1].run()
    assert not tabs[1].exception
    assert any(b.label == "Sign in" for b in tabs[1].button)
    assert "principal" not in tabs[1].session_state
    assert "Gallery" not in texts(tabs[1])


def test_deleting_a_user_ends_their_open_tabs(services: Services, alice: Principal, auth: LocalAuth) -> None:
    bob = auth.sign_up("bob", PASSWORD)
    store = SessionStore(services.engine)
    token = _signed_in(store, bob)
    at = _tab(bob, token)
    assert "Gallery" in texts(at)
    # WHEN an administrator removes bob (his sessions go with him: ON DELETE CASCADE)
    with transaction(services.engine) as s:
        s.delete(s.scalars(select(User).where(User.username == "bob")).one())
    # THEN bob's tab is signed out at its next interaction
    at.run()
    assert any(b.label == "Sign in" for b in at.button)
    assert "principal" not in at.session_state


def test_a_demoted_admin_loses_admin_pages_at_the_next_interaction(
    services: Services, alice: Principal
) -> None:
    store = SessionStore(services.engine)
    token = _signed_in(store, alice)
    at = _tab(alice, token)
    assert at.session_state["principal"].is_admin
    with transaction(services.engine) as s:
        s.scalars(select(User).where(User.username == "alice")).one().is_admin = False
    at.run()
    assert not at.session_state["principal"].is_admin


def test_a_tab_only_sign_in_ends_when_the_user_is_removed(services: Services, alice: Principal) -> None:
    # AppTest (like a browser that refuses cookies) has no cookie: the sign-in lives in the tab,
    # and is still checked against the database on every interaction.
    at = app(alice)
    assert "Gallery" in texts(at)
    with transaction(services.engine) as s:
        s.delete(s.scalars(select(User).where(User.username == "alice")).one())
    at.run()
    assert "principal" not in at.session_state
