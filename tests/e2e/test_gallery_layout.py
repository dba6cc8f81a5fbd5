"""The gallery's and the upload page's layout in a real browser (issue 24, items 6, 8 and 9):
headless Chromium at 1400x1000 and at 390 px wide, against the real Streamlit server as
``make run`` starts it (without the listener: the photos are labelled beforehand with the fake
labeller). Every check waits on a condition: the cards' photos drawn (data: URLs), a count, a
text, a URL.

* a search longer than 200 characters, pasted, keeps its first 200 and says so; the "Press Enter
  to apply" hint stays off the text;
* more cards above the fold at 1400x1000, their names on one line cut with an ellipsis;
* a new page of cards starts at its top; a phone sees photos first, the filters folded;
* no "created with a default value" warning in the terminal;
* the upload page says its size limit once.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from skimage import data as skdata

from labelkit.auth.local import LocalAuth
from labelkit.services import build_services
from labelkit.settings import Settings
from tests.dashboard.conftest import PASSWORD, drain, upload
from tests.e2e.conftest import ROOT, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHOTOS = 50  # two full pages of 24 and two photos on a third
CARDS = '[class*="st-key-gallery_card_"]'
WIDE, PHONE = {"width": 1400, "height": 1000}, {"width": 390, "height": 844}
# 272 characters; the first 200 end after a whole phrase, so they still find photos
LONG = "thing   " + '"red thing" ' * 22


@dataclass
class Site:
    url: str
    log: Path
    names: list[str]  # newest first, as the gallery shows them


def _name(i: int) -> str:
    # every third name too long for a small card
    return f"holiday-in-the-mountains-with-the-whole-family-{i:02d}.jpg" if i % 3 == 0 else f"p{i:02d}.jpg"


def _photo(i: int) -> bytes:
    """Photos that ship with scikit-image, turned and re-encoded so that no two are alike."""
    sources = (skdata.astronaut, skdata.chelsea, skdata.coffee, skdata.rocket)
    image = Image.fromarray(np.asarray(sources[i % len(sources)]())).convert("RGB").rotate(7 * i)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=60 + i % 35)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Alice (admin) with 50 labelled photos; the dashboard served on a free port."""
    work = tmp_path_factory.mktemp("gallery-layout")
    data = work / "data"
    services = build_services(Settings(data_dir=data, labeler="fake", database_url=""))
    auth = LocalAuth(services.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    alice = auth.sign_up("alice", PASSWORD)
    for i in range(PHOTOS):
        upload(services, alice, _name(i), _photo(i))
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
        names = [_name(i) for i in reversed(range(PHOTOS))]
        yield Site(url=f"http://127.0.0.1:{port}", log=log, names=names)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tab(browser: Browser, viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    return page


@pytest.fixture(params=[WIDE, PHONE], ids=["1400x1000", "390px"])
def tab(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = _tab(browser, request.param)
    yield page
    page.context.close()


@pytest.fixture
def wide(browser: Browser) -> Iterator[Page]:
    page = _tab(browser, WIDE)
    yield page
    page.context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    page = _tab(browser, PHONE)
    yield page
    page.context.close()


def _signed_in(page: Page, site: Site, path: str = "/") -> None:
    page.goto(site.url + path)
    page.get_by_label("Username").first.fill("alice")
    page.get_by_label("Password", exact=True).first.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _cards_drawn(page: Page, count: int) -> None:
    """Wait until ``count`` cards show their photos (data: URLs, decoded), so the layout holds."""
    expect(page.locator(f"{CARDS} img[src^='data:']")).to_have_count(count)
    page.wait_for_function(
        """([sel, n]) => {
            const imgs = [...document.querySelectorAll(sel + " img")];
            return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=[CARDS, count],
    )


def _first_card_in_view(page: Page) -> None:
    page.wait_for_function(
        """(sel) => {
            const card = document.querySelector(sel);
            if (!card) return false;
            const top = card.getBoundingClientRect().top;
            return top >= 0 && top < window.innerHeight;
        }""",
        arg=CARDS,
    )


def _first_card_name(page: Page) -> str:
    return page.locator(CARDS).first.locator("strong").first.inner_text()


# ---------------------------------------------------------------------------- item 8: layout


def test_more_cards_show_above_the_fold_with_names_on_one_line(site: Site, wide: Page) -> None:
    # GIVEN the gallery at 1400x1000, its first page drawn
    _signed_in(wide, site)
    expect(wide.get_by_text(f"{PHOTOS} images")).to_be_visible()
    _cards_drawn(wide, 24)
    # THEN two rows of cards show whole above the fold (before: one row of 6)
    whole = wide.evaluate(
        """(sel) => [...document.querySelectorAll(sel)]
            .filter(c => c.getBoundingClientRect().bottom <= window.innerHeight).length""",
        CARDS,
    )
    assert whole >= 14, whole
    # AND every name is on one line, a long one cut with an ellipsis (not wrapped mid-word)
    names = wide.evaluate(
        """(sel) => [...document.querySelectorAll(sel + " strong")].map(s => {
            const p = s.closest("p"), css = getComputedStyle(p);
            return {text: s.innerText, ems: p.getBoundingClientRect().height / parseFloat(css.fontSize),
                    ellipsis: css.textOverflow, cut: p.scrollWidth > p.clientWidth};
        })""",
        CARDS,
    )
    assert len(names) == 24
    assert all(n["ems"] < 2.2 and n["ellipsis"] == "ellipsis" for n in names), names  # one line
    long_ones = [n for n in names if n["text"].startswith("holiday")]
    assert long_ones and all(n["cut"] for n in long_ones), long_ones
    # AND the filters stand open, without an expander's header to fold them
    expect(wide.get_by_role("textbox", name="Search")).to_be_visible()
    expect(wide.locator(".st-key-gallery_filters summary")).to_be_hidden()
    screenshot(wide, "gallery-1400")


def test_a_phone_sees_photos_first_with_the_filters_folded(site: Site, phone: Page) -> None:
    # GIVEN the gallery 390 px wide
    _signed_in(phone, site)
    expect(phone.get_by_text(f"{PHOTOS} images")).to_be_visible()
    _cards_drawn(phone, 24)
    # THEN the filters are folded behind "Filters", and a photo shows on the first screen
    filters = phone.locator(".st-key-gallery_filters summary")
    expect(filters).to_contain_text("Filters")
    expect(phone.get_by_role("textbox", name="Search")).to_be_hidden()
    _first_card_in_view(phone)
    screenshot(phone, "gallery-390")
    # WHEN "Filters" is tapped THEN they open
    filters.click()
    expect(phone.get_by_role("textbox", name="Search")).to_be_visible()
    expect(phone.get_by_role("combobox", name=re.compile("Status"))).to_be_visible()


def test_the_next_page_starts_at_its_top(site: Site, tab: Page) -> None:
    # GIVEN the first page, scrolled down to its page buttons
    _signed_in(tab, site)
    expect(tab.get_by_text(f"{PHOTOS} images")).to_be_visible()
    _cards_drawn(tab, 24)
    assert _first_card_name(tab) == site.names[0]
    following = tab.get_by_role("button", name="Next page")
    following.scroll_into_view_if_needed()
    top = tab.locator(CARDS).first.bounding_box()
    assert top is not None and top["y"] < 0, top  # the first card is above the screen
    # WHEN "Next page" is clicked
    following.click()
    expect(tab).to_have_url(re.compile(r"page=2"))
    expect(tab.locator(CARDS).first.locator("strong")).to_have_text(site.names[24])
    _cards_drawn(tab, 24)
    # THEN the new page's first card is on the screen, not the bottom of the new page
    _first_card_in_view(tab)


def test_the_terminal_gets_no_widget_default_warning(site: Site, wide: Page) -> None:
    # GIVEN a gallery opened from a URL with dates and a page, WHEN a filter changes
    _signed_in(wide, site, "/?from=2020-01-01&to=2099-12-31&page=2")
    expect(wide.get_by_text(f"{PHOTOS} images match")).to_be_visible()
    expect(wide.locator(CARDS).first.locator("strong")).to_have_text(site.names[24])
    status = wide.get_by_role("combobox", name=re.compile("Status"))
    status.click()
    wide.get_by_role("option", name="Labelled").click()
    expect(wide).to_have_url(re.compile(r"status=labelled"))
    expect(wide.locator(CARDS).first.locator("strong")).to_have_text(site.names[0])  # page 1
    # THEN Streamlit logged no warning (with its stack trace) about a widget given a default
    # whose value was also set through the Session State API
    assert "was created with a default value" not in site.log.read_text(errors="replace")


# ---------------------------------------------------------------------------- item 6: search


def test_a_long_pasted_search_keeps_its_first_200_characters(site: Site, tab: Page) -> None:
    # GIVEN the gallery (on a phone, its filters opened)
    _signed_in(tab, site)
    expect(tab.get_by_text(f"{PHOTOS} images")).to_be_visible()
    _cards_drawn(tab, 24)
    box = tab.get_by_role("textbox", name="Search")
    if tab.viewport_size == PHONE:
        expect(box).to_be_hidden()  # folded
        tab.locator(".st-key-gallery_filters summary").click()
    expect(box).to_be_visible()
    # WHEN 272 characters are pasted into the search box
    tab.evaluate("text => navigator.clipboard.writeText(text)", LONG)
    box.click()
    tab.keyboard.press("Control+V")
    # THEN they are all there while typing, and the "Press Enter to apply" hint is off the text
    expect(box).to_have_value(LONG)
    hint = tab.locator('.st-key-flt_label [data-testid="InputInstructions"]')
    expect(hint).to_contain_text("Press Enter to apply")
    hint_box, text_box = hint.bounding_box(), box.bounding_box()
    assert hint_box is not None and text_box is not None
    apart = (
        hint_box["y"] >= text_box["y"] + text_box["height"]
        or hint_box["y"] + hint_box["height"] <= text_box["y"]
        or hint_box["x"] >= text_box["x"] + text_box["width"]
        or hint_box["x"] + hint_box["width"] <= text_box["x"]
    )
    assert apart, (hint_box, text_box)
    # WHEN Enter is pressed THEN the first 200 are kept and searched, and the page says so
    tab.keyboard.press("Enter")
    expect(tab.get_by_text("Search is limited to 200 characters")).to_be_visible()
    expect(box).to_have_value(LONG[:200])
    expect(tab.get_by_text(re.compile(r"^\d+ images? match$"))).to_be_visible()
    expect(tab).to_have_url(re.compile(r"label=thing"))


# ---------------------------------------------------------------------------- item 9: upload


def test_the_upload_page_says_its_size_limit_once(site: Site, wide: Page) -> None:
    _signed_in(wide, site, "/upload")
    expect(wide.get_by_role("heading", name="Upload photos")).to_be_visible()
    expect(wide.get_by_text(re.compile(r"20 MB per photo"))).to_be_visible()
    expect(wide.get_by_test_id("stFileUploaderDropzone")).to_be_visible()  # the widget is drawn
    # the widget's own limit, in decimal megabytes ("21MB per file"), is not shown beside it
    expect(wide.get_by_text(re.compile(r"21\s*MB"))).to_be_hidden()
    expect(wide.get_by_test_id("stFileUploaderDropzoneInstructions")).to_be_hidden()
