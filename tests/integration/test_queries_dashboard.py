"""The dashboard's aggregate queries (and labelkit.analytics over them), on SQLite and MariaDB."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from labelkit import analytics
from labelkit.db.engine import transaction
from labelkit.db.models import LabelRow, LabelSource, ReviewState, utcnow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer


def _user(engine: Engine, name: str) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x")
        return Viewer(user_id=u.id, is_admin=u.is_admin)


def _image(engine: Engine, owner: Viewer, sha: str, result: LabelResult | None = None) -> str:
    with transaction(engine) as s:
        img = image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name=f"{sha}.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1000,
            width=64,
            height=48,
            sha256=sha * 64,
        )
        if result is not None:
            worker_q.save_model_labels(session=s, image_id=img.id, result=result)
            worker_q.mark_labelled(
                session=s, image_id=img.id, model_version=result.model_version, properties=None
            )
        return img.id


def _result(*labels: tuple[str, float, list[str]]) -> LabelResult:
    return LabelResult(
        model_version="t-1",
        labels=[
            Label(
                name=n,
                confidence=c,
                parents=p,
                categories=["Animals"] if "Animal" in p else ["Things"],
                instances=[Instance(box=BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4), confidence=c)],
            )
            for n, c, p in labels
        ],
    )


CAT = ("Cat", 90.0, ["Animal"])
DOG = ("Dog", 70.0, ["Animal"])
SOFA = ("Sofa", 60.0, [])


@pytest.fixture
def world(engine: Engine) -> dict[str, object]:
    admin, alice, bob = _user(engine, "admin"), _user(engine, "alice"), _user(engine, "bob")
    a1 = _image(engine, alice, "a", _result(CAT, SOFA))
    a2 = _image(engine, alice, "b", _result(CAT, DOG))
    a3 = _image(engine, alice, "c")  # pending
    b1 = _image(engine, bob, "d", _result(DOG))
    return {"admin": admin, "alice": alice, "bob": bob, "a1": a1, "a2": a2, "a3": a3, "b1": b1}


def test_boxes_are_stored_with_their_coordinates(engine: Engine, world: dict) -> None:
    with transaction(engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=world["alice"], image_id=world["a1"])
    boxes = [r for r in rows if r.source == LabelSource.MODEL and r.instance == 1]
    assert {r.name for r in boxes} == {"Cat", "Sofa"}
    assert all((r.box_left, r.box_top, r.box_width, r.box_height) == (0.1, 0.2, 0.3, 0.4) for r in boxes)


def test_term_suggestions_include_parents_and_are_scoped(engine: Engine, world: dict) -> None:
    with transaction(engine) as s:
        alice = {t.term: t.images for t in stats_q.term_suggestions(session=s, viewer=world["alice"])}
        bob = {t.term: t.images for t in stats_q.term_suggestions(session=s, viewer=world["bob"])}
        admin = {t.term: t.images for t in stats_q.term_suggestions(session=s, viewer=world["admin"])}
    assert alice == {"Animal": 2, "Cat": 2, "Dog": 1, "Sofa": 1}
    assert bob == {"Animal": 1, "Dog": 1}
    assert admin["Animal"] == 3


def test_review_queue_count_matches_the_queue(engine: Engine, world: dict) -> None:
    alice = world["alice"]
    with transaction(engine) as s:
        assert (
            review_q.count_review_queue(session=s, viewer=alice)
            == len(review_q.review_queue(session=s, viewer=alice, limit=100))
            == 4
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=world["a1"], name="Cat", review=ReviewState.CONFIRMED
        )
    with transaction(engine) as s:
        assert review_q.count_review_queue(session=s, viewer=alice) == 3
        assert review_q.count_review_queue(session=s, viewer=world["bob"]) == 1
        assert review_q.count_review_queue(session=s, viewer=world["admin"]) == 4


def test_lookups_by_id_and_key_leave_out_other_owners(engine: Engine, world: dict) -> None:
    ids = [world["a1"], world["b1"], "nope"]
    with transaction(engine) as s:
        mine = image_q.images_by_ids(session=s, viewer=world["alice"], image_ids=ids)
        everyone = image_q.images_by_ids(session=s, viewer=world["admin"], image_ids=ids)
        keys = [img.object_key for img in everyone.values()]
        by_key = image_q.images_by_object_keys(session=s, viewer=world["bob"], keys=keys)
        best = stats_q.primary_labels(session=s, viewer=world["alice"], image_ids=ids)
        names = user_q.usernames(session=s, user_ids=[world["alice"].user_id, ""])
    assert set(mine) == {world["a1"]} and set(everyone) == {world["a1"], world["b1"]}
    assert [img.id for img in by_key.values()] == [world["b1"]]
    assert best == {world["a1"]: ("Cat", 90.0)}
    assert names == {world["alice"].user_id: "alice"}


def test_cooccurrence_counts_images_with_both_labels(engine: Engine, world: dict) -> None:
    with transaction(engine) as s:
        pairs = {
            (p.a, p.b): p.images
            for p in stats_q.label_cooccurrence(
                session=s, viewer=world["alice"], names=["Cat", "Dog", "Sofa"]
            )
        }
        bobs = stats_q.label_cooccurrence(session=s, viewer=world["bob"], names=["Cat", "Dog", "Sofa"])
    assert pairs[("Cat", "Cat")] == 2 and pairs[("Cat", "Dog")] == pairs[("Dog", "Cat")] == 1
    assert pairs[("Cat", "Sofa")] == 1 and ("Dog", "Sofa") not in pairs
    assert [(p.a, p.b, p.images) for p in bobs] == [("Dog", "Dog", 1)]


def test_activity_confidences_and_labelled_times(engine: Engine, world: dict) -> None:
    since = utcnow() - timedelta(days=1)
    with transaction(engine) as s:
        days = stats_q.activity_per_day(session=s, viewer=world["alice"], since=since)
        confidences = sorted(stats_q.model_confidences(session=s, viewer=world["alice"]))
        times = stats_q.labelled_times(session=s, viewer=world["alice"], since=since)
    assert sum(d.uploads for d in days) == 3 and sum(d.labelled for d in days) == 2
    assert days[-1].day == utcnow().date().isoformat()
    assert confidences == [60.0, 70.0, 90.0, 90.0]  # image-level rows only, no boxes
    assert len(times) == 2


def test_failed_images_are_scoped(engine: Engine, world: dict) -> None:
    with transaction(engine) as s:
        worker_q.mark_failed(session=s, image_id=world["b1"], reason="boom")
    with transaction(engine) as s:
        assert image_q.failed_images(session=s, viewer=world["alice"]) == []
        assert [i.failure_reason for i in image_q.failed_images(session=s, viewer=world["bob"])] == ["boom"]
        assert len(image_q.failed_images(session=s, viewer=world["admin"])) == 1


def test_analytics_frames(engine: Engine, world: dict) -> None:
    alice = world["alice"]
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=world["a1"], name="Cat", review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=world["a2"], name="Dog", review=ReviewState.REJECTED
        )
    with transaction(engine) as s:
        table = analytics.label_table(session=s, viewer=alice).set_index("label")
        hist = analytics.confidence_histogram(session=s, viewer=alice, bin_width=10)
        act = analytics.activity(session=s, viewer=alice, days=7)
        cats = analytics.categories(session=s, viewer=alice)
        co = analytics.cooccurrence(session=s, viewer=alice, top=3)
        status = analytics.status_counts(session=s, viewer=alice).set_index("status")
        per_minute = analytics.labelled_per_minute(session=s, viewer=alice, minutes=10)
        empty = analytics.label_table(session=s, viewer=Viewer(user_id="nobody"))
    assert table.loc["Cat", "images"] == 2 and table.loc["Cat", "precision"] == 1.0
    assert (
        table.loc["Dog", "precision"] == 0.0
        and table.loc["Sofa", "precision"] != table.loc["Sofa", "precision"]
    )
    # The rejected Dog counts nowhere: no image, no confidence; it stays listed for its review.
    assert table.loc["Dog", "images"] == 0 and table.loc["Animal", "images"] == 2
    assert len(hist) == 10 and hist["labels"].sum() == 3 and hist.loc[9, "labels"] == 2
    assert len(act) == 7 and act["uploads"].sum() == 3 and act["labelled"].sum() == 2
    assert dict(zip(cats["category"], cats["images"], strict=True)) == {"Animals": 2, "Things": 1}
    # The top 3 by images (a label or a parent, as the gallery's filter): Animal, Cat, Sofa.
    assert set(co["label_a"]) == {"Animal", "Cat", "Sofa"}
    assert status.loc["pending", "images"] == 1 and status.loc["labelled", "images"] == 2
    assert len(per_minute) == 10 and per_minute["images"].sum() == 2
    assert empty.empty and list(empty.columns) == analytics.LABEL_COLUMNS


def test_csv_export_defuses_formulas() -> None:
    import pandas as pd

    csv = analytics.to_csv(pd.DataFrame({"label": ["=HYPERLINK(1)", "Cat"], "images": [1, 2]})).decode()
    assert "'=HYPERLINK(1)" in csv and "\nCat,2" in csv


def test_human_rows_are_not_counted_as_model_confidences(engine: Engine, world: dict) -> None:
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=world["alice"], image_id=world["a3"], name="Lamp", review=ReviewState.CONFIRMED
        )
        rows = label_q.labels_for_image(session=s, viewer=world["alice"], image_id=world["a3"])
        conf = stats_q.model_confidences(session=s, viewer=world["alice"])
    assert [r.source for r in rows] == [LabelSource.HUMAN] and isinstance(rows[0], LabelRow)
    assert 100.0 not in conf
