"""Exports (CSV, JSON Lines, COCO, Ground Truth manifest) and import, on SQLite and MariaDB."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from labelkit import interchange
from labelkit.db.engine import transaction
from labelkit.db.models import LabelRow, LabelSource, ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer
from labelkit.errors import PermissionDenied
from labelkit.interchange import ExportFormat, ExportOptions
from labelkit.interchange import __main__ as export_cli
from labelkit.settings import get_settings

STORAGE = "s3://labelkit-bucket/prefix"


def _cat() -> LabelResult:
    return LabelResult(
        model_version="test-1",
        labels=[
            Label(
                name="Cat",
                confidence=91.0,
                parents=["Mammal", "Animal"],
                aliases=["Kitten"],
                categories=["Animals and Pets"],
                instances=[
                    Instance(box=BoundingBox(left=0.1, top=0.2, width=0.5, height=0.6), confidence=80),
                    Instance(box=BoundingBox(left=0.6, top=0.5, width=0.4, height=0.5), confidence=70),
                ],
            ),
            Label(name="Animal", confidence=93.0, categories=["Animals and Pets"]),
            Label(name="Sofa", confidence=61.0, parents=["Furniture"], categories=["Home"]),
        ],
    )


def _palace() -> LabelResult:
    return LabelResult(
        model_version="test-1",
        labels=[Label(name="Palace", confidence=77.0, parents=["Building"], categories=["Buildings"])],
    )


@pytest.fixture
def world(engine: Engine) -> dict[str, object]:
    """alice (admin) with a cat photo (reviewed) and a palace; bob with a cat photo."""
    with transaction(engine) as s:
        alice = user_q.create_user(session=s, username="alice", password_hash="x", is_admin=True)
        bob = user_q.create_user(session=s, username="bob", password_hash="x", is_admin=False)
        ids = {}
        for owner, name, sha, result in [
            (alice, "cat.jpg", "a", _cat()),
            (alice, "palace.jpg", "b", _palace()),
            (bob, "bob-cat.jpg", "c", _cat()),
        ]:
            img = image_q.create_image(
                session=s,
                owner_id=owner.id,
                original_name=name,
                content_type="image/jpeg",
                extension=".jpg",
                size_bytes=1000,
                width=640,
                height=480,
                sha256=sha * 64,
            )
            worker_q.save_model_labels(session=s, image_id=img.id, result=result)
            worker_q.mark_labelled(session=s, image_id=img.id, model_version="test-1", properties=None)
            ids[name] = img.id
        a = Viewer(user_id=alice.id, is_admin=True)
        label_q.set_human_label(
            session=s, viewer=a, image_id=ids["cat.jpg"], name="Cat", review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=a, image_id=ids["cat.jpg"], name="Sofa", review=ReviewState.REJECTED
        )
        label_q.set_human_label(
            session=s, viewer=a, image_id=ids["cat.jpg"], name="Blanket", review=ReviewState.CONFIRMED
        )
    return {"alice": a, "bob": Viewer(user_id=bob.id, is_admin=False), "ids": ids}


def _export(engine: Engine, viewer: Viewer, fmt: ExportFormat, **options: object) -> bytes:
    with transaction(engine) as s:
        return interchange.build_export(
            session=s,
            viewer=viewer,
            fmt=fmt,
            options=ExportOptions(**options),  # type: ignore[arg-type]
            storage_url=STORAGE,
        ).data


COCO_SCHEMA = {
    "type": "object",
    "required": ["images", "categories", "annotations", "image_labels"],
    "properties": {
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "file_name", "width", "height"],
                "properties": {
                    "id": {"type": "integer"},
                    "file_name": {"type": "string"},
                    "width": {"type": "integer", "minimum": 1},
                    "height": {"type": "integer", "minimum": 1},
                },
            },
        },
        "categories": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "name", "supercategory"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
            },
        },
        "annotations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "image_id", "category_id", "bbox", "area", "iscrowd"],
                "properties": {
                    "bbox": {
                        "type": "array",
                        "items": {"type": "number", "minimum": 0},
                        "minItems": 4,
                        "maxItems": 4,
                    },
                    "iscrowd": {"enum": [0, 1]},
                },
            },
        },
        "image_labels": {
            "type": "array",
            "items": {"type": "object", "required": ["id", "image_id", "category_id", "score"]},
        },
    },
}


def test_coco_is_valid_and_consistent(engine: Engine, world: dict[str, object]) -> None:
    doc = json.loads(_export(engine, world["alice"], ExportFormat.COCO))  # type: ignore[arg-type]
    jsonschema.validate(doc, COCO_SCHEMA)
    images = {i["id"]: i for i in doc["images"]}
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert len(images) == len(doc["images"]) == 3 and len(cats) == len(doc["categories"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"]) == 4  # 2 cats x 2 boxes
    for a in doc["annotations"]:
        img = images[a["image_id"]]
        assert cats[a["category_id"]] == "Cat"
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
    first = doc["annotations"][0]["bbox"]
    assert first == [64.0, 96.0, 320.0, 288.0]  # fractions (0.1, 0.2, 0.5, 0.6) of 640x480
    for lab in doc["image_labels"]:
        assert lab["image_id"] in images and lab["category_id"] in cats
    assert {cats[lab["category_id"]] for lab in doc["image_labels"]} >= {"Cat", "Animal", "Palace", "Blanket"}


def test_manifest_lines_follow_ground_truth_format(engine: Engine, world: dict[str, object]) -> None:
    ids = world["ids"]
    lines = _export(engine, world["alice"], ExportFormat.MANIFEST).decode().splitlines()  # type: ignore[arg-type]
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    cat = next(r for r in records if r["source-ref"].endswith(f"{ids['cat.jpg']}.jpg"))  # type: ignore[index]
    assert cat["source-ref"].startswith("s3://labelkit-bucket/prefix/users/")
    for r in records:
        attrs = [k for k in r if k.startswith("label-") and not k.endswith("-metadata")]
        assert attrs
        for k in attrs:
            meta = r[f"{k}-metadata"]
            assert isinstance(r[k], int)
            assert {"class-name", "confidence", "type", "human-annotated", "creation-date"} <= set(meta)
            assert meta["type"] == "groundtruth/image-classification"
            assert 0 <= meta["confidence"] <= 1 and meta["human-annotated"] in ("yes", "no")
    classes = {
        m["class-name"]: m for k, m in cat.items() if k.startswith("label-") and k.endswith("-metadata")
    }
    assert "Sofa" not in classes  # rejected by a person: not a positive label
    assert classes["Cat"]["human-annotated"] == "yes" and classes["Cat"]["confidence"] == 1.0
    assert classes["Blanket"]["human-annotated"] == "yes"
    assert classes["Animal"]["human-annotated"] == "no" and classes["Animal"]["confidence"] == 0.93
    box = cat["bounding-box"]
    assert box["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    cat_id = next(
        cat[k[: -len("-metadata")]]
        for k, m in cat.items()
        if k.endswith("-metadata") and m.get("class-name") == "Cat"
    )
    assert box["annotations"][0] == {"class_id": cat_id, "left": 64, "top": 96, "width": 320, "height": 288}
    meta = cat["bounding-box-metadata"]
    assert meta["type"] == "groundtruth/object-detection"
    assert set(meta["class-map"].values()) == {"Cat"} and len(meta["objects"]) == 2
    assert {"human-annotated", "creation-date"} <= set(meta)


def test_csv_has_one_row_per_label_row(engine: Engine, world: dict[str, object]) -> None:
    data = _export(engine, world["bob"], ExportFormat.CSV)  # type: ignore[arg-type]
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert set(interchange.LABEL_COLUMNS) == set(rows[0])
    assert {r["original_name"] for r in rows} == {"bob-cat.jpg"}  # bob sees only his own
    boxes = [r for r in rows if r["instance"] != "0"]
    assert len(boxes) == 2 and boxes[0]["box_left_px"] == "64.0" and boxes[0]["box_left"] == "0.1"
    cat = next(r for r in rows if r["label"] == "Cat" and r["instance"] == "0")
    assert cat["parents"] == "Mammal; Animal" and cat["source"] == "model" and cat["review"] == "unreviewed"


def test_filters(engine: Engine, world: dict[str, object]) -> None:
    alice, bob, ids = world["alice"], world["bob"], world["ids"]
    with transaction(engine) as s:
        with pytest.raises(PermissionDenied):
            interchange.collect(session=s, viewer=bob, options=ExportOptions(owner="alice"))  # type: ignore[arg-type]
        only_bob = interchange.collect(session=s, viewer=alice, options=ExportOptions(owner="bob"))  # type: ignore[arg-type]
        assert [e.image.original_name for e in only_bob] == ["bob-cat.jpg"]
        # A parent finds its children, and only matching labels are exported.
        animals = interchange.collect(session=s, viewer=alice, options=ExportOptions(labels=("Mammal",)))  # type: ignore[arg-type]
        assert sorted(e.image.original_name for e in animals) == ["bob-cat.jpg", "cat.jpg"]
        assert {lab.name for e in animals for lab in e.labels} == {"Cat"}
        reviewed = interchange.collect(session=s, viewer=alice, options=ExportOptions(reviewed_only=True))  # type: ignore[arg-type]
        assert [e.image.id for e in reviewed] == [ids["cat.jpg"]]  # type: ignore[index]
        assert {(lab.name, lab.source) for lab in reviewed[0].labels} == {
            ("Cat", "model"),
            ("Cat", "human"),
            ("Blanket", "human"),
        }
        confident = interchange.collect(session=s, viewer=alice, options=ExportOptions(min_confidence=92))  # type: ignore[arg-type]
        assert all(lab.confidence >= 92 for e in confident for lab in e.labels)
        assert "palace.jpg" not in {e.image.original_name for e in confident}
        future = ExportOptions(since=date(2999, 1, 1))
        later = interchange.collect(session=s, viewer=alice, options=future)  # type: ignore[arg-type]
        assert later == []


def test_jsonl_round_trip_and_unknown_images(engine: Engine, world: dict[str, object]) -> None:
    alice, bob = world["alice"], world["bob"]
    first = _export(engine, alice, ExportFormat.JSONL)  # type: ignore[arg-type]
    assert all(json.loads(line)["labels"] is not None for line in first.decode().splitlines())
    # Every human label goes, then the export comes back in.
    with transaction(engine) as s:
        s.execute(delete(LabelRow).where(LabelRow.source == LabelSource.HUMAN))
    assert _export(engine, alice, ExportFormat.JSONL) != first  # type: ignore[arg-type]
    report = interchange.import_text(engine=engine, viewer=alice, text=first, storage_url=STORAGE)  # type: ignore[arg-type]
    assert report.unknown == [] and report.errors == [] and report.labels == 3
    assert _export(engine, alice, ExportFormat.JSONL) == first  # type: ignore[arg-type]
    # Importing again with --replace changes nothing either.
    interchange.import_text(engine=engine, viewer=alice, text=first, storage_url=STORAGE, replace=True)  # type: ignore[arg-type]
    assert _export(engine, alice, ExportFormat.JSONL) == first  # type: ignore[arg-type]
    # bob cannot write to alice's images: they are reported as unknown, as are ids that do not exist.
    extra = json.dumps({"image_id": "nope", "labels": [{"name": "Dog"}]})
    report = interchange.import_text(
        engine=engine, viewer=bob, text=first + extra.encode(), storage_url=STORAGE
    )  # type: ignore[arg-type]
    assert len(report.unknown) == 3 and "nope" in report.unknown and report.images == 1


def test_manifest_import_adds_confirmed_human_labels_with_boxes(
    engine: Engine, world: dict[str, object]
) -> None:
    alice, ids = world["alice"], world["ids"]
    bob_cat = ids["bob-cat.jpg"]  # type: ignore[index]
    # GIVEN bob's photo with only model labels: its manifest says human-annotated "no" throughout
    manifest = _export(engine, alice, ExportFormat.MANIFEST, owner="bob")  # type: ignore[arg-type]
    # WHEN it is imported back
    report = interchange.import_text(engine=engine, viewer=alice, text=manifest, storage_url=STORAGE)  # type: ignore[arg-type]
    with transaction(engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=alice, image_id=bob_cat)  # type: ignore[arg-type]
    # THEN the model's labels stay the model's: nothing becomes a confirmed human label
    assert report.unknown == [] and report.errors == [] and report.labels == 0 and report.boxes == 0
    assert report.skipped_predictions == 3  # Cat, Animal, Sofa
    assert [r for r in rows if r.source == LabelSource.HUMAN] == []

    # GIVEN a person confirmed the cat (its boxes are the model's), then the human labels went
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s,
            viewer=alice,  # type: ignore[arg-type]
            image_id=bob_cat,  # type: ignore[arg-type]
            name="Cat",
            review=ReviewState.CONFIRMED,
        )
    manifest = _export(engine, alice, ExportFormat.MANIFEST, owner="bob")  # type: ignore[arg-type]
    with transaction(engine) as s:
        s.execute(delete(LabelRow).where(LabelRow.source == LabelSource.HUMAN))
    report = interchange.import_text(engine=engine, viewer=alice, text=manifest, storage_url=STORAGE)  # type: ignore[arg-type]
    assert report.unknown == [] and report.images == 1 and report.boxes == 2
    with transaction(engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=alice, image_id=bob_cat)  # type: ignore[arg-type]
    # THEN only the confirmed class comes back as a person's, with its boxes
    human = {(r.name, r.instance): r for r in rows if r.source == LabelSource.HUMAN}
    assert {n for n, _ in human} == {"Cat"}
    assert report.skipped_predictions == 2  # Animal, Sofa
    assert human[("Cat", 0)].review == ReviewState.CONFIRMED
    assert human[("Cat", 0)].parents == ["Mammal", "Animal"]  # copied from the model's label
    assert human[("Cat", 1)].box_left == pytest.approx(0.1) and human[("Cat", 1)].box_width == pytest.approx(
        0.5
    )


def test_cli_export_and_import(
    engine: Engine,
    world: dict[str, object],
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    out = tmp_path / "labels.jsonl"
    assert export_cli.main(["--format", "jsonl", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert export_cli.main(["--format", "coco", "--as", "bob"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [i["original_name"] for i in doc["images"]] == ["bob-cat.jpg"]
    assert export_cli.main(["--format", "csv", "--as", "bob", "--owner", "alice"]) == 1
    assert "only export your own" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text() + json.dumps({"image_id": "missing", "labels": []}) + "\n")
    assert export_cli.main(["--import", str(bad), "--user", "alice", "--replace"]) == 2
    captured = capsys.readouterr()
    assert "unknown image: missing" in captured.err and "3 human labels" in captured.out
    assert export_cli.main(["--import", str(out)]) == 1  # --user is required
