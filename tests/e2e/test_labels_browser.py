"""Correcting labels in a real browser (issue 24, items 1, 2 and 4), at a desktop's
1400 x 1000 and a phone's 390 px: a rejected label's box leaves the photo (after a reload
too) and its roll-up parents go with it, saying so; a catalogue label typed in lower case
is the catalogue's label, found by its aliases; the image page gives its id to copy.

The photos' model labels are written beforehand as the local model gives them for
scikit-image's cat (Cat with its box, and the roll-ups Feline, Pet, Mammal, Animal), and the
dashboard is served without a listener, so the test is about the page, not the model.
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

import pytest
from argon2 import PasswordHasher
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from skimage import data as skdata

from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult
from labelkit.services import build_services
from labelkit.settings import Settings
from tests.dashboard.conftest import PASSWORD, upload
from tests.e2e.conftest import ROOT, screenshot
from tests.helpers import BROWSER_TIMEOUT_MS, free_port, sign_in_in_browser, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = {"desktop": (1400, 1000), "phone": (390, 844)}
INLINE_PHOTO = '[data-testid="stImage"] img[src^="data:image/jpeg;base64,"]'


@dataclass
class Site:
    url: str
    ids: dict[str, dict[str, str]]  # user -> photo name -> image id


def _jpeg(array: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, format="JPEG", quality=90)  # type: ignore[arg-type]
    return buf.getvalue()


CAT = [
    Label(
        name="Cat",
        confidence=99.3,
        parents=["Feline", "Pet", "Mammal", "Animal"],
        aliases=["Kitten", "Kitty"],
        instances=[Instance(box=BoundingBox(left=0.15, top=0.05, width=0.7, height=0.9), confidence=88.0)],
    ),
    Label(name="Feline", confidence=99.3, parents=["Mammal", "Animal"]),
    Label(name="Pet", confidence=99.3, parents=["Animal"]),
    Label(name="Mammal", confidence=99.3, parents=["Animal"]),
    Label(name="Animal", confidence=99.3),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One user per width, each with the cat photo and a photo of a rocket on its pad."""
    work = tmp_path_factory.mktemp("labels-browser")
    data = work / "data"
    services = build_services(Settings(data_dir=data, labeler="fake", database_url=""))
    auth = LocalAuth(services.engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    ids: dict[str, dict[str, str]] = {}
    auth.sign_up("admin", PASSWORD)  # the first account is the admin, who sees everyone's photos
    for width in WIDTHS:
        user = auth.sign_up(width, PASSWORD)
        ids[width] = {
            "cat.jpg": upload(services, user, "cat.jpg", _jpeg(skdata.chelsea())),
            "pad.jpg": upload(services, user, "pad.jpg", _jpeg(skdata.rocket())),
        }
        with transaction(services.engine) as s:
            for name, labels in (("cat.jpg", CAT), ("pad.jpg", [Label(name="Sky", confidence=80.0)])):
                image_id = ids[width][name]
                worker_q.save_model_labels(
                    session=s, image_id=image_id, result=LabelResult(labels=labels, model_version="local-1")
                )
                worker_q.mark_labelled(session=s, image_id=image_id, model_version="local-1", properties=None)
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


@pytest.fixture(params=list(WIDTHS))
def tab(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[str, Page]]:
    width, height = WIDTHS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(BROWSER_TIMEOUT_MS)
    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    yield request.param, page
    context.close()


def _signed_in(page: Page, site: Site, username: str) -> None:
    page.goto(site.url)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    sign_in_in_browser(page, username, PASSWORD)


def _photo_src(page: Page) -> str:
    """The image page's photo, once drawn (its inline data, which changes with the boxes)."""
    photo = page.locator(INLINE_PHOTO).first
    expect(photo).to_be_visible()
    return str(photo.get_attribute("src"))


def test_a_rejected_label_takes_its_box_and_its_roll_ups_off_the_photo(
    site: Site, browser: Browser, tab: tuple[str, Page]
) -> None:
    user, page = tab
    _signed_in(page, site, user)
    cat = site.ids[user]["cat.jpg"]
    # GIVEN the cat photo, its Cat box drawn
    page.goto(f"{site.url}/image?image={cat}")
    expect(page.get_by_role("heading", name="cat.jpg")).to_be_visible()
    boxes = page.get_by_text("Show boxes")
    expect(boxes).to_be_visible()
    with_box = _photo_src(page)
    # (the box's own number is named apart from the label's confidence)
    expect(page.get_by_text(re.compile(r"1 box \(box confidence 88%\)"))).to_be_visible()
    # WHEN the person rejects Cat
    page.locator(".st-key-reject--Cat").get_by_role("button").click()
    # THEN the roll-ups only Cat brought went with it, each saying so
    expect(page.get_by_text("Rejected with Cat")).to_have_count(4)
    expect(boxes).to_have_count(0)  # no box left to show
    # AND after a reload the photo is drawn without the box
    page.reload()
    expect(page.get_by_role("heading", name="cat.jpg")).to_be_visible()
    expect(page.get_by_text("Rejected with Cat")).to_have_count(4)
    expect(page.get_by_text("Show boxes")).to_have_count(0)
    assert _photo_src(page) != with_box
    screenshot(page, f"labels-rejected-{user}")
    # AND "feline" no longer finds the photo
    page.goto(f"{site.url}/?label=feline")
    expect(page.get_by_text(re.compile("No photos match"))).to_be_visible()


def test_a_label_typed_in_lower_case_is_the_catalogues_and_found_by_its_aliases(
    site: Site, tab: tuple[str, Page]
) -> None:
    user, page = tab
    _signed_in(page, site, user)
    pad = site.ids[user]["pad.jpg"]
    page.goto(f"{site.url}/image?image={pad}")
    expect(page.get_by_role("heading", name="pad.jpg")).to_be_visible()
    # WHEN the person types "beach" and adds it
    field = page.get_by_placeholder("e.g. Sofa")
    field.fill("beach")
    field.press("Enter")
    page.locator(".st-key-add_label").get_by_role("button").click()
    # THEN the photo carries the catalogue's Beach, added by a person
    expect(page.get_by_text(re.compile(r"^Beach · added by a person$"))).to_be_visible()
    # AND the gallery finds it by the label, in any case, and by its aliases
    for words in ("beach", "Seaside", "coast"):
        page.goto(f"{site.url}/?label={words}")
        expect(page.get_by_text("1 image match", exact=True)).to_be_visible()
        expect(page.locator('[class*="st-key-gallery_card_"]')).to_have_count(1)
    # AND the image page gives its id, and the search for photos like it, to copy
    page.goto(f"{site.url}/image?image={pad}")
    page.get_by_text("Image id").click()
    expect(page.get_by_text(f"similar:{pad}")).to_be_visible()
