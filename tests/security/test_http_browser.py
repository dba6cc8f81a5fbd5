"""The HTTP face of the product, started as ``make run`` starts it, in headless Chromium and
through a cookie-less HTTP client (issue #15 items 7, 8 and 12).

* the session cookie is set by the server, HttpOnly and SameSite=Strict (Secure and
  ``__Host-`` prefixed over HTTPS), invisible to scripts, and a new one at every sign-in;
  signing out in one tab ends the other tabs at their next interaction, and a copied cookie
  is dead afterwards;
* a pre-sign-in cookie planted in a browser, polled at ``/session/start`` while its owner
  signs in, never collects the session (issue #25 finding 3): the handoff also needs the
  signing-in tab's one-time secret; ``/session/start`` is rate-limited per client address;
* no photo is ever served at a ``/media/…`` URL (they travel inline over the WebSocket),
  and ``/media/…`` (downloads) answers only the signed-in session that made the download:
  not a cookie-less client, not the same cookie after sign-out, not another user's live
  session (issue #25 finding 8);
* ``/_stcore/metrics`` and the agent API are closed; every response carries the security
  headers, without nginx in front.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from skimage import data as skdata

from labelkit.auth.sessions import new_token
from tests.e2e.conftest import Product
from tests.helpers import BROWSER_TIMEOUT_MS, sign_out_in_browser, sign_up_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
logger = logging.getLogger(__name__)

TIMEOUT = BROWSER_TIMEOUT_MS  # a busy 2-core machine: waits end as soon as their condition holds
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


def _raw_get(base: str, path: str, headers: dict[str, str]) -> tuple[int, http.client.HTTPMessage]:
    """One GET that follows no redirect (a redirect's own Set-Cookie is what matters here)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers
    finally:
        conn.close()


def _cookie(context: BrowserContext, name: str) -> dict[str, object]:
    found = [c for c in context.cookies() if c["name"] == name]
    assert found, f"no {name} cookie in {[c['name'] for c in context.cookies()]}"
    return dict(found[0])


def _sign_up(page: Page, url: str, username: str) -> None:
    page.goto(url)
    sign_up_in_browser(page, username, PASSWORD)


def _nav(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


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
        sign_out_in_browser(page)
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
    assert "HttpOnly" in plain_cookie and "SameSite=Strict" in plain_cookie and "Secure" not in plain_cookie
    # Over HTTPS the name carries the __Host- prefix (Secure, Path=/, no Domain): no sibling
    # subdomain and no plain-HTTP page can plant it.
    (tls_cookie,) = tls["set-cookie"]
    assert tls_cookie.startswith("__Host-labelkit_session=")
    assert "HttpOnly" in tls_cookie and "Path=/" in tls_cookie and tls_cookie.endswith("; Secure")
    assert "Domain" not in tls_cookie
    # AND an HTTPS request reads only the __Host- name: a plainly named cookie (planted over
    # HTTP, or by a sibling subdomain) counts as none, so the page gives a __Host- one
    planted = new_token()
    _, tls, _ = _get(
        product.url + "/", cookie=f"labelkit_session={planted}", headers={"X-Forwarded-Proto": "https"}
    )
    (tls_cookie,) = tls["set-cookie"]
    assert tls_cookie.startswith("__Host-labelkit_session=") and planted not in tls_cookie


class _Poller(threading.Thread):
    """An attacker who planted ``cookie`` in someone's browser and polls ``/session/start``
    with it as fast as it can, from a new address each time (so no per-address limit slows
    it: what stops it must be the handoff itself), sometimes guessing a secret."""

    def __init__(self, base: str, cookie: str) -> None:
        super().__init__(daemon=True)
        self.base, self.cookie = base, cookie
        self.stop = threading.Event()
        self.polls = 0
        self.statuses: set[int] = set()
        self.stolen: list[str] = []

    def run(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            path = "/session/start" + (f"?h={new_token()}" if n % 2 else "")
            forwarded = f"198.51.{n // 250 % 250}.{n % 250 + 1}"  # uvicorn trusts it from loopback
            status, headers = _raw_get(
                self.base, path, {"Cookie": f"labelkit_session={self.cookie}", "X-Forwarded-For": forwarded}
            )
            self.polls += 1
            self.statuses.add(status)
            self.stolen += [c for c in headers.get_all("set-cookie") or [] if "labelkit_session=" in c]


def _create_account(page: Page, username: str) -> None:
    """The sign-up form filled and sent (as tests.helpers.sign_up_in_browser does), without
    waiting for the gallery: the caller watches what happens next."""
    tab = page.get_by_role("tab", name="Create account")
    repeat = page.get_by_label("Repeat password")
    for _ in range(BROWSER_TIMEOUT_MS // 10_000):
        tab.click()  # a click that lands while the page is being drawn can be lost: again
        try:
            expect(repeat).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            continue
    page.get_by_label("Username").last.fill(username)
    page.get_by_label("Password", exact=True).last.fill(PASSWORD)
    repeat.fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()


def test_a_planted_cookie_polled_at_session_start_never_gets_the_session(
    product: Product, browser: Browser
) -> None:
    # GIVEN a pre-sign-in cookie whose value an attacker chose, planted in the victim's browser
    planted = new_token()
    context = browser.new_context()
    poller = _Poller(product.url, planted)
    try:
        context.add_cookies([{"name": "labelkit_session", "value": planted, "url": product.url}])
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(product.url)
        expect(page.get_by_role("tab", name="Create account")).to_be_visible()
        assert _cookie(context, "labelkit_session")["value"] == planted  # kept: it looks like ours
        # ... and the attacker polling /session/start with it, from before the victim signs in
        poller.start()
        # WHEN the victim signs up (and so signs in) in that browser: /session/start answers,
        # and the page it sends the browser to has loaded
        with page.expect_event("load", timeout=TIMEOUT):
            with page.expect_response(lambda r: "/session/start" in r.url, timeout=TIMEOUT) as started:
                _create_account(page, "victim")
        answer = started.value
        poller.stop.set()
        poller.join(timeout=60)
        logger.info(
            "planted cookie: %d polls of /session/start, %d sessions", poller.polls, len(poller.stolen)
        )
        # THEN the attacker, who polled all along, never got a session cookie
        assert poller.polls >= 2 and poller.statuses == {303}, (poller.polls, poller.statuses)
        assert poller.stolen == [], f"the attacker collected the session: {poller.stolen}"
        # AND the victim did: a new cookie (not the planted one), on a redirect whose URL has
        # no secret and that sends no referrer
        assert answer.status == 303
        assert "h=" not in (answer.headers.get("location") or ""), answer.headers
        assert answer.headers.get("referrer-policy") == "no-referrer"
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        assert _cookie(context, "labelkit_session")["value"] != planted
        page.reload()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        # AND the planted value signs no one in, in another browser
        thief = browser.new_context()
        try:
            thief.add_cookies([{"name": "labelkit_session", "value": planted, "url": product.url}])
            stolen = thief.new_page()
            stolen.set_default_timeout(TIMEOUT)
            stolen.goto(product.url)
            expect(stolen.get_by_role("tab", name="Create account")).to_be_visible()
        finally:
            thief.close()
    finally:
        poller.stop.set()
        context.close()


def test_session_start_is_rate_limited_per_client_address(product: Product) -> None:
    # GIVEN a client (one address, as nginx forwards it) asking /session/start again and again
    flood = {"Cookie": f"labelkit_session={new_token()}", "X-Forwarded-For": "203.0.113.7"}
    answers = [_raw_get(product.url, "/session/start", flood) for _ in range(25)]
    # THEN after at most 10 (in 10 s) it is told to wait: 429 with Retry-After in seconds
    statuses = [status for status, _ in answers]
    assert statuses[:10] == [303] * 10, statuses
    refused = [headers for status, headers in answers if status == 429]
    assert refused, statuses
    assert all(1 <= int(h["retry-after"]) <= 10 for h in refused), [h["retry-after"] for h in refused]
    # AND another address is not held up by it
    other = {**flood, "X-Forwarded-For": "203.0.113.8"}
    assert _raw_get(product.url, "/session/start", other)[0] == 303


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
        # AND another signed-in user who has the URL gets nothing either (issue #25 finding 8)
        other = browser.new_context()
        try:
            carol = other.new_page()
            carol.set_default_timeout(TIMEOUT)
            _sign_up(carol, product.url, "carol")
            carols = f"labelkit_session={_cookie(other, 'labelkit_session')['value']}"
            status, _, body = _get(media_url, cookie=carols)
            assert status == 404, body[:200]
        finally:
            other.close()
        # AND after bob signs out, the same cookie gets nothing
        sign_out_in_browser(page)
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
