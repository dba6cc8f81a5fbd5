"""The image page's "Text in the photo", and the gallery's blur of photos flagged Explicit
(issue 26, items 5 and 6): the lines read are listed with how sure the model is; a flagged
photo's card is blurred until its Show button is clicked, unless the administrator's setting
(``LABELKIT_BLUR_EXPLICIT=false``) turns the blur off."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Label, LabelResult, ModerationLabel, TextDetection
from labelkit.services import Services
from labelkit.settings import get_settings
from tests.dashboard.conftest import BLUE, GREEN, RED, app, texts, upload

SIGN = [
    TextDetection(
        text="GET WELL SOON",
        type="LINE",
        id=0,
        confidence=97.4,
        box=BoundingBox(left=0.1, top=0.1, width=0.8, height=0.2),
    ),
    TextDetection(
        text="Love, Sam",
        type="LINE",
        id=1,
        confidence=88.2,
        box=BoundingBox(left=0.1, top=0.5, width=0.5, height=0.1),
    ),
    TextDetection(
        text="SOON",
        type="WORD",
        id=2,
        parent_id=0,
        confidence=97.0,
        box=BoundingBox(left=0.6, top=0.1, width=0.3, height=0.2),
    ),
]


def _labelled(services: Services, owner: Principal, name: str, data: bytes, result: LabelResult) -> str:
    image_id = upload(services, owner, name, data)
    with transaction(services.engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=result)
        worker_q.mark_labelled(
            session=s, image_id=image_id, model_version=result.model_version, properties=None
        )
    return image_id


def test_the_image_page_lists_the_text_read_in_the_photo(services: Services, alice: Principal) -> None:
    # GIVEN a card whose text the labeller read, and a photo labelled before the text model existed
    card = _labelled(
        services,
        alice,
        "card.jpg",
        RED,
        LabelResult(
            labels=[Label(name="Text", confidence=97.4)], model_version="effnet+ocr+mod-1", text=SIGN
        ),
    )
    old = _labelled(
        services,
        alice,
        "old.jpg",
        GREEN,
        LabelResult(labels=[Label(name="Cat", confidence=90.0)], model_version="effnet-1"),
    )
    # WHEN the card's page is opened
    at = app(alice, "app_pages/image.py", image=card)
    # THEN "Text in the photo" lists its lines, top to bottom, each with the model's confidence
    shown = texts(at)
    assert "Text in the photo" in shown
    assert "2 lines read" in shown
    assert shown.index("GET WELL SOON · 97%") < shown.index("Love, Sam · 88%")
    assert at.toggle(key="show_text_boxes").value is False
    # AND the lines can be outlined on the photo
    at.toggle(key="show_text_boxes").set_value(True).run()
    assert not at.exception and at.toggle(key="show_text_boxes").value is True
    # WHEN the other photo's page is opened THEN it says how to get its text read
    other = texts(app(alice, "app_pages/image.py", image=old))
    assert "labelled without the text model" in other and "GET WELL SOON" not in other


def _gallery_reveal_buttons(at: AppTest) -> list[str]:
    return [b.key for b in at.button if (b.key or "").startswith("gallery_reveal_")]


def _flagged_and_plain(services: Services, alice: Principal) -> tuple[str, str]:
    flagged = _labelled(
        services,
        alice,
        "flagged.jpg",
        RED,
        LabelResult(
            labels=[Label(name="Person", confidence=90.0)],
            model_version="m1",
            moderation=[ModerationLabel(name="Explicit", confidence=93.0)],
        ),
    )
    plain = _labelled(
        services,
        alice,
        "plain.jpg",
        BLUE,
        LabelResult(labels=[Label(name="Sky", confidence=90.0)], model_version="m1"),
    )
    return flagged, plain


def test_a_flagged_photo_is_blurred_in_the_gallery_until_shown(services: Services, alice: Principal) -> None:
    # GIVEN a photo flagged Explicit and a plain one
    flagged, _ = _flagged_and_plain(services, alice)
    # WHEN the gallery is shown
    at = app(alice, "app_pages/gallery.py")
    # THEN only the flagged photo is blurred, with a Show button on its card
    assert _gallery_reveal_buttons(at) == [f"gallery_reveal_{flagged}"]
    # WHEN Show is clicked THEN it is shown as it is (for the rest of the session)
    at.button(key=f"gallery_reveal_{flagged}").click().run()
    assert _gallery_reveal_buttons(at) == []
    at.run()
    assert _gallery_reveal_buttons(at) == []


def test_the_administrators_setting_turns_the_blur_off(
    services: Services, alice: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a flagged photo, and the blur turned off for the site
    _flagged_and_plain(services, alice)
    monkeypatch.setenv("LABELKIT_BLUR_EXPLICIT", "false")
    get_settings.cache_clear()
    st.cache_resource.clear()
    # WHEN the gallery is shown THEN no card is blurred
    at = app(alice, "app_pages/gallery.py")
    assert "flagged.jpg" in texts(at)
    assert _gallery_reveal_buttons(at) == []
