"""Near-duplicates in a real browser, on the product as ``make run`` starts it (real listener,
real local model): upload a photo and a resized, recompressed copy of it; the upload page says
the copy looks like the photo you already have (and keeps it); the Duplicates page shows them as
one group with the original as the suggested keeper; "keep the marked photo, delete the rest" asks
in a dialog, then deletes the copy. And, at 1400x1000 and at 390 px wide: "Keep this one" on the
copy makes it the keeper, and deleting the rest then deletes the original and keeps the copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from skimage import data as skdata

from tests.e2e.conftest import Product, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, sign_up_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


def _nav(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


def test_duplicates_are_flagged_on_upload_grouped_and_deleted(
    product: Product, page: Page, tmp_path: Path
) -> None:
    original = Image.fromarray(skdata.chelsea())
    photo, copy, other = tmp_path / "chelsea.jpg", tmp_path / "chelsea-small.jpg", tmp_path / "coffee.jpg"
    original.save(photo, format="JPEG", quality=92)
    original.resize((original.width // 2, original.height // 2)).save(copy, format="JPEG", quality=50)
    Image.fromarray(skdata.coffee()).save(other, format="JPEG", quality=90)

    page.goto(product.url)
    sign_up_in_browser(page, "dora", "correct horse battery")

    # GIVEN a photo, then a half-size recompressed copy of it and a different photo
    _nav(page, "Upload")
    page.locator("input[type=file]").set_input_files([str(photo)])
    expect(page.get_by_text(re.compile(r"Accepted \(1\)"))).to_be_visible()
    page.locator("input[type=file]").set_input_files([str(copy), str(other)])
    # THEN the copy is accepted and said to look like the photo already there
    expect(page.get_by_text(re.compile(r"Accepted \(2\)"))).to_be_visible()
    expect(page.get_by_text("Looks like chelsea.jpg you already have")).to_be_visible()
    expect(page.get_by_text("Looks like")).to_have_count(1)  # coffee looks like nothing
    screenshot(page, "09-upload-lookalike")

    # AND the Duplicates page groups them, the original (larger) marked as the keeper
    _nav(page, "Duplicates")
    group = page.locator(".st-key-dup_group_0")
    expect(group).to_contain_text("Group 1 · 2 photos")
    expect(group).to_contain_text("chelsea-small.jpg")
    expect(group.locator(".st-key-dup_tile_0_0")).to_contain_text("Keep · suggested")
    expect(page.get_by_text("coffee.jpg")).to_have_count(0)
    screenshot(page, "10-duplicates")

    # WHEN the rest of the group is deleted, after the dialog's confirmation
    page.locator(".st-key-dup_delete_0").get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("This cannot be undone")
    dialog.locator(".st-key-dup_delete_confirm").get_by_role("button").click()
    # THEN the copy is gone and no group is left
    expect(page.get_by_text("Deleted 1 photo.")).to_be_visible()
    expect(page.get_by_text("No duplicates found.")).to_be_visible()
    _nav(page, "Gallery")
    expect(page.get_by_text("chelsea.jpg", exact=True)).to_be_visible()
    expect(page.get_by_text("chelsea-small.jpg")).to_have_count(0)


@pytest.mark.parametrize(
    ("width", "height", "who"), [(1400, 1000, "erin"), (390, 844, "fred")], ids=["1400", "390"]
)
def test_another_keeper_is_picked_and_the_rest_deleted(
    product: Product, browser: Browser, tmp_path: Path, width: int, height: int, who: str
) -> None:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    original = Image.fromarray(skdata.astronaut())
    photo, copy = tmp_path / "astronaut.jpg", tmp_path / "astronaut-small.jpg"
    original.save(photo, format="JPEG", quality=92)
    original.resize((original.width // 2, original.height // 2)).save(copy, format="JPEG", quality=50)
    page.goto(product.url)
    sign_up_in_browser(page, who, "correct horse battery")

    # GIVEN a photo and a half-size copy of it, grouped with the original suggested
    page.goto(f"{product.url}/upload")
    page.locator("input[type=file]").set_input_files([str(photo), str(copy)])
    expect(page.get_by_text(re.compile(r"Accepted \(2\)"))).to_be_visible()
    page.goto(f"{product.url}/duplicates")
    suggested, other = page.locator(".st-key-dup_tile_0_0"), page.locator(".st-key-dup_tile_0_1")
    expect(suggested).to_contain_text("astronaut.jpg")
    expect(suggested).to_contain_text("Keep · suggested")
    expect(other).to_contain_text("astronaut-small.jpg")

    # WHEN "Keep this one" is pressed on the copy (on a phone it must be on screen to be pressed)
    button = other.locator(".st-key-dup_keep_0_1").get_by_role("button", name="Keep this one")
    button.scroll_into_view_if_needed()
    expect(button).to_be_in_viewport()
    button.click()

    # THEN the copy is the keeper (her choice); the original, still named the suggested keeper,
    # offers "Keep this one" to go back
    expect(other).to_contain_text("Keep · your choice")
    expect(suggested).to_contain_text("The suggested keeper")
    expect(suggested.get_by_role("button", name="Keep this one")).to_be_visible()
    box = other.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width  # no sideways scroll
    screenshot(page, f"duplicates-pick-keeper-{width}")

    # WHEN the rest of the group is deleted, after the dialog's confirmation
    page.locator(".st-key-dup_delete_0").get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("the rest of group 1 (1 photo)")
    confirm = dialog.locator(".st-key-dup_delete_confirm").get_by_role("button")
    expect(confirm).to_be_in_viewport()
    confirm.click()

    # THEN the original is gone and the copy she picked stays
    expect(page.get_by_text("Deleted 1 photo.")).to_be_visible()
    expect(page.get_by_text("No duplicates found.")).to_be_visible()
    page.goto(product.url)
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
    expect(page.get_by_text("astronaut-small.jpg", exact=True)).to_be_visible()
    expect(page.get_by_text("astronaut.jpg", exact=True)).to_have_count(0)
    page.context.close()
