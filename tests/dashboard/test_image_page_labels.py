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


def test_a_catalogue_name_typed_in_lower_case_is_stored_the_catalogues_way(
    services: Services, alice: Principal
) -> None:
    """Issue 24 item 1: "beach" typed on a photo is the labeller's Beach (with its parent
    Outdoors), not a second label "beach" that search and the counts keep apart."""
    image_id = _cat_photo(services, alice)
    at = app(alice, "app_pages/image.py", image=image_id)
    # WHEN alice types "beach" and adds it
    at.text_input(key="new_label::0").input("beach")
    at.button(key="add_label").click().run()
    # THEN it is stored at once as Beach, with the catalogue's parents and aliases
    with transaction(services.engine) as s:
        row = s.scalars(select(LabelRow).where(LabelRow.source == LabelSource.HUMAN)).one()
        assert (row.name, row.review, row.parents) == ("Beach", ReviewState.CONFIRMED, ["Outdoors"])
        assert "Seaside" in row.aliases
    assert "Beach" in texts(at)


def _dog_photo_called_cat(services: Services, alice: Principal) -> str:
    """A dog photo the model also called Cat (its box on the dog), with Feline rolled up from
    Cat alone and Pet, Mammal, Animal from both."""
    from labelkit.domain import BoundingBox, Instance

    image_id = upload(services, alice, "dog.jpg", RED)
    box = [Instance(box=BoundingBox(left=0.1, top=0.1, width=0.5, height=0.5), confidence=60.0)]
    labels = [
        Label(name="Dog", confidence=90.0, parents=["Canine", "Pet", "Mammal", "Animal"], instances=box),
        Label(name="Cat", confidence=70.0, parents=["Feline", "Pet", "Mammal", "Animal"], instances=box),
        Label(name="Feline", confidence=70.0, parents=["Mammal", "Animal"]),
        Label(name="Pet", confidence=90.0, parents=["Animal"]),
    ]
    with transaction(services.engine) as s:
        worker_q.save_model_labels(
            session=s, image_id=image_id, result=LabelResult(labels=labels, model_version="m1")
        )
        worker_q.mark_labelled(session=s, image_id=image_id, model_version="m1", properties=None)
    return image_id


def test_rejecting_a_label_takes_its_boxes_and_its_roll_ups_off_the_page(
    services: Services, alice: Principal
) -> None:
    """Issue 24 item 2: the rejected Cat's box is no longer drawn (after a reload too), its
    roll-up Feline shows as rejected with it, and the photo keeps Dog's box and Pet."""
    image_id = _dog_photo_called_cat(services, alice)
    at = app(alice, "app_pages/image.py", image=image_id)
    both = at.image[0].proto.imgs[0].url
    at.toggle(key="show_boxes").set_value(False).run()
    plain = at.image[0].proto.imgs[0].url
    # (a box's own number is listed as a box confidence, not written beside the label's)
    assert "2 boxes" not in texts(at) and "1 box (box confidence 60%)" in texts(at)
    at.toggle(key="show_boxes").set_value(True).run()
    # WHEN alice rejects Cat
    at.button(key="reject::Cat").click().run()
    # THEN a reload draws one box, not two, and not none
    again = app(alice, "app_pages/image.py", image=image_id)
    one = again.image[0].proto.imgs[0].url
    assert one not in (both, plain)
    # AND Feline went with Cat, saying so; Pet stays (Dog is a pet too)
    shown = texts(again)
    assert "Rejected with Cat" in shown
    with transaction(services.engine) as s:
        human = {
            r.name: (r.review, r.implied_by)
            for r in s.scalars(select(LabelRow).where(LabelRow.source == LabelSource.HUMAN))
        }
    assert human == {"Cat": (ReviewState.REJECTED, None), "Feline": (ReviewState.REJECTED, "Cat")}
    # WHEN she rejects Dog too THEN no box is left to draw
    again.button(key="reject::Dog").click().run()
    last = app(alice, "app_pages/image.py", image=image_id)
    assert last.image[0].proto.imgs[0].url == plain
    assert not [t for t in last.toggle if t.key == "show_boxes"]
