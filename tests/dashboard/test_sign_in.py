"""Sign-up, sign-in, wrong passwords, lockout and sign-out through the real app (AppTest)."""

from __future__ import annotations

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import StopException
from streamlit.testing.v1 import AppTest

from dashboard import core
from labelkit.auth import Principal
from labelkit.services import Services
from tests.dashboard.conftest import PASSWORD, app, texts


def _submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click()
    return at.run()


def _sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="signin_username").input(username)
    at.text_input(key="signin_password").input(password)
    return _submit(at, "Sign in")


def test_signed_out_visitors_only_get_the_sign_in_page(services: Services) -> None:
    at = app()
    assert not at.exception
    assert "Labelkit" in texts(at)
    assert "first account becomes the administrator" in texts(at)


def test_sign_up_signs_in_and_the_first_account_is_admin(services: Services) -> None:
    at = app()
    at.text_input(key="signup_username").input("carol")
    at.text_input(key="signup_password").input(PASSWORD)
    at.text_input(key="signup_repeat").input(PASSWORD)
    _submit(at, "Create account")
    assert not at.exception
    principal = at.session_state["principal"]
    assert principal.username == "carol" and principal.is_admin
    # A browser lands on the default page (Gallery); AppTest keeps the page it asked for
    # (sign-in), so open the gallery explicitly.
    at.switch_page("app_pages/gallery.py").run()
    assert "Gallery" in texts(at) and "No images yet — upload some." in texts(at)


def test_sign_up_explains_bad_input(services: Services, alice: Principal) -> None:
    at = app()
    at.text_input(key="signup_username").input("alice")
    at.text_input(key="signup_password").input(PASSWORD)
    at.text_input(key="signup_repeat").input(PASSWORD + "x")
    _submit(at, "Create account")
    assert [e.value for e in at.error] == ["The two passwords differ."]
    at.text_input(key="signup_repeat").input(PASSWORD)
    _submit(at, "Create account")
    assert [e.value for e in at.error] == ["That username is not available; please choose another."]
    assert "principal" not in at.session_state


def test_sign_in_and_wrong_password(services: Services, alice: Principal) -> None:
    at = app()
    _sign_in(at, "alice", "not the password")
    assert [e.value for e in at.error] == ["Wrong username or password."]
    _sign_in(at, "nobody", PASSWORD)
    assert [e.value for e in at.error] == ["Wrong username or password."]  # same message: no user leak
    _sign_in(at, "alice", PASSWORD)
    assert not at.error and at.session_state["principal"] == alice


def test_backoff_after_five_wrong_passwords(services: Services, alice: Principal) -> None:
    at = app()
    for _ in range(4):
        _sign_in(at, "alice", "not the password")
        assert [e.value for e in at.error] == ["Wrong username or password."]
    _sign_in(at, "alice", "not the password")
    assert [e.value for e in at.error] == ["Too many sign-in attempts; try again in 30 seconds."]
    _sign_in(at, "alice", PASSWORD)  # even the right password waits
    assert "Too many sign-in attempts" in at.error[0].value
    assert "principal" not in at.session_state


def test_sign_out_clears_the_session_and_returns_to_sign_in(services: Services, alice: Principal) -> None:
    at = app(alice)  # the default page, Gallery (AppTest drops the sidebar after switch_page)
    assert "Gallery" in [t.value for t in at.title]
    at.session_state["upload_results"] = ["leftover"]
    at.button(key="sign_out").click().run()
    assert "principal" not in at.session_state and "upload_results" not in at.session_state
    assert any(b.label == "Sign in" for b in at.button)
    assert "Gallery" not in [t.value for t in at.title]


def test_a_sign_out_redirect_an_interrupted_run_left_is_sent_by_the_next_run(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sign-out forgets the tab's state, then sends the browser to /session/end for a fresh
    # cookie. A click landing between the two stops the run at its next Streamlit call (where
    # a redirect is queued); the run that follows, with nobody signed in, still sends it.
    sent: list[str] = []

    def interrupted_once(path: str) -> None:
        sent.append(path)
        if len(sent) == 1:
            raise StopException  # what Streamlit raises in the run when a new click lands

    monkeypatch.setattr(core, "_navigate", interrupted_once)
    at = app()
    at.session_state["_pending_redirect"] = "/session/end"
    at.run()
    assert "_pending_redirect" in at.session_state  # not sent: still pending
    at.run()
    assert sent == ["/session/end", "/session/end"]
    assert "_pending_redirect" not in at.session_state
    assert any(b.label == "Sign in" for b in at.button)
