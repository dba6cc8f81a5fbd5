"""The upload page (issue 16, item 5): accepted files show where their labelling stands,
read again from the database while any is still being labelled (not "queued" forever), and
the outcomes are grouped: accepted, duplicates, rejected with the reasons."""

from __future__ import annotations

import re

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.db.queries import worker as worker_q
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, GREEN, RED, app, drain, texts


def _lines(at) -> list[str]:
    return [str(m.value).replace("\\", "") for m in at.main.markdown]


def test_outcomes_are_grouped_and_the_status_is_live(services: Services, alice: Principal) -> None:
    # GIVEN the upload page, and a batch with a rejected file between two photos and a copy
    at = app(alice, "app_pages/upload.py")
    at.file_uploader[0].set_value(
        [
            ("red.jpg", RED, "image/jpeg"),
            ("notes.jpg", b"just some text, honest", "image/jpeg"),
            ("green.jpg", GREEN, "image/jpeg"),
            ("red again.jpg", RED, "image/jpeg"),
            ("blue.jpg", BLUE, "image/jpeg"),
        ]
    )
    at.run()
    assert not at.exception
    # THEN each group has a heading and only its own files, in this order
    lines = _lines(at)
    heads = [i for i, line in enumerate(lines) if line.startswith("#### ")]
    assert [re.sub(r":\w+\[[^\]]*\] ", "", lines[i]) for i in heads] == [
        "#### Accepted (3)",
        "#### Duplicates (1)",
        "#### Rejected (1)",
    ]
    groups = [lines[a + 1 : b] for a, b in zip(heads, [*heads[1:], len(lines)], strict=True)]
    names = [sorted(re.findall(r"\*\*([^*]+)\*\*", "\n".join(g))) for g in groups]
    assert names == [["blue.jpg", "green.jpg", "red.jpg"], ["red again.jpg"], ["notes.jpg"]]
    assert "notes.jpg** — rejected: Not an image" in texts(at)
    # AND while they wait, the accepted ones say so and the list refreshes itself
    assert texts(at).count("— queued for labelling") == 3
    assert "this list refreshes every 3 s" in texts(at)
    # WHEN the worker labels them (one of them fails) and the page runs again
    drain(services)
    with transaction(services.engine) as s:
        page = image_q.list_images(session=s, viewer=alice.viewer)
        blue = next(i.id for i in page.items if i.original_name == "blue.jpg")
        worker_q.mark_failed(session=s, image_id=blue, reason="The model crashed.")
    at.run()
    # THEN each shows its real status and top label, and the timer has stopped
    shown = texts(at)
    assert "queued for labelling" not in shown
    assert re.search(r"red\.jpg\*\* — labelled: Red Thing · \d+%", shown)
    assert re.search(r"green\.jpg\*\* — labelled: Green Thing · \d+%", shown)
    assert "blue.jpg** — labelling failed: The model crashed." in shown
    assert "refreshes every" not in shown
    # AND every accepted file and the duplicate link to their image page
    assert sum(1 for pl in at.get("page_link") if pl.proto.label == "Open") == 4


def test_the_page_says_the_size_limit_once(services: Services, alice: Principal) -> None:
    # (issue 24, item 9) GIVEN the upload page with the default limit, 20 MiB
    at = app(alice, "app_pages/upload.py")
    assert not at.exception
    # THEN the caption says "20 MB per photo", and the widget's own "21MB per file" (its limit in
    # decimal megabytes) is hidden (tests/e2e/test_gallery_layout.py looks at it in a browser)
    captions = [c.value for c in at.caption]
    assert any("20 MB per photo" in c for c in captions), captions
    assert not any("up to" in c or "21" in c for c in captions), captions
    hidden = [h.proto.body for h in at.get("html") if "stFileUploaderDropzoneInstructions" in h.proto.body]
    assert hidden and "display: none" in hidden[0]
