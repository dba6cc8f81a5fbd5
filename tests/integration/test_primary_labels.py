"""The headline label (issue 26 item 3) from stored labels, after people's reviews: cards,
the review queue and exports show the same one, on SQLite and MariaDB."""

from __future__ import annotations

import json

from sqlalchemy.engine import Engine

from labelkit import interchange
from labelkit.db.engine import transaction
from labelkit.db.models import ReviewState
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import stats as stats_q
from labelkit.domain import BoundingBox, Instance, Label, Viewer
from labelkit.interchange import ExportFormat, ExportOptions
from tests.integration.test_rejections import _photo, _user


def _boxed(name: str, conf: float, cats: list[str], box: tuple[float, float, float, float]) -> Label:
    left, top, width, height = box
    instance = Instance(box=BoundingBox(left=left, top=top, width=width, height=height), confidence=conf)
    return Label(name=name, confidence=conf, categories=cats, instances=[instance])


FRISBEE = _boxed("Frisbee", 98.0, ["Hobbies and Interests"], (0.3, 0.2, 0.4, 0.4))
DOG = _boxed("Dog", 90.0, ["Animals and Pets"], (0.0, 0.5, 0.25, 0.3))
BEACH = Label(name="Beach", confidence=80.0, parents=["Outdoors"], categories=["Nature and Outdoors"])
OUTDOORS = Label(name="Outdoors", confidence=95.0, categories=["Nature and Outdoors"])


def _exported(engine: Engine, viewer: Viewer) -> dict[str, object]:
    with transaction(engine) as s:
        data = interchange.build_export(
            session=s, viewer=viewer, fmt=ExportFormat.JSONL, options=ExportOptions(), storage_url="s3://b"
        ).data
    return {rec["image_id"]: rec["primary"] for rec in map(json.loads, data.decode().splitlines())}


def test_the_headline_follows_reviews_and_exports_carry_it(engine: Engine) -> None:
    # GIVEN a dog with its frisbee (the frisbee the more confident, and bigger, box) and a beach
    alice, bob = _user(engine, "alice"), _user(engine, "bob")
    dog = _photo(engine, alice, "a", FRISBEE, DOG)
    beach = _photo(engine, alice, "b", BEACH, OUTDOORS)
    with transaction(engine) as s:
        # THEN the cards name the dog and the beach (not the accessory, not Outdoors)
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[dog, beach]) == {
            dog: ("Dog", 90.0),
            beach: ("Beach", 80.0),
        }
        # AND another user gets nothing for alice's photos
        assert stats_q.primary_labels(session=s, viewer=bob, image_ids=[dog, beach]) == {}
    assert _exported(engine, alice) == {dog: "Dog", beach: "Beach"}

    # WHEN alice rejects Dog
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Dog", review=ReviewState.REJECTED
        )
    # THEN the frisbee heads the photo, in the cards and the export alike
    with transaction(engine) as s:
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[dog]) == {dog: ("Frisbee", 98.0)}
    assert _exported(engine, alice)[dog] == "Frisbee"

    # WHEN she adds a label of her own to the beach THEN it heads that photo
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=beach, name="Grandma's Cove", review=ReviewState.CONFIRMED
        )
    with transaction(engine) as s:
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[beach]) == {
            beach: ("Grandma's Cove", 100.0)
        }
