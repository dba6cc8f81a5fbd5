"""The image page (issue 16, item 6): hand-typed labels are matched against the vocabulary
(case and spaces folded, "tabby cat" offered "Cat" or "Tabby Cat"), a hand-added label can
carry a box drawn with sliders and previewed live on the photo, and the image properties
say their scale."""

from __future__ import annotations

from sqlalchemy import select

from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import LabelRow, LabelSource, ReviewState
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Label, LabelResult
from labelkit.services import Services
from tests.dashboard.conftest import RED, app, drain, texts, upload


def _human(services: Services) -> list[tuple]:
    with transaction(services.engine) as s:
        rows = s.scalars(
            select(LabelRow)
            .where(LabelRow.source == LabelSource.HUMAN)
            .order_by(LabelRow.name, LabelRow.instance)
        )
        return [
            (r.name, r.instance, r.review, r.box_left, r.box_top, r.box_width, r.box_height) for r in rows
        ]


def _cat_photo(services: Services, alice: Principal) -> str:
    image_id = upload(services, alice, "chelsea.jpg", RED)
    with transaction(services.engine) as s:
        cat = Label(name="Cat", confidence=88.0, parents=["Animal"], aliases=["Tabby Cat", "Kitty"])
        worker_q.save_model_labels(
            session=s, image_id=image_id, result=LabelResult(labels=[cat], model_version="m1")
        )
        worker_q.mark_labelled(
            session=s,
            image_id=image_id,
            model_version="m1",
            properties={"brightness": 41.6, "sharpness": 73.2, "contrast": 18.9, "dominant_colors": []},
        )
    return image_id


def test_typed_labels_are_matched_against_the_vocabulary(services: Services, alice: Principal) -> None:
    image_id = _cat_photo(services, alice)
    at = app(alice, "app_pages/image.py", image=image_id)
    # WHEN alice types "tabby cat" (an alias of the model's Cat) and adds it
    at.text_input(key="new_label::0").input("  tabby   cat ")
    at.button(key="add_label").click().run()
    # THEN nothing is stored yet: she is offered "Cat" first, or her label as "Tabby Cat"
    assert _human(services) == []
    choices = [b.label for b in at.button if (b.key or "").startswith("label_choice::")]
    assert choices == ["Cat", "Keep “Tabby Cat”"]
    # WHEN she picks Cat THEN the model's Cat is confirmed (no second spelling of it)
    at.button(key="label_choice::0").click().run()
    assert _human(services) == [("Cat", 0, ReviewState.CONFIRMED, None, None, None, None)]
    # WHEN she types a known name in another case THEN it is stored spelled the known way
    at.text_input(key="new_label::1").input("ANIMAL")
    at.button(key="add_label").click().run()
    assert [h[0] for h in _human(services)] == ["Animal", "Cat"]
    # AND a new name nothing resembles is added as typed (spaces folded)
    at.text_input(key="new_label::2").input("  Sofa   bed ")
    at.button(key="add_label").click().run()
    assert [h[0] for h in _human(services)] == ["Animal", "Cat", "Sofa bed"]
    assert "Sofa bed" in texts(at)


def test_keeping_the_typed_spelling(services: Services, alice: Principal) -> None:
    image_id = _cat_photo(services, alice)
    at = app(alice, "app_pages/image.py", image=image_id)
    at.text_input(key="new_label::0").input("tabby cat")
    at.button(key="add_label").click().run()
    at.button(key="label_choice::1").click().run()
    assert [h[0] for h in _human(services)] == ["Tabby Cat"]


def test_a_hand_added_label_carries_a_box_previewed_live(services: Services, alice: Principal) -> None:
    image_id = upload(services, alice, "red.jpg", RED)
    drain(services)
    at = app(alice, "app_pages/image.py", image=image_id)
    plain = at.image[0].proto.imgs[0].url
    # WHEN alice types a label and switches on "draw a box"
    at.text_input(key="new_label::0").input("Tomato")
    at.toggle(key="new_box::0").set_value(True).run()
    # THEN the photo shows the draft box at once, and moves it with the sliders
    with_box = at.image[0].proto.imgs[0].url
    assert with_box != plain
    at.slider(key="new_box_x::0").set_value((10, 60))
    at.slider(key="new_box_y::0").set_value((20, 80)).run()
    moved = at.image[0].proto.imgs[0].url
    assert moved not in (plain, with_box)
    # WHEN she adds it THEN the human label has the box, stored beside the label
    at.button(key="add_label").click().run()
    rows = _human(services)
    assert [r[:3] for r in rows] == [
        ("Tomato", 0, ReviewState.CONFIRMED),
        ("Tomato", 1, ReviewState.CONFIRMED),
    ]
    assert rows[1][3:] == (0.1, 0.2, 0.5, 0.6)
    # AND the page counts and draws it like the model's boxes; the form starts empty again
    assert "1 box" in texts(at)
    assert not at.toggle(key="new_box::1").value


def test_image_properties_say_their_scale(services: Services, alice: Principal) -> None:
    image_id = _cat_photo(services, alice)
    at = app(alice, "app_pages/image.py", image=image_id)
    shown = {m.label: m.value for m in at.metric}
    assert shown == {
        "Brightness (0-100)": "42 / 100",
        "Sharpness (0-100)": "73 / 100",
        "Contrast (0-100)": "19 / 100",
    }
    assert all(m.help for m in at.metric)
    assert "0 is black, 100 is white" in at.metric[0].help
