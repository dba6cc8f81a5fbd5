"""One real-browser walk through the product, started as ``make run`` starts it.

Headless Chromium (Debian's) drives the real Streamlit server with the real
listener and the real local model: sign up, upload two photos and one
non-image, see the rejection and the live labelling status, wait for labels, open an
image, confirm a label, check that the Labels page counts the confirmation and accept a
photo's labels on the Review page with the keyboard; delete a photo through its confirmation
dialog; a reload keeps the session and signing out ends it. Screenshots of every
page are saved under test-artifacts/ (the README's pictures).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect
from skimage import data as skdata

from tests.e2e.conftest import Product, charts_drawn, screenshot
from tests.helpers import sign_out_in_browser, sign_up_in_browser, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow]


def _photos(tmp: Path) -> list[Path]:
    out = []
    for name, arr in (("chelsea.jpg", skdata.chelsea()), ("coffee.jpg", skdata.coffee())):
        path = tmp / name
        Image.fromarray(arr).save(path, format="JPEG", quality=90)
        out.append(path)
    fake = tmp / "notes.jpg"
    fake.write_text("these are my holiday notes, not a photo\n")
    out.append(fake)
    return out


def _nav(page: Page, name: str) -> None:
    """Follow a sidebar link, as a person does (a reload would start a new session)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()


def test_sign_up_upload_label_confirm_and_chart(product: Product, page: Page, tmp_path: Path) -> None:
    # Sign up: the first account becomes the administrator.
    page.goto(product.url)
    expect(page.get_by_text("Create account").first).to_be_visible()
    screenshot(page, "01-sign-in")
    sign_up_in_browser(page, "alice", "correct horse battery")
    expect(page.get_by_text("Administrator")).to_be_visible()
    # A reload keeps you signed in (an HttpOnly session cookie, set by the server at sign-in).
    session = [c for c in page.context.cookies() if c["name"] == "labelkit_session"]
    assert session and session[0]["httpOnly"], page.context.cookies()
    page.reload()
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()

    # Upload two real photos and one text file named .jpg.
    _nav(page, "Upload")
    expect(page.get_by_role("heading", name="Upload photos")).to_be_visible()
    page.locator("input[type=file]").set_input_files([str(p) for p in _photos(tmp_path)])
    expect(page.get_by_text("Last upload")).to_be_visible()
    rejection = page.get_by_text(re.compile(r"notes\.jpg.*rejected: Not an image"))
    expect(rejection).to_be_visible()
    expect(page.get_by_text(re.compile(r"Rejected \(1\)"))).to_be_visible()
    # Accepted files show where their labelling stands, live: queued, labelling, then labelled.
    expect(page.get_by_text(re.compile(r"chelsea\.jpg.*labelled: \w"))).to_be_visible()
    screenshot(page, "02-upload")

    # The listener labels both with the local model; the gallery refreshes by itself.
    _nav(page, "Gallery")
    labelled = page.get_by_test_id("stMetric").filter(has_text="Labelled")
    expect(labelled).to_contain_text("2")
    expect(page.get_by_text(re.compile(r"^Cat · \d+%$"))).to_be_visible()
    screenshot(page, "03-gallery")

    # Search: a parent label finds its children: "animal" finds the cat, not the coffee.
    search_box = page.get_by_role("textbox", name=re.compile("Search"))
    search_box.click()
    search_box.fill("animal")
    page.keyboard.press("Enter")
    expect(page.get_by_text("1 image")).to_be_visible()
    # (to_have_count waits out the cards of the previous run, which Streamlit shows faded
    # until the new ones replace them)
    expect(page.get_by_text("coffee.jpg")).to_have_count(0)
    expect(page.get_by_text("chelsea.jpg")).to_have_count(1)
    expect(page.get_by_text("chelsea.jpg")).to_be_visible()

    # Open the cat and confirm "Cat".
    page.get_by_role("link", name="Open").first.click()
    expect(page.get_by_role("heading", name="chelsea.jpg")).to_be_visible()
    # Streamlit tags each widget's container with its key (here "confirm::Cat").
    page.locator(".st-key-confirm--Cat").get_by_role("button").click()
    expect(page.get_by_text(re.compile(r"Confirmed by alice"))).to_be_visible()
    screenshot(page, "04-image")

    # The Labels page counts the confirmation (read back through its CSV download).
    _nav(page, "Labels")
    expect(page.get_by_role("heading", name="Images per label")).to_be_visible()
    charts_drawn(page)  # before the picture
    screenshot(page, "05-labels")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download label summary (CSV)").click()
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(Path(download.value.path()).read_text()))}
    assert rows["Cat"]["images"] == "1" and rows["Cat"]["confirmed"] == "1"
    assert float(rows["Cat"]["precision"]) == 1.0
    assert "Coffee Cup" in rows or "Coffee" in rows or "Espresso" in rows

    # Review works per photo: the keyboard's A accepts every label of the current photo.
    _nav(page, "Review")
    waiting = page.get_by_text(re.compile(r"^\d+ photos? with \d+ labels? waiting for review$"))
    expect(waiting).to_be_visible()
    photos = int(waiting.inner_text().split()[0])
    assert photos in (1, 2), waiting.inner_text()  # coffee, and the cat unless Cat was its only label
    expect(page.get_by_text("Current photo — the keys act here")).to_be_visible()
    screenshot(page, "06-review")
    page.get_by_role("heading", name="Review").click()  # focus the page, not a widget
    page.keyboard.press("a")
    if photos == 2:
        expect(page.get_by_text(re.compile(r"^1 photo with \d+ labels? waiting for review$"))).to_be_visible()
    else:
        expect(page.get_by_text(re.compile("Nothing to review"))).to_be_visible()
    _nav(page, "Pipeline")
    expect(page.get_by_text(re.compile("Dead", re.I)).first).to_be_visible()
    screenshot(page, "07-pipeline")

    # Deleting a photo asks first, in a dialog: Cancel keeps it, "Yes, delete" removes it.
    _nav(page, "Gallery")
    page.get_by_role("link", name="Open").first.click()
    title = page.get_by_role("heading", name=re.compile(r"^(chelsea|coffee)\.jpg$"))
    expect(title).to_be_visible()
    name = title.inner_text()
    page.locator(".st-key-delete").get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("This cannot be undone")
    screenshot(page, "08-delete")
    dialog.locator(".st-key-delete_cancel").get_by_role("button").click()
    expect(dialog).to_have_count(0)
    expect(title).to_be_visible()
    # Dismissed with its close button (×) it stays closed when the page next runs (here: a
    # box to draw). (Escape dismisses it too, but only once the dialog has the focus.)
    page.locator(".st-key-delete").get_by_role("button").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)
    # The dismissal reruns the page (on_dismiss forgets the question): let that run finish before
    # the next click, or the next click's rerun can supersede it on a busy machine.
    wait_idle(page)
    page.get_by_text("Draw a box for it").click()
    expect(page.get_by_text("Box left – right (% of the width)")).to_be_visible()
    expect(dialog).to_have_count(0)
    page.locator(".st-key-delete").get_by_role("button").click()
    dialog.locator(".st-key-delete_confirm").get_by_role("button").click()
    expect(page.get_by_text(f"Deleted {name}.")).to_be_visible()
    expect(page.get_by_role("heading", name="Gallery")).to_be_visible()

    # Signing out ends the session: a reload does not bring it back.
    sign_out_in_browser(page)
    page.reload()
    expect(page.get_by_role("tab", name="Create account")).to_be_visible()
    expect(page.get_by_text("Administrator")).to_have_count(0)
