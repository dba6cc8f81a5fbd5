"""The dashboard tells the truth (issue #16, items 1 and 2), on SQLite and MariaDB.

A person's rejection outranks the model everywhere (cards, search, counts, charts, exports,
the review queue); one definition of "images with label X" (a label or a parent) serves the
gallery's filter, the Labels page, the review count and the exports; labels people add count.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy.engine import Engine

from labelkit import analytics, interchange
from labelkit.db.engine import transaction
from labelkit.db.models import ReviewState, TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer
from labelkit.interchange import ExportFormat, ExportOptions


def _user(engine: Engine, name: str) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x", is_admin=False)
        return Viewer(user_id=u.id, is_admin=False)


def _photo(engine: Engine, owner: Viewer, sha: str, *labels: Label) -> str:
    with transaction(engine) as s:
        img = image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name=f"{sha}.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1000,
            width=640,
            height=480,
            sha256=sha * 64,
        )
        result = LabelResult(model_version="local-1", labels=list(labels))
        worker_q.save_model_labels(session=s, image_id=img.id, result=result)
        worker_q.mark_labelled(session=s, image_id=img.id, model_version="local-1", properties=None)
        return img.id


def _box() -> list[Instance]:
    return [Instance(box=BoundingBox(left=0.1, top=0.2, width=0.5, height=0.4), confidence=60)]


SCHOOL_BUS = Label(
    name="School Bus", confidence=64.0, parents=["Bus", "Vehicle"], categories=["Vehicles"], instances=_box()
)
ROAD = Label(name="Road", confidence=55.0, parents=[], categories=["Places"])
BUS = Label(name="Bus", confidence=80.0, parents=["Vehicle"], categories=["Vehicles"])


def _total(s: object, viewer: Viewer, label: str) -> tuple[int, int]:
    """The gallery filter's total from the running totals and counted from the rows."""
    fast = image_q.list_images(session=s, viewer=viewer, flt=image_q.ImageFilter(label=label)).total  # type: ignore[arg-type]
    slow = image_q.list_images(
        session=s, viewer=viewer, flt=image_q.ImageFilter(label=label, min_confidence=0)
    ).total  # type: ignore[arg-type]
    return fast, slow


def _export(engine: Engine, viewer: Viewer, fmt: ExportFormat, **options: object) -> bytes:
    with transaction(engine) as s:
        return interchange.build_export(
            session=s,
            viewer=viewer,
            fmt=fmt,
            options=ExportOptions(**options),  # type: ignore[arg-type]
            storage_url="s3://bucket",
        ).data


def test_a_rejected_label_is_gone_from_cards_search_counts_charts_exports_and_the_queue(
    engine: Engine,
) -> None:
    # GIVEN a street photo the model called "School Bus" (64%, its parents Bus and Vehicle)
    # and "Road", and another photo with a real bus
    alice = _user(engine, "alice")
    street = _photo(engine, alice, "a", SCHOOL_BUS, ROAD)
    bus = _photo(engine, alice, "b", BUS)
    with transaction(engine) as s:
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[street]) == {
            street: ("School Bus", 64.0)
        }
        assert _total(s, alice, "School Bus") == (1, 1) and _total(s, alice, "Bus") == (2, 2)

    # WHEN alice rejects "School Bus" on the street photo
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=street, name="School Bus", review=ReviewState.REJECTED
        )

    with transaction(engine) as s:
        # THEN the card shows the photo's best label that stands
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[street, bus]) == {
            street: ("Road", 55.0),
            bus: ("Bus", 80.0),
        }
        # AND search and the filter no longer find it, nor through the parents only it brought
        assert _total(s, alice, "School Bus") == (0, 0)
        assert _total(s, alice, "Bus") == (1, 1) and _total(s, alice, "Vehicle") == (1, 1)
        found = image_q.list_images(session=s, viewer=alice, flt=image_q.ImageFilter(label="Bus")).items
        assert [i.id for i in found] == [bus]
        assert "School Bus" not in {t.term for t in stats_q.term_suggestions(session=s, viewer=alice)}
        assert stats_q.term_counts(session=s, viewer=alice, kind=TermKind.CATEGORY) == [
            ("Places", 1),
            ("Vehicles", 1),
        ]
        # AND the Labels page counts no image for it (it stays listed with its rejection)
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        assert (stats["School Bus"].images, stats["School Bus"].rejected) == (0, 1)
        assert stats["School Bus"].mean_confidence is None
        assert (stats["Bus"].images, stats["Vehicle"].images) == (1, 1)
        # AND the charts leave its confidence out
        assert sorted(stats_q.model_confidences(session=s, viewer=alice)) == [55.0, 80.0]
        hist = analytics.confidence_histogram(session=s, viewer=alice, bin_width=10)
        assert int(hist["labels"].sum()) == 2 and int(hist.loc[6, "labels"]) == 0
        co = analytics.cooccurrence(session=s, viewer=alice, top=10)
        assert "School Bus" not in set(co["label_a"]) | set(co["label_b"])
        # AND the review queue no longer offers it
        queue = review_q.review_queue(session=s, viewer=alice, limit=100)
        assert "School Bus" not in {r.name for r in queue}
        assert review_q.count_review_queue(session=s, viewer=alice) == len(queue) == 2

    # AND no export gives it as a label the photo carries
    coco = json.loads(_export(engine, alice, ExportFormat.COCO))
    assert "School Bus" not in {c["name"] for c in coco["categories"]}
    assert len(coco["annotations"]) == 0  # its box went with it
    manifest = _export(engine, alice, ExportFormat.MANIFEST).decode()
    assert "School Bus" not in manifest
    # (the CSV keeps the model's row, marked rejected, so the verdict can be read back)
    rows = list(csv.DictReader(io.StringIO(_export(engine, alice, ExportFormat.CSV).decode())))
    assert {r["review"] for r in rows if r["label"] == "School Bus"} == {"rejected"}
    # AND exporting "images with Bus" takes only the real bus
    only_bus = json.loads(_export(engine, alice, ExportFormat.COCO, labels=("Bus",)))
    assert [i["original_name"] for i in only_bus["images"]] == ["b.jpg"]


def test_rejecting_a_parent_takes_it_from_every_label_of_the_photo(engine: Engine) -> None:
    # GIVEN a cat photo whose Cat has the parent Animal (and no Animal label of its own)
    alice = _user(engine, "alice")
    cat = _photo(engine, alice, "a", Label(name="Cat", confidence=90.0, parents=["Mammal", "Animal"]))
    # WHEN alice says it shows no animal (a stuffed toy)
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=cat, name="Animal", review=ReviewState.REJECTED
        )
    # THEN "Animal" finds nothing, on the Labels page or in the gallery; Cat and Mammal stay
    with transaction(engine) as s:
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        assert _total(s, alice, "Animal") == (0, 0) and stats["Animal"].images == 0
        assert _total(s, alice, "Cat") == (1, 1) and _total(s, alice, "Mammal") == (1, 1)


def test_labels_people_add_count_like_the_models(engine: Engine) -> None:
    # GIVEN an astronaut photo the model labelled only "Space"
    alice = _user(engine, "alice")
    photo = _photo(engine, alice, "a", Label(name="Space", confidence=70.0, parents=[]))
    # WHEN alice adds "Person" and "Astronaut" and confirms "Space"
    with transaction(engine) as s:
        for name in ("Person", "Astronaut", "Space"):
            label_q.set_human_label(
                session=s, viewer=alice, image_id=photo, name=name, review=ReviewState.CONFIRMED
            )
    with transaction(engine) as s:
        # THEN the Labels page lists them, with their images
        table = analytics.label_table(session=s, viewer=alice).set_index("label")
        assert {n: int(table.loc[n, "images"]) for n in ("Person", "Astronaut", "Space")} == {
            "Person": 1,
            "Astronaut": 1,
            "Space": 1,
        }
        # (no model confidence for a label only people gave; the model's for Space)
        assert table.loc["Person", "mean_confidence"] != table.loc["Person", "mean_confidence"]  # NaN
        assert table.loc["Space", "mean_confidence"] == pytest.approx(70.0)
        # AND the gallery's filter finds the photo by them, at a person's certainty
        assert _total(s, alice, "Astronaut") == (1, 1) and _total(s, alice, "Person") == (1, 1)
        sure = image_q.ImageFilter(label="Space", min_confidence=95)
        assert image_q.list_images(session=s, viewer=alice, flt=sure).total == 1  # confirmed: 100
        # AND the card shows a label a person gave (100%), not the model's guess
        assert stats_q.primary_labels(session=s, viewer=alice, image_ids=[photo]) == {
            photo: ("Astronaut", 100.0)
        }
    # AND exports carry them
    coco = json.loads(_export(engine, alice, ExportFormat.COCO))
    assert {"Person", "Astronaut", "Space"} <= {c["name"] for c in coco["categories"]}


def test_the_labels_page_count_of_a_parent_is_the_gallery_filters(engine: Engine) -> None:
    # GIVEN six photos with the model's label "Animal" and a seventh whose Cat has Animal as a
    # parent but no Animal label of its own (the "Animal 6 vs 7")
    alice = _user(engine, "alice")
    for k in range(6):
        _photo(
            engine, alice, f"{k}", Label(name="Animal", confidence=80.0), Label(name="Dog", confidence=70.0)
        )
    _photo(engine, alice, "z", Label(name="Cat", confidence=88.0, parents=["Mammal", "Animal"]))
    with transaction(engine) as s:
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        # THEN the Labels page says 7, as the gallery's filter does
        assert stats["Animal"].images == 7
        assert _total(s, alice, "Animal") == (7, 7)
        assert stats_q.images_with_term_count(session=s, viewer=alice, term="Animal") == 7
        # AND its mean confidence is the model's Animal labels' (the parent adds no model label)
        assert stats["Animal"].mean_confidence == pytest.approx(80.0)


def _dog_called_cat(engine: Engine, alice: Viewer, sha: str) -> str:
    """A dog photo the model also called Cat: Feline rolled up from Cat alone; Pet, Mammal and
    Animal from both (the classifier's roll-ups are labels of their own)."""
    return _photo(
        engine,
        alice,
        sha,
        Label(name="Dog", confidence=90.0, parents=["Canine", "Pet", "Mammal", "Animal"], instances=_box()),
        Label(name="Cat", confidence=70.0, parents=["Feline", "Pet", "Mammal", "Animal"], instances=_box()),
        Label(name="Feline", confidence=70.0, parents=["Mammal", "Animal"]),
        Label(name="Canine", confidence=90.0, parents=["Mammal", "Animal"]),
        Label(name="Pet", confidence=90.0, parents=["Animal"]),
        Label(name="Mammal", confidence=90.0, parents=["Animal"]),
    )


def _totals_match_a_rebuild(engine: Engine) -> None:
    from labelkit.db import counts

    with transaction(engine) as s:
        running = counts.dump(s)
        counts.rebuild(s)
        assert counts.dump(s) == running
        s.rollback()


def test_rejecting_a_name_ends_the_roll_ups_that_were_only_its_evidence(engine: Engine) -> None:
    """Issue 24 item 2: rejecting "Cat" on a dog photo ends "Feline" too (rolled up from Cat
    alone), so "feline" no longer finds it and the Labels page's Cat and Feline agree; Pet and
    Mammal stay, because Dog is evidence for them."""
    alice = _user(engine, "alice")
    dog = _dog_called_cat(engine, alice, "a")
    cat = _photo(
        engine,
        alice,
        "b",
        Label(name="Cat", confidence=95.0, parents=["Feline", "Pet", "Mammal", "Animal"]),
        Label(name="Feline", confidence=95.0, parents=["Mammal", "Animal"]),
    )
    with transaction(engine) as s:
        assert _total(s, alice, "Feline") == (2, 2)
    # WHEN alice rejects Cat on the dog photo
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Cat", review=ReviewState.REJECTED
        )
    with transaction(engine) as s:
        # THEN Feline finds only the real cat, and the Labels page counts Cat and Feline alike
        assert _total(s, alice, "Feline") == (1, 1) and _total(s, alice, "Cat") == (1, 1)
        found = image_q.list_images(session=s, viewer=alice, flt=image_q.ImageFilter(label="Feline")).items
        assert [i.id for i in found] == [cat]
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        assert (stats["Cat"].images, stats["Feline"].images) == (1, 1)
        # AND the dog keeps what Dog is evidence for
        for name in ("Dog", "Canine", "Pet", "Mammal", "Animal"):
            assert _total(s, alice, name) == (2 if name in ("Pet", "Mammal", "Animal") else 1,) * 2, name
        # AND Feline is no longer offered for review on the dog photo (nor is Cat)
        queue = {(r.image_id, r.name) for r in review_q.review_queue(session=s, viewer=alice, limit=100)}
        assert (dog, "Feline") not in queue and (dog, "Cat") not in queue and (dog, "Pet") in queue
        # AND the rejection it implies says where it came from
        human = [
            r
            for r in label_q.labels_for_image(session=s, viewer=alice, image_id=dog)
            if r.model_version == ""
        ]
        assert sorted((r.name, r.review, r.implied_by) for r in human) == [
            ("Cat", ReviewState.REJECTED, None),
            ("Feline", ReviewState.REJECTED, "Cat"),
        ]
        assert {r.created_by for r in human} == {alice.user_id}
    _totals_match_a_rebuild(engine)

    # WHEN alice changes her mind and confirms Cat THEN Feline is back, unreviewed
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Cat", review=ReviewState.CONFIRMED
        )
    with transaction(engine) as s:
        assert _total(s, alice, "Feline") == (2, 2)
        queue = {(r.image_id, r.name) for r in review_q.review_queue(session=s, viewer=alice, limit=100)}
        assert (dog, "Feline") in queue
    _totals_match_a_rebuild(engine)


def test_a_persons_own_verdict_on_a_roll_up_outranks_what_a_rejection_implies(engine: Engine) -> None:
    alice = _user(engine, "alice")
    dog = _dog_called_cat(engine, alice, "a")
    # GIVEN alice confirmed Feline herself (say, a lion toy beside the dog)
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Feline", review=ReviewState.CONFIRMED
        )
    # WHEN she rejects Cat THEN her Feline stands
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Cat", review=ReviewState.REJECTED
        )
    with transaction(engine) as s:
        assert _total(s, alice, "Feline") == (1, 1)
    # AND a rejection that was implied becomes her own when she rejects it herself
    other = _dog_called_cat(engine, alice, "c")
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=other, name="Cat", review=ReviewState.REJECTED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=other, name="Feline", review=ReviewState.REJECTED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=other, name="Cat", review=ReviewState.CONFIRMED
        )
    with transaction(engine) as s:
        human = {
            r.name: (r.review, r.implied_by)
            for r in label_q.labels_for_image(session=s, viewer=alice, image_id=other)
            if r.model_version == ""
        }
        assert human == {"Cat": (ReviewState.CONFIRMED, None), "Feline": (ReviewState.REJECTED, None)}
    _totals_match_a_rebuild(engine)


def test_implied_rejections_rule() -> None:
    """The rule on its own: parents only the rejected name brought go; a parent a standing
    label names stays, and so do that parent's own parents; a name with no model row is left
    alone (nothing to end)."""
    from labelkit.db.counts import implied_rejections
    from labelkit.db.models import LabelSource

    m, h = LabelSource.MODEL, LabelSource.HUMAN
    rows = [
        (m, ReviewState.UNREVIEWED, "Cat", ["Feline", "Pet", "Mammal", "Animal"], None),
        (m, ReviewState.UNREVIEWED, "Feline", ["Mammal", "Animal"], None),
        (m, ReviewState.UNREVIEWED, "Pet", ["Animal"], None),
        (m, ReviewState.UNREVIEWED, "Mammal", ["Animal"], None),
        (m, ReviewState.UNREVIEWED, "Animal", [], None),
        (h, ReviewState.REJECTED, "Cat", ["Feline", "Pet", "Mammal", "Animal"], None),
    ]
    assert implied_rejections(rows) == {"Feline": "Cat", "Pet": "Cat", "Mammal": "Cat", "Animal": "Cat"}
    # a standing Dog keeps Pet, Mammal and Animal
    dog = (m, ReviewState.UNREVIEWED, "Dog", ["Pet", "Mammal", "Animal"], None)
    assert implied_rejections([*rows, dog]) == {"Feline": "Cat"}
    # a confirmed Tiger (people's label) keeps Feline, and through Feline Mammal and Animal
    tiger = (h, ReviewState.CONFIRMED, "Tiger", ["Feline"], None)
    feline_kept = implied_rejections([*rows, tiger])
    assert feline_kept == {"Pet": "Cat"}
    # rows that were implied before are not evidence of anything
    old = (h, ReviewState.REJECTED, "Pet", ["Animal"], "Cat")
    assert implied_rejections([*rows, dog, old]) == {"Feline": "Cat"}
    # no rejection, nothing implied
    assert implied_rejections(rows[:-1]) == {}


def test_exports_give_a_persons_rejection_and_imports_work_out_what_it_implies(engine: Engine) -> None:
    # GIVEN alice rejected Cat on a dog photo (ending Feline with it)
    alice = _user(engine, "alice")
    dog = _dog_called_cat(engine, alice, "a")
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog, name="Cat", review=ReviewState.REJECTED
        )
    # THEN JSON Lines lists her own verdict only, and marks the model's Feline rejected
    (record,) = [
        json.loads(line) for line in _export(engine, alice, ExportFormat.JSONL).decode().splitlines()
    ]
    human = [(lab["name"], lab["review"]) for lab in record["labels"] if lab["source"] == "human"]
    assert human == [("Cat", "rejected")]
    assert {lab["review"] for lab in record["labels"] if lab["name"] == "Feline"} == {"rejected"}
    # AND COCO leaves both out
    coco = json.loads(_export(engine, alice, ExportFormat.COCO))
    assert not {"Cat", "Feline"} & {c["name"] for c in coco["categories"]}
    # WHEN the file comes back in, replacing her labels THEN the same follows from it
    interchange.import_text(engine=engine, viewer=alice, text=json.dumps(record), replace=True)
    with transaction(engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=alice, image_id=dog)
        assert sorted((r.name, r.review, r.implied_by) for r in rows if r.model_version == "") == [
            ("Cat", ReviewState.REJECTED, None),
            ("Feline", ReviewState.REJECTED, "Cat"),
        ]
        assert _total(s, alice, "Feline") == (0, 0)
