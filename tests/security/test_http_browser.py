"""The HTTP face of the product, started as ``make run`` starts it, in headless Chromium and
through a cookie-less HTTP client (issue #15 items 7, 8 and 12).

* the session cookie is set by the server, HttpOnly and SameSite=Strict (Secure over HTTPS),
  invisible to scripts, and a new one at every sign-in; signing out in one tab ends the
  other tabs at their next interaction, and a copied cookie is dead afterwards;
* no photo is ever served at a ``/media/…`` URL (they travel inline over the WebSocket),
  and ``/media/…`` (downloads) answers only a signed-in session: not a cookie-less client,
  not the same cookie after sign-out;
* ``/_stcore/metrics`` and the agent API are closed; every response carries the security
  headers, without nginx in front.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from skimage import data as skdata

from tests.e2e.conftest import Product
from tests.helpers import sign_up_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT = 60_000
PASSWORD = "correct horse battery"
INLINE_PHOTO = 'img[src^="data:image/jpeg;base64,"]'


def _get(
    url: str, *, cookie: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """A plain HTTP GET (no browser, no cookies unless given): status, headers, body."""
    req = urllib.request.Request(url, headers={**(headers or {}), **({"Cookie": cookie} if cookie else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, msg, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        status, msg, body = e.code, e.headers, e.read()
    out: dict[str, list[str]] = {}
    for k, v in msg.items():
        out.setdefault(k.lower(), []).append(v)
    return status, out, body


def _cookie(context: BrowserContext, name: str) -> dict[str, object]:
    found = [c for c in context.cookies() if c["name"] == name]
    assert found, f"no {name} cookie in {[c['name'] for c in context.cookies()]}"
    return dict(found[0])


def _sign_up(page: Page, url: str, username: str) -> None:
    page.goto(url)
    sign_up_in_browser(page, username, PASSWORD)


def _nav(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


def _sign_out(page: Page) -> None:
    """Sign out and wait for the server's answer that replaces the cookie (the sign-in page
    can show before the browser has loaded /session/end)."""
    with page.expect_response(lambda r: "/session/end" in r.url):
        page.get_by_role("button", name=re.compile("Sign out")).click()
    expect(page.get_by_role("tab", name="Create account")).to_be_visible()


def test_the_session_cookie_is_httponly_set_by_the_server_and_dies_with_sign_out(
    product: Product, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(product.url)
        expect(page.get_by_role("tab", name="Create account")).to_be_visible()
        before = _cookie(context, "labelkit_session")["value"]
        # WHEN alice signs up (and so signs in)
        _sign_up(page, product.url, "alice")
        session = _cookie(context, "labelkit_session")
        # THEN the cookie is HttpOnly, SameSite=Strict, for the whole site, and new at sign-in
        assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/"
        assert session["secure"] is False  # plain HTTP here; see the HTTPS test below
        assert session["value"] != before
        # ... and no script in the page can read it (nor the device cookie)
        visible = page.evaluate("document.cookie")
        assert "labelkit_session" not in visible and "labelkit_device" not in visible
        assert _cookie(context, "labelkit_device")["httpOnly"] is True
        # AND a reload, and a second tab, are signed in by it
        page.reload()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        other = context.new_page()
        other.set_default_timeout(TIMEOUT)
        other.goto(product.url)
        expect(other.get_by_role("heading", name="Gallery")).to_be_visible()
        # WHEN alice signs out in the first tab
        _sign_out(page)
        # THEN the second tab is signed out at its next interaction
        _nav(other, "Upload")
        expect(other.get_by_role("tab", name="Create account")).to_be_visible()
        expect(other.get_by_text("Administrator")).to_have_count(0)
        # AND the old cookie, copied into another browser, signs nobody in
        assert _cookie(context, "labelkit_session")["value"] != session["value"]
        thief = browser.new_context()
        try:
            thief.add_cookies(
                [{"name": "labelkit_session", "value": str(session["value"]), "url": product.url}]
            )
            stolen = thief.new_page()
            stolen.set_default_timeout(TIMEOUT)
            stolen.goto(product.url)
            expect(stolen.get_by_role("tab", name="Create account")).to_be_visible()
        finally:
            thief.close()
    finally:
        context.close()


def test_the_cookie_is_secure_when_the_request_came_over_https(product: Product) -> None:
    # nginx terminates TLS and says so in X-Forwarded-Proto; uvicorn trusts it from loopback only.
    _, plain, _ = _get(product.url + "/")
    _, tls, _ = _get(product.url + "/", headers={"X-Forwarded-Proto": "https"})
    (plain_cookie,) = [c for c in plain["set-cookie"] if c.startswith("labelkit_session=")]
    (tls_cookie,) = [c for c in tls["set-cookie"] if c.startswith("labelkit_session=")]
    assert "HttpOnly" in plain_cookie and "SameSite=Strict" in plain_cookie and "Secure" not in plain_cookie
    assert "HttpOnly" in tls_cookie and tls_cookie.endswith("; Secure")


def _photo(tmp: Path) -> Path:
    path = tmp / "chelsea.jpg"
    Image.fromarray(skdata.chelsea()).save(path, format="JPEG", quality=90)
    return path


def test_photos_never_get_a_media_url_and_media_needs_a_live_session(
    product: Product, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        _sign_up(page, product.url, "bob")
        # GIVEN bob's photo in the gallery
        _nav(page, "Upload")
        page.locator("input[type=file]").set_input_files([str(_photo(tmp_path))])
        # (queued, or already being labelled or labelled: the worker is quick)
        expect(
            page.get_by_text(re.compile(r"chelsea\.jpg.*(queued for labelling|labelling|labelled)"))
        ).to_be_visible()
        _nav(page, "Gallery")
        # (wait for the photo itself, drawn from inline data, not for the page's first paint)
        expect(page.locator(INLINE_PHOTO).first).to_be_visible()
        # THEN every picture on the page is inline data, none is a URL anyone could fetch
        sources = page.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src') || '')")
        assert any(s.startswith("data:image/jpeg;base64,") for s in sources), sources[:3]
        assert not [s for s in sources if "/media/" in s]
        # AND the image page's full view too (waited for: the heading shows before the photo)
        page.get_by_role("link", name="Open").first.click()
        expect(page.get_by_role("heading", name="chelsea.jpg")).to_be_visible()
        expect(page.get_by_test_id("stImage").locator(INLINE_PHOTO).first).to_be_visible()
        sources = page.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src') || '')")
        assert any(s.startswith("data:image/jpeg;base64,") for s in sources)
        assert not [s for s in sources if "/media/" in s]
        # GIVEN a download (the export), which Streamlit serves at a /media/ URL
        _nav(page, "Export")
        with page.expect_download() as download:
            page.get_by_role("button", name=re.compile("^Download ")).click()
        media_url = download.value.url
        assert "/media/" in media_url, media_url
        cookie = f"labelkit_session={_cookie(context, 'labelkit_session')['value']}"
        # THEN a client without the cookie gets nothing; with bob's live session it gets the file
        status, headers, _ = _get(media_url)
        assert status == 404
        status, headers, body = _get(media_url, cookie=cookie)
        assert status == 200 and body and headers["cache-control"] == ["private, no-store"]
        # AND after bob signs out, the same cookie gets nothing
        _sign_out(page)
        status, _, _ = _get(media_url, cookie=cookie)
        assert status == 404
    finally:
        context.close()


def test_metrics_are_closed_and_security_headers_are_sent(product: Product) -> None:
    for path in (
        "/_stcore/metrics",
        "/_stcore/metrics?families=session_events_total",
        "/_stcore/agent/openapi.json",
    ):
        status, headers, body = _get(product.url + path)
        assert status == 404, (path, status, body[:200])
        assert headers["x-content-type-options"] == ["nosniff"]
    status, _, body = _get(product.url + "/_stcore/health")
    assert status == 200 and body == b"ok"  # what health checks need stays open
    status, headers, _ = _get(product.url + "/")
    assert status == 200
    for name, value in {
        "x-content-type-options": "nosniff",
        "x-frame-options": "SAMEORIGIN",
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
    }.items():
        assert headers.get(name) == [value], (name, headers.get(name))
    assert "frame-ancestors 'self'" in headers["content-security-policy"][0]
    assert "object-src 'none'" in headers["content-security-policy"][0]
    assert "camera=()" in headers["permissions-policy"][0]
