"""The Review page in a real browser (issue 24, items 5 and 10): the keys act on the photo the
person sees, and pages say why they show nothing.

Headless Chromium drives the whole product (``product``: the dashboard, the listener and the
real local model). Alice (the first account, an admin) uploads five photos shipped with
scikit-image and scikit-learn; the model labels them, so the Review page holds five photos,
each with its boxes and several labels. Then:

- at 1400x1000, N (next photo) twice marks the third photo as current and scrolls it into
  view, its whole block (photo beside labels) inside the window; X rejects that very photo;
- at 390 px wide, "next photo" brings the current photo and its actions into view;
- Bob (no photos, not an admin) is told to upload some on Review, and that only admins can
  see the pipeline when he opens its URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect
from skimage import data as skdata
from sklearn.datasets import load_sample_image
from sqlalchemy import select

from labelkit.db.engine import transaction
from labelkit.db.models import Image as ImageRow
from labelkit.db.models import LabelRow, LabelSource, ReviewState
from labelkit.services import build_services
from labelkit.settings import Settings
from tests.dashboard.conftest import PASSWORD
from tests.e2e.conftest import Product, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, sign_up_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]

BLOCKS = '[class*="st-key-photo--"]'  # one bordered block per photo (key "photo::<id>")
CURRENT = "Current photo — the keys act here"
PHOTOS = {
    "chelsea.jpg": skdata.chelsea,
    "coffee.jpg": skdata.coffee,
    "astronaut.jpg": skdata.astronaut,
    "rocket.jpg": skdata.rocket,
    "china.jpg": lambda: load_sample_image("china.jpg"),
}
# Whether the named photo's block is marked current and in the window: wholly, or (a block
# taller than a phone's screen) from its top down to its "Reject all" button.
_IN_VIEW_JS = """([selector, name, badge, whole]) => {
    const block = [...document.querySelectorAll(selector)]
        .find(b => b.querySelector('strong')?.innerText.trim() === name);
    if (!block || !block.innerText.includes(badge)) return false;
    const r = block.getBoundingClientRect();
    const end = whole ? r : block.querySelector('[class*="st-key-reject_all--"]')?.getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && !!end && end.bottom <= window.innerHeight;
}"""


def _tab(browser: Browser, width: int, height: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    return page


def _sign_in(page: Page, product: Product, username: str) -> None:
    page.goto(product.url)
    page.get_by_label("Username").first.fill(username)
    page.get_by_label("Password", exact=True).first.fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()


@pytest.fixture(scope="module")
def alice(product: Product, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Alice signed up (the first account: an admin) with five photos labelled by the model."""
    folder = tmp_path_factory.mktemp("photos")
    files = []
    for name, load in PHOTOS.items():
        Image.fromarray(load()).save(folder / name, format="JPEG", quality=90)
        files.append(folder / name)
    page = _tab(browser, 1400, 1000)
    page.goto(product.url)
    sign_up_in_browser(page, "alice", PASSWORD)
    page.goto(f"{product.url}/upload")
    page.locator("input[type=file]").set_input_files([str(f) for f in files])
    for name in PHOTOS:
        expect(page.get_by_text(re.compile(rf"{re.escape(name)}.*labelled: \w"))).to_be_visible()
    page.context.close()
    yield


def _open_review(page: Page, product: Product) -> int:
    """Open Review; wait until its count and every photo of its first page (a data: URL) are
    shown; return how many photos wait for review."""
    page.goto(f"{product.url}/review")
    waiting = page.get_by_text(re.compile(r"^\d+ photos? with \d+ labels? waiting for review$"))
    expect(waiting).to_be_visible()
    photos = int(waiting.inner_text().split()[0])
    assert 3 <= photos <= 5, waiting.inner_text()  # a photo may have no label to review
    expect(page.locator(BLOCKS)).to_have_count(photos)
    expect(page.locator(f'{BLOCKS} [data-testid="stImage"] img[src^="data:"]')).to_have_count(photos)
    return photos


def _names(page: Page) -> list[str]:
    return [b.locator("strong").first.inner_text().strip() for b in page.locator(BLOCKS).all()]


def _block(page: Page, name: str) -> Locator:
    return page.locator(BLOCKS).filter(
        has=page.locator("strong", has_text=re.compile(rf"^{re.escape(name)}$"))
    )


def _current_in_view(page: Page, name: str, *, whole: bool = True) -> None:
    """Wait until ``name``'s block is the marked current one and lies in the window: wholly,
    or from its top to its "Reject all" button."""
    expect(_block(page, name)).to_contain_text(CURRENT)
    page.wait_for_function(_IN_VIEW_JS, arg=[BLOCKS, name, CURRENT, whole])


def _focus_page(page: Page) -> None:
    page.get_by_role("heading", name="Review").first.click()  # the keys go to the page, not a widget


def _human_reviews(product: Product) -> dict[str, set[ReviewState]]:
    """Each photo's human review states, read from the product's own database."""
    services = build_services(Settings(data_dir=product.data_dir, labeler="fake", database_url=""))
    try:
        with transaction(services.engine) as s:
            rows = s.execute(
                select(ImageRow.original_name, LabelRow.review)
                .join(LabelRow, LabelRow.image_id == ImageRow.id)
                .where(LabelRow.source == LabelSource.HUMAN)
            ).all()
    finally:
        services.engine.dispose()
    out: dict[str, set[ReviewState]] = {}
    for name, review in rows:
        out.setdefault(name, set()).add(ReviewState(review))
    return out


def test_the_keys_act_on_the_photo_in_view(product: Product, browser: Browser, alice: None) -> None:
    page = _tab(browser, 1400, 1000)
    _sign_in(page, product, "alice")
    # GIVEN the Review page with the model's labels of alice's photos, the first one current
    photos = _open_review(page, product)
    names = _names(page)
    _current_in_view(page, names[0])
    # WHEN N is pressed twice
    _focus_page(page)
    page.keyboard.press("n")
    _current_in_view(page, names[1])
    page.keyboard.press("n")
    # THEN the third photo is the marked current one and its whole block is in the window
    _current_in_view(page, names[2])
    expect(_block(page, names[1])).not_to_contain_text(CURRENT)
    box = _block(page, names[2]).bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 1000, box
    # (the photo beside its labels, not above them)
    photo = _block(page, names[2]).locator('[data-testid="stImage"] img').bounding_box()
    first_label = _block(page, names[2]).locator('[class*="st-key-reject--"]').first.bounding_box()
    assert photo and first_label and first_label["x"] >= photo["x"] + photo["width"], (photo, first_label)
    screenshot(page, "review-current-in-view")
    # WHEN X is pressed
    page.keyboard.press("x")
    # THEN the photo in view (and only it) is rejected and leaves the queue; the next is current
    expect(page.get_by_text(re.compile(rf"^{photos - 1} photos? with \d+ labels? waiting"))).to_be_visible()
    expect(_block(page, names[2])).to_have_count(0)
    assert _human_reviews(product) == {names[2]: {ReviewState.REJECTED}}
    if photos > 3:
        _current_in_view(page, names[3])
    page.context.close()


def test_a_narrow_screen_brings_the_current_photo_and_its_actions_into_view(
    product: Product, browser: Browser, alice: None
) -> None:
    page = _tab(browser, 390, 844)
    _sign_in(page, product, "alice")
    # GIVEN the Review page on a phone-sized screen (the blocks stack: photo above labels)
    _open_review(page, product)
    names = _names(page)
    # WHEN "next photo" is pressed
    _focus_page(page)
    page.keyboard.press("n")
    # THEN the second photo is current, and its block from its top (the photo) down to its
    # "Reject all" button is in view
    _current_in_view(page, names[1], whole=False)
    expect(_block(page, names[1]).locator('[class*="st-key-reject_all--"]')).to_be_in_viewport()
    screenshot(page, "review-narrow")
    page.context.close()


def test_a_user_without_photos_is_told_to_upload_and_the_pipeline_is_for_admins(
    product: Product, browser: Browser, alice: None
) -> None:
    # GIVEN bob, a second account (not an admin) with no photos
    page = _tab(browser, 1400, 1000)
    page.goto(product.url)
    sign_up_in_browser(page, "bob", PASSWORD)
    # WHEN he opens Review THEN it says he has no photos yet and links to Upload
    page.goto(f"{product.url}/review")
    expect(page.get_by_text("No photos yet — upload some")).to_be_visible()
    expect(page.get_by_test_id("stMain").get_by_role("link", name=re.compile("Upload"))).to_be_visible()
    # WHEN he opens the pipeline's URL THEN he is told it is for admins, not sent elsewhere
    page.goto(f"{product.url}/pipeline")
    expect(page.get_by_text("Only admins can see the pipeline")).to_be_visible()
    assert page.url.rstrip("/").endswith("/pipeline"), page.url
    expect(page.get_by_role("heading", name="Gallery")).to_have_count(0)
    page.context.close()
