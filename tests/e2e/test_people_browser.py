"""People in a real browser, on the product as ``make run`` starts it (real listener, real local
models, real face descriptors): upload two photos of the astronaut and one of the cameraman; the
People page shows two people, the astronaut's with 2 photos; naming her puts "Person: Eileen" on
both photos, the gallery's search finds them by name, and the image page names her. At 390 px
wide the grid and a person's page fit the screen."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from skimage import data as skdata

from tests.e2e.conftest import Product, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, sign_up_in_browser, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


def _nav(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


def _people_found(page: Page, product: Product, text: str) -> None:
    """Open People until the photos are labelled and ``text`` shows (the page does not poll)."""
    deadline = time.monotonic() + BROWSER_TIMEOUT_MS / 1000
    while True:
        page.goto(f"{product.url}/people")
        try:
            expect(page.get_by_text(text)).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            assert time.monotonic() < deadline, f"the People page never showed {text!r}"


def test_faces_are_grouped_named_once_and_found_by_name(product: Product, page: Page, tmp_path: Path) -> None:
    astronaut = skdata.astronaut()
    files = [tmp_path / "eileen.jpg", tmp_path / "eileen-mirrored.jpg", tmp_path / "cameraman.jpg"]
    Image.fromarray(astronaut).save(files[0], format="JPEG", quality=90)
    Image.fromarray(astronaut[:, ::-1]).resize((700, 700)).save(files[1], format="JPEG", quality=85)
    Image.fromarray(np.stack([skdata.camera()] * 3, axis=-1)).save(files[2], format="JPEG", quality=90)

    page.goto(product.url)
    sign_up_in_browser(page, "gina", "correct horse battery")
    _nav(page, "Upload")
    page.locator("input[type=file]").set_input_files([str(f) for f in files])
    expect(page.get_by_text(re.compile(r"Accepted \(3\)"))).to_be_visible()

    # THEN, once labelled, People shows two people, the astronaut's with both her photos
    _people_found(page, product, "2 people (0 named) in your photos")
    expect(page.get_by_text("2 photos", exact=True)).to_be_visible()
    wait_idle(page)
    screenshot(page, "14-people")

    # WHEN she is opened and named
    page.locator('[class*="st-key-people_tile_"]').first.get_by_role("link").click()
    expect(page.get_by_text("2 faces on 2 photos")).to_be_visible()
    page.get_by_role("textbox", name="Name").fill("Eileen")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_text("Named Eileen")).to_be_visible()
    wait_idle(page)
    screenshot(page, "15-person")

    # THEN the gallery's search finds both photos by her name, and not the cameraman
    page.goto(f"{product.url}/?label=eileen")
    expect(page.get_by_text("eileen.jpg", exact=True)).to_be_visible()
    expect(page.get_by_text("eileen-mirrored.jpg", exact=True)).to_be_visible()
    expect(page.get_by_text("cameraman.jpg", exact=True)).to_have_count(0)

    # AND the image page names her on the photo
    card = page.locator('[class*="st-key-gallery_card_"]').filter(
        has=page.get_by_text("eileen.jpg", exact=True)
    )
    card.get_by_role("link").click()  # the card's link, stretched over the whole card
    expect(page.get_by_text(re.compile(r"In this photo$"))).to_be_visible()
    expect(page.get_by_role("link", name="Eileen", exact=True)).to_be_visible()
    expect(page.get_by_text("Person: Eileen").first).to_be_visible()

    # AND at phone width the grid and the page fit the screen (nothing wider than it)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{product.url}/people")
    expect(page.get_by_text("2 people (1 named) in your photos")).to_be_visible()
    wait_idle(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "16-people-phone")
