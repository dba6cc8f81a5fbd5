"""HTML in a file name and in a label name, in real Chromium: shown as text, never run.

The whole product (dashboard + listener, real local model) as ``make run`` starts it; the
file is uploaded through the page and the label typed into the image page's form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from skimage import data as skdata

from tests.e2e.conftest import Product, charts_drawn
from tests.helpers import sign_up_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

FILE_NAME = "<img src=x onerror=alert(1)>.jpg"
LABEL = "<script>alert(1)</script>"


def _no_live_markup(page: Page) -> None:
    """No element built from the user's text, in the page or any of its frames."""
    for frame in page.frames:
        assert frame.locator("img[onerror]").count() == 0, frame.url
        scripts = frame.locator("script").all()
        assert not [s for s in scripts if "alert(1)" in (s.text_content() or "")], frame.url


def test_html_in_names_is_text_in_the_browser(product: Product, page: Page, tmp_path: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    photo = tmp_path / FILE_NAME
    Image.fromarray(skdata.chelsea()).save(photo, format="JPEG", quality=90)
    # GIVEN a signed-in user
    page.goto(product.url)
    sign_up_in_browser(page, "mallory", "correct horse battery")
    # WHEN she uploads a photo whose name is an <img onerror> tag
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(photo))
    expect(page.get_by_text(re.compile("queued for labelling|labelling|labelled")).first).to_be_visible()
    # THEN the upload list, the gallery and the image page show the name as text
    expect(page.get_by_text(FILE_NAME).first).to_be_visible()
    _no_live_markup(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Gallery", exact=True).click()
    expect(page.get_by_text(FILE_NAME).first).to_be_visible()
    _no_live_markup(page)
    page.get_by_role("link", name="Open").first.click()
    expect(page.get_by_role("heading", name=FILE_NAME)).to_be_visible()
    # WHEN she adds a label that is a <script> tag
    page.get_by_label("Add a label", exact=True).fill(LABEL)
    page.get_by_role("button", name="Add").click()
    # THEN it is shown as text too, no element carries it, and no dialog ever opened
    expect(page.get_by_text(LABEL).first).to_be_visible()
    _no_live_markup(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Labels", exact=True).click()
    expect(page.get_by_role("heading", name="Labels", exact=True)).to_be_visible()
    charts_drawn(page)
    _no_live_markup(page)
    assert dialogs == []
