"""A sign-in that keeps the tab (no HTTP layer, as AppTest runs it) follows ``?next=`` to its
page; a ``next`` outside the app is dropped. (Through the real server: tests/e2e/test_browsing.py.)"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.services import Services
from tests.dashboard.conftest import PASSWORD, RED, app, drain, texts, upload


def _sign_in(services: Services, next_value: str) -> tuple[AppTest, str]:
    at = app()
    at.query_params["next"] = next_value
    at.run()
    at.text_input(key="signin_username").input("alice")
    at.text_input(key="signin_password").input(PASSWORD)
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    assert not at.exception
    return at, texts(at)


def test_sign_in_lands_on_the_deep_link(services: Services, alice: Principal) -> None:
    image_id = upload(services, alice, "red.jpg", RED)
    drain(services)
    at, shown = _sign_in(services, f"/image?image={image_id}")
    assert "red.jpg" in shown and "Back to the gallery" in [
        getattr(e, "label", "") for e in at.get("page_link")
    ]


def test_a_next_outside_the_app_is_dropped(services: Services, alice: Principal) -> None:
    at, shown = _sign_in(services, "https://evil.example/")
    assert "Gallery" in shown
    assert "next" not in at.query_params
