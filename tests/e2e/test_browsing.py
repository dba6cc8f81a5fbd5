"""Browsing that keeps your place, in a real browser (headless Chromium, the real Streamlit
server as ``make run`` starts it, without the listener).

Two users' photos are labelled beforehand with the fake labeller (red photos are "Red Thing",
green ones "Green Thing", all of them "Thing"), so the tests are about browsing: the gallery's
filters and page live in the URL (reload and back keep them), a click on a photo opens it,
previous / next walk the filter in the gallery's order, a signed-out deep link lands on its
target after sign-in, an admin sees and filters by owner while a user sees neither, and a
narrow screen keeps the gallery newest first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import Browser, Locator, Page, expect

from labelkit.auth.local import LocalAuth
from labelkit.services import build_services
from labelkit.settings import Settings
from tests.dashboard.conftest import PASSWORD, drain, jpeg, upload
from tests.e2e.conftest import ROOT, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALICE_PHOTOS = 28  # more than a gallery page (24): a page 2 exists
CARDS = '[class*="st-key-gallery_card_"]'


@dataclass
class Site:
    url: str
    ids: dict[str, str]  # photo name -> image id


def _name(i: int) -> str:
    return f"a{i:02d}.jpg"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Alice (admin) with 28 photos, red and green by turns (a00 red, a01 green, ...), and Bob
    with two; labelled, then the dashboard served on a free port."""
    work = tmp_path_factory.mktemp("browsing")
    data = work / "data"
    services = build_services(Settings(data_dir=data, labeler="fake", database_url=""))
    auth = LocalAuth(services.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    alice, bob = auth.sign_up("alice", PASSWORD), auth.sign_up("bob", PASSWORD)
    ids = {}
    for i in range(ALICE_PHOTOS):
        colour = (220 - i, 10, 10) if i % 2 == 0 else (10, 200 - i, 10)
        ids[_name(i)] = upload(services, alice, _name(i), jpeg(colour))
    for i in range(2):
        ids[f"b{i}.jpg"] = upload(services, bob, f"b{i}.jpg", jpeg((10, 10, 230 - i)))
    drain(services)
    services.engine.dispose()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    env.update(
        LABELKIT_DATA_DIR=str(data),
        LABELKIT_LABELER="fake",
        LABELKIT_MODEL_DIR=str(ROOT / "data" / "models"),
        PYTHONPATH=str(ROOT),
    )
    log = work / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labelkit.run", "--port", str(port), "--no-listener"],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        yield Site(url=f"http://127.0.0.1:{port}", ids=ids)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tab(browser: Browser, width: int = 1400, height: int = 1000) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    return page


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    page = _tab(browser)
    yield page
    page.context.close()


def _sign_in(page: Page, username: str) -> None:
    """Fill the sign-in form of the page already showing it."""
    page.get_by_label("Username").first.fill(username)
    page.get_by_label("Password", exact=True).first.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _signed_in(page: Page, site: Site, username: str) -> None:
    page.goto(site.url)
    _sign_in(page, username)
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()


def _card_names(page: Page) -> list[str]:
    return [c.locator("strong").first.inner_text() for c in page.locator(CARDS).all()]


def _click_centre(page: Page, element: Locator) -> None:
    """Click where the element is on screen, as a person would (whatever lies on top gets it)."""
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


_TOPS_JS = """([selector, n]) => {
    const cards = Array.from(document.querySelectorAll(selector)).slice(0, n);
    const loaded = cards.every(c => Array.from(c.querySelectorAll("img")).every(i => i.complete));
    return {loaded, tops: cards.map(c => c.getBoundingClientRect().top + window.scrollY)};
}"""


def _settled_tops(page: Page, selector: str, n: int) -> list[float]:
    """The first n cards' tops on the page, read in one go once the photos have loaded and the
    layout has stopped moving (a rerun or a late image shifts cards between two separate reads)."""
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    last: list[float] | None = None
    while True:
        snap = page.evaluate(_TOPS_JS, [selector, n])
        if snap["loaded"] and snap["tops"] == last:
            return list(last)
        last = snap["tops"] if snap["loaded"] else None
        assert time.monotonic() < deadline, f"the gallery's layout never settled: {snap}"
        page.wait_for_timeout(250)  # poll interval, not a wait for an outcome


def _newest_first(*indices: int) -> list[str]:
    return [_name(i) for i in indices]


def test_the_gallery_view_lives_in_the_url_and_a_click_on_a_photo_opens_it(site: Site, tab: Page) -> None:
    _signed_in(tab, site, "alice")
    # GIVEN a filtered gallery's second page, opened from its URL
    tab.goto(f"{site.url}/?label=Thing&owner=alice&page=2")
    expect(tab.get_by_text(f"{ALICE_PHOTOS} images match")).to_be_visible()
    expect(tab.locator(CARDS)).to_have_count(ALICE_PHOTOS - 24)
    # (a search ranks best match first, then newest: the last page holds the weakest matches)
    shown = _card_names(tab)
    assert len(set(shown)) == ALICE_PHOTOS - 24 and all(n.startswith("a") for n in shown), shown
    # THEN a reload shows the same view
    tab.reload()
    expect(tab.get_by_text(f"{ALICE_PHOTOS} images match")).to_be_visible()
    expect(tab.locator(CARDS)).to_have_count(ALICE_PHOTOS - 24)
    assert _card_names(tab) == shown

    # WHEN the photo itself (not the small "Open" link) is clicked, the image opens, with the
    # gallery's view in its URL
    _click_centre(tab, tab.locator(CARDS).first.locator("[data-testid=stImageContainer] img"))
    expect(tab.get_by_role("heading", name=shown[0])).to_be_visible()
    assert re.search(r"/image\?", tab.url) and "label=Thing" in tab.url and "page=2" in tab.url, tab.url
    screenshot(tab, "browse-01-image")

    # THEN the browser's back button returns to the same view
    tab.go_back()
    expect(tab.get_by_role("heading", name="Gallery")).to_be_visible()
    expect(tab.locator(CARDS)).to_have_count(ALICE_PHOTOS - 24)
    assert _card_names(tab) == shown
    assert "page=2" in tab.url, tab.url

    # and so does the image page's "Back to the gallery"
    tab.locator(CARDS).nth(1).click()
    expect(tab.get_by_role("heading", name=shown[1])).to_be_visible()
    tab.get_by_role("link", name="Back to the gallery").click()
    expect(tab.get_by_role("heading", name="Gallery")).to_be_visible()
    expect(tab.locator(CARDS)).to_have_count(ALICE_PHOTOS - 24)
    assert "page=2" in tab.url and "label=Thing" in tab.url, tab.url

    # WHEN a filter changes in the page, the URL follows it (and the page starts again at 1)
    status = tab.get_by_role("combobox", name=re.compile("Status"))
    status.click()
    tab.get_by_role("option", name="Labelled").click()
    expect(tab).to_have_url(re.compile(r"status=labelled"))
    assert "page=" not in tab.url, tab.url
    expect(tab.locator(CARDS)).to_have_count(24)
    tab.reload()
    expect(tab.get_by_role("combobox", name=re.compile("Status"))).to_have_value("Labelled")
    expect(tab.locator(CARDS)).to_have_count(24)
    assert "status=labelled" in tab.url, tab.url
    screenshot(tab, "browse-02-gallery")


def test_previous_and_next_walk_the_filter_in_gallery_order(site: Site, tab: Page) -> None:
    _signed_in(tab, site, "alice")
    tab.goto(f"{site.url}/?label=Red+Thing&owner=alice")
    expect(tab.get_by_text(f"{ALICE_PHOTOS // 2} images match")).to_be_visible()
    # the gallery's order for a search: best match first, then newest
    expect(tab.locator(CARDS)).to_have_count(ALICE_PHOTOS // 2)  # the search's cards, no others
    reds = _card_names(tab)[:3]
    assert all(int(name[1:3]) % 2 == 0 for name in reds), reds  # red photos only

    # (a click anywhere on a card opens it: the test above clicks the photo)
    tab.locator(CARDS).first.get_by_role("link", name="Open").click()
    expect(tab.get_by_role("heading", name=reds[0])).to_be_visible()
    expect(tab.locator(".st-key-image_previous").get_by_role("button")).to_be_disabled()  # the newest
    # Next skips the green photo between (a25): the filter holds
    tab.locator(".st-key-image_next").get_by_role("button").click()
    expect(tab.get_by_role("heading", name=reds[1])).to_be_visible()
    assert "label=Red+Thing" in tab.url or "label=Red%20Thing" in tab.url, tab.url
    # the keyboard: Right is next, Left is previous
    tab.get_by_role("heading", name=reds[1]).click()  # focus the page, not a widget
    tab.keyboard.press("ArrowRight")
    expect(tab.get_by_role("heading", name=reds[2])).to_be_visible()
    tab.get_by_role("heading", name=reds[2]).click()
    tab.keyboard.press("ArrowLeft")
    expect(tab.get_by_role("heading", name=reds[1])).to_be_visible()
    tab.locator(".st-key-image_previous").get_by_role("button").click()
    expect(tab.get_by_role("heading", name=reds[0])).to_be_visible()


def test_a_signed_out_deep_link_returns_to_its_target_after_sign_in(site: Site, tab: Page) -> None:
    target = site.ids[_name(5)]
    tab.goto(f"{site.url}/image?image={target}&label=Green+Thing")
    expect(tab.get_by_role("tab", name="Create account")).to_be_visible()
    expect(tab.get_by_text("Page not found")).to_have_count(0)
    _sign_in(tab, "alice")
    expect(tab.get_by_role("heading", name="a05.jpg")).to_be_visible()
    assert f"image={target}" in tab.url and "label=Green" in tab.url, tab.url
    # the session is a real one: the image page's "Back to the gallery" keeps the filter
    tab.get_by_role("link", name="Back to the gallery").click()
    expect(tab.get_by_text(f"{ALICE_PHOTOS // 2} images match")).to_be_visible()


def test_sign_in_never_redirects_outside_the_app(site: Site) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/nowhere?x=1"):
        query = urllib.parse.urlencode({"next": evil})
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(f"{site.url}/session/start?{query}", timeout=30)
        assert answer.value.code == 303
        assert answer.value.headers["location"] == "/", evil


def test_an_admin_sees_and_filters_owners_a_user_sees_only_their_own(site: Site, browser: Browser) -> None:
    admin = _tab(browser)
    try:
        _signed_in(admin, site, "alice")
        expect(admin.get_by_role("combobox", name=re.compile("Owner"))).to_be_visible()
        # cards name their owner
        first = admin.locator(CARDS).first
        expect(first).to_contain_text("bob")  # bob's photos are the newest
        owner = admin.get_by_role("combobox", name=re.compile("Owner"))
        owner.click()
        admin.get_by_role("option", name="bob").click()
        expect(admin.get_by_text("2 images match")).to_be_visible()
        expect(admin.locator(CARDS)).to_have_count(2)
        expect(admin).to_have_url(re.compile(r"owner=bob"))
        assert _card_names(admin) == ["b1.jpg", "b0.jpg"]
    finally:
        admin.context.close()

    user = _tab(browser)
    try:
        _signed_in(user, site, "bob")
        # GIVEN bob asks for alice's photos by URL: no owner filter, only his own photos
        user.goto(f"{site.url}/?owner=alice")
        expect(user.get_by_text("2 images")).to_be_visible()
        expect(user.locator(CARDS)).to_have_count(2)
        assert _card_names(user) == ["b1.jpg", "b0.jpg"]
        expect(user.get_by_role("combobox", name=re.compile("Owner"))).to_have_count(0)
        expect(user.get_by_text("alice")).to_have_count(0)
        # and alice's image is not found for him
        user.goto(f"{site.url}/image?image={site.ids[_name(0)]}")
        expect(user.get_by_role("heading", name="Image not found")).to_be_visible()
    finally:
        user.context.close()


def test_a_narrow_screen_keeps_the_gallery_newest_first(site: Site, browser: Browser) -> None:
    phone = _tab(browser, width=400, height=900)
    try:
        _signed_in(phone, site, "alice")
        phone.goto(f"{site.url}/?owner=alice")
        expect(phone.get_by_text(f"{ALICE_PHOTOS} images match")).to_be_visible()
        expect(phone.locator(CARDS)).to_have_count(24)
        cards = phone.locator(CARDS).all()[:8]
        tops = _settled_tops(phone, CARDS, 8)
        names = [c.locator("strong").first.inner_text() for c in cards]
        # one card a row, top to bottom, newest first
        assert tops == sorted(tops) and len(set(tops)) == len(tops), tops
        assert names == _newest_first(*range(ALICE_PHOTOS - 1, ALICE_PHOTOS - 9, -1)), names
        screenshot(phone, "browse-03-narrow")
    finally:
        phone.context.close()
