"""Small helpers shared by test packages (ports, waiting for servers, signing up in a browser)."""

from __future__ import annotations

import re
import socket
import time
import urllib.request

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

# How long a browser test waits for something to appear (ms). Generous: on a busy 2-core
# machine a Streamlit rerun plus the real model can take many seconds; a wait ends as
# soon as its condition holds, so a fast machine pays nothing for it.
BROWSER_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180) -> None:
    """Wait until ``url`` answers 200."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout}s: {last}")


def sign_up_in_browser(page: Page, username: str, password: str) -> None:
    """Create an account (and so sign in) on the sign-in page ``page`` is showing, as a
    person does: the "Create account" tab, its form, its button; waits for the gallery.

    The tab is clicked until its form shows: a click that lands while the page is still
    being drawn (a busy machine) can be lost with the redraw, and filling the hidden form
    would wait in vain."""
    tab = page.get_by_role("tab", name="Create account")
    repeat = page.get_by_label("Repeat password")
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    while True:
        tab.click()
        try:
            expect(repeat).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    page.get_by_label("Username").last.fill(username)
    page.get_by_label("Password", exact=True).last.fill(password)
    repeat.fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()


def sign_out_in_browser(page: Page) -> None:
    """Sign out with the sidebar's button and wait for the server's answer that replaces the
    cookie (``/session/end``), then for the sign-in page (which can show before it).

    As with the tab above, a click can be lost with a redraw on a busy machine (seen once beside
    two CPU hogs: no /session/end in 120 s): the button is clicked again, while it is still
    there, until the response comes or the deadline passes."""
    ended: list[str] = []
    page.on("response", lambda r: ended.append(r.url) if "/session/end" in r.url else None)
    button = page.get_by_role("button", name=re.compile("Sign out"))
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    while not ended:
        assert time.monotonic() < deadline, "signing out never reached /session/end"
        if button.is_visible():
            try:
                button.click(timeout=10_000)
            except PlaywrightError:
                pass  # gone meanwhile: the page is moving on (the response is what is awaited)
        again = min(time.monotonic() + 30, deadline)
        while not ended and time.monotonic() < again:
            page.wait_for_timeout(250)  # poll interval: the condition is a /session/end response
    expect(page.get_by_role("tab", name="Create account")).to_be_visible()


def sign_in_in_browser(page: Page, username: str, password: str) -> None:
    """Sign in on the sign-in page ``page`` is showing, as a person does; waits for the gallery.

    A click that lands while the page is still being drawn (a busy machine) can be lost with
    the redraw: while the form is still there after a while, it is filled and sent again."""
    gallery = page.get_by_role("heading", name="Gallery")
    button = page.get_by_role("button", name="Sign in")
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    while True:
        if button.count():
            page.get_by_label("Username").first.fill(username)
            page.get_by_label("Password", exact=True).first.fill(password)
            button.click()
        try:
            expect(gallery).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def wait_idle(page: Page, timeout: float = 120_000) -> None:
    """Wait until the app's script is not running (Streamlit marks its root with
    ``data-test-script-state``): the rerun a click asked for has finished."""
    expect(page.locator('[data-testid="stApp"]')).to_have_attribute(
        "data-test-script-state", "notRunning", timeout=timeout
    )
