"""The People page (AppTest over the real entry point, SQLite and MariaDB): the grid of people,
naming one (their photos carry ``Person: <name>``), taking out a face that is not them, merging
it back, hiding, removing; turning grouping off asks first and deletes the face data; another
user's person id behaves like a missing one; the image page names the people on the photo.

The faces are given directly (their descriptors made here: two close together, one far), so the
page is tested without the face model; ``tests/integration/test_people.py`` runs the real one.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from labelkit import people
from labelkit.auth import Principal
from labelkit.db.engine import transaction
from labelkit.db.models import FaceRow, LabelRow
from labelkit.db.queries import people as people_q
from labelkit.domain import BoundingBox, FaceVector, ImageFeatures
from labelkit.services import Services
from tests.dashboard.conftest import BLUE, GREEN, RED, app, drain, texts, upload

PAGE = "app_pages/people.py"
BOX = BoundingBox(left=0.3, top=0.2, width=0.3, height=0.4)


def _descriptor(seed: int, noise: int | None = None) -> bytes:
    """A unit vector per seed; with ``noise``, the same one moved by 0.05 (the same person)."""
    v = np.random.default_rng(seed).standard_normal(128)
    v /= np.linalg.norm(v)
    if noise is not None:
        jitter = np.random.default_rng(noise).standard_normal(128)
        v = v + 0.05 * jitter / np.linalg.norm(jitter)
    return v.astype("<f4").tobytes()


def _faces(services: Services, owner: Principal, image_id: str, descriptor: bytes) -> None:
    features = ImageFeatures(faces=(FaceVector(box=BOX, descriptor=descriptor),), face_model="test-model")
    with transaction(services.engine) as s:
        people.add_faces(s, image_id=image_id, owner_id=owner.user_id, features=features)


def _album(services: Services, alice: Principal) -> dict[str, str]:
    """Two photos of one person (red, green) and one of another (blue), alice's."""
    ids = {
        "red": upload(services, alice, "red.jpg", RED),
        "green": upload(services, alice, "green.jpg", GREEN),
        "blue": upload(services, alice, "blue.jpg", BLUE),
    }
    drain(services)
    _faces(services, alice, ids["red"], _descriptor(1))
    _faces(services, alice, ids["green"], _descriptor(1, noise=7))
    _faces(services, alice, ids["blue"], _descriptor(2))
    return ids


def _person_of(services: Services, image_id: str) -> str:
    with transaction(services.engine) as s:
        person = s.scalar(select(FaceRow.person_id).where(FaceRow.image_id == image_id))
    assert person is not None
    return person


def _named(services: Services) -> dict[str, set[str]]:
    with transaction(services.engine) as s:
        rows = s.scalars(select(LabelRow).where(LabelRow.model_version == people_q.PERSON_LABELS)).all()
        out: dict[str, set[str]] = {}
        for row in rows:
            out.setdefault(row.name, set()).add(row.image_id)
        return out


def test_people_grid_naming_split_merge_and_remove(services: Services, alice: Principal) -> None:
    ids = _album(services, alice)
    two = _person_of(services, ids["red"])
    assert _person_of(services, ids["green"]) == two != _person_of(services, ids["blue"])

    # The grid: two unnamed people, the one with more photos first
    at = app(alice, PAGE)
    assert not at.exception
    assert "2 people (0 named) in your photos" in texts(at)

    # One person's page: name them; both their photos carry the name
    at = app(alice, PAGE, person=two)
    assert "2 faces on 2 photos" in texts(at)
    at.text_input(key="people_name").input("Grandma")
    at.button[0].click()  # the form's "Save name"
    at.run()
    assert not at.exception
    assert _named(services) == {"Person: Grandma": {ids["red"], ids["green"]}}
    assert "Grandma" in texts(at)

    # "Not Grandma" on the green photo's face: it leaves her, and so does the name
    with transaction(services.engine) as s:
        green_face = s.scalar(select(FaceRow.id).where(FaceRow.image_id == ids["green"]))
    at.button(key=f"people_split_{green_face}").click().run()
    assert _named(services) == {"Person: Grandma": {ids["red"]}}
    alone = _person_of(services, ids["green"])
    assert alone != two

    # Merge it back: the name comes back on the green photo
    merge = at.selectbox(key="people_merge_with")
    merge.select_index(next(i for i, o in enumerate(merge.options) if "green.jpg" in o)).run()
    at.button(key="people_merge").click().run()
    assert _person_of(services, ids["green"]) == two
    assert _named(services) == {"Person: Grandma": {ids["red"], ids["green"]}}

    # Hide her: she leaves the grid for the hidden list
    at.button(key="people_hide").click().run()
    at = app(alice, PAGE)
    assert "1 person (0 named)" in texts(at)
    assert [e.label for e in at.expander if e.label.startswith("Hidden")] == ["Hidden people (1)"]

    # Remove her: asks first, then her faces and her name are gone, the photos stay
    at = app(alice, PAGE, person=two)
    at.button(key="people_remove").click().run()
    assert "forgets the person" in texts(at)
    at.button(key="people_remove_confirm").click().run()
    with transaction(services.engine) as s:
        assert not s.scalar(select(FaceRow.id).where(FaceRow.person_id == two))
    assert _named(services) == {}


def test_turning_grouping_off_asks_then_deletes_the_face_data(services: Services, alice: Principal) -> None:
    ids = _album(services, alice)
    with transaction(services.engine) as s:
        people.name_person(s, owner_id=alice.user_id, person_id=_person_of(services, ids["red"]), name="Al")
    at = app(alice, PAGE)
    at.toggle(key="people_mine_on").set_value(False).run()
    assert "This deletes the faces found in your photos" in texts(at)
    at.button(key="people_off_cancel").click().run()
    with transaction(services.engine) as s:
        assert s.query(FaceRow).count() == 3
    at.toggle(key="people_mine_on").set_value(False).run()
    at.button(key="people_off_confirm").click().run()
    with transaction(services.engine) as s:
        assert s.query(FaceRow).count() == 0
    assert _named(services) == {}
    assert "No people yet" in texts(at)
    # New faces are not grouped while it is off
    _faces(services, alice, ids["red"], _descriptor(3))
    with transaction(services.engine) as s:
        assert s.query(FaceRow).count() == 0


def test_another_users_person_is_like_a_missing_one(
    services: Services, alice: Principal, bob: Principal
) -> None:
    ids = _album(services, alice)
    person = _person_of(services, ids["red"])
    at = app(bob, PAGE)
    assert "No people yet" in texts(at)
    at = app(bob, PAGE, person=person)
    assert "No such person" in texts(at)
    assert "red.jpg" not in texts(at)
    # An admin sees only their own people too: face data is personal
    bobs = upload(services, bob, "bob.jpg", RED)
    drain(services)
    _faces(services, bob, bobs, _descriptor(4))
    at = app(alice, PAGE, person=_person_of(services, bobs))
    assert "No such person" in texts(at)


def test_the_image_page_names_the_people_on_the_photo(services: Services, alice: Principal) -> None:
    ids = _album(services, alice)
    with transaction(services.engine) as s:
        people.name_person(
            s, owner_id=alice.user_id, person_id=_person_of(services, ids["red"]), name="Grandma"
        )
    at = app(alice, "app_pages/image.py", image=ids["red"])
    assert not at.exception
    assert "In this photo" in texts(at)
    assert any(link.label == "Grandma" for link in at.get("page_link"))
