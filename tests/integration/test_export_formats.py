"""Import validation, export bundles, CSV for Excel and manifest source-refs, on SQLite and MariaDB.

Uses the ``world`` of ``test_exports`` (alice, an admin, with a reviewed cat photo and a
palace; bob with a cat photo), plus a real local object store holding the photos.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from PIL import Image as PILImage
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from labelkit import interchange
from labelkit.db.engine import transaction
from labelkit.db.models import Image, LabelSource, ReviewState
from labelkit.db.queries import labels as label_q
from labelkit.domain import Viewer
from labelkit.interchange import ExportFormat, ExportOptions
from labelkit.interchange import __main__ as export_cli
from labelkit.settings import Settings, get_settings
from labelkit.storage import ObjectStore
from labelkit.storage.local import LocalStore
from tests.integration.test_exports import COCO_SCHEMA, world  # noqa: F401


def _who(w: dict[str, object]) -> tuple[Viewer, dict[str, str]]:
    return cast(Viewer, w["alice"]), cast(dict[str, str], w["ids"])


def _jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), color).save(out, format="JPEG")
    return out.getvalue()


def _stored(engine: Engine, root: Path) -> tuple[LocalStore, dict[str, bytes]]:
    """Every image of the world in a local store at its object key; key -> bytes."""
    store = LocalStore(root)
    data = {}
    with transaction(engine) as s:
        for n, image in enumerate(s.query(Image).order_by(Image.created_at)):
            data[image.object_key] = _jpeg((40 * n, 100, 200))
            store.put(image.object_key, data[image.object_key], content_type="image/jpeg")
    return store, data


def _rename(engine: Engine, image_id: str, name: str) -> None:
    with transaction(engine) as s:
        image = s.get(Image, image_id)
        assert image is not None
        image.original_name = name


def _bundle(
    engine: Engine, viewer: Viewer, fmt: ExportFormat, store: ObjectStore, out: Path, **kwargs: Any
) -> tuple[zipfile.ZipFile, interchange.BundleSummary]:
    """The bundle of everything ``viewer`` sees, written to ``out`` as the Export page and the
    CLI write it: entries gathered in one transaction, the zip written after it."""
    with transaction(engine) as s:
        entries = interchange.collect(session=s, viewer=viewer)
    with out.open("wb") as fp:
        summary = interchange.write_bundle(fp, entries, fmt=fmt, store=store, **kwargs)
    return zipfile.ZipFile(out), summary


def _import(
    engine: Engine, viewer: Viewer, lines: list[dict[str, Any]], storage_url: str = "s3://b"
) -> interchange.ImportReport:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return interchange.import_text(engine=engine, viewer=viewer, text=text, storage_url=storage_url)


# --------------------------------------------------------------------------- import validation


def test_json_lines_boxes_outside_the_image_are_refused_per_line(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
) -> None:
    alice, ids = _who(world)
    cat, palace, bob_cat = ids["cat.jpg"], ids["palace.jpg"], ids["bob-cat.jpg"]

    def dog(image_id: str, box: dict[str, object]) -> dict[str, Any]:
        return {"image_id": image_id, "labels": [{"name": "Dog", "instances": [box]}]}

    # GIVEN a file with an impossible box, a box that is no number, one ending far past the
    # image, one a hair past it (rounding elsewhere) and a good one
    lines = [
        dog(cat, {"left": 1.5, "top": 0.1, "width": -0.2, "height": 0.3}),
        dog(palace, {"left": 0.2, "top": "x", "width": 0.2, "height": 0.3}),
        dog(palace, {"left": 0.6, "top": 0.1, "width": 0.6, "height": 0.3}),
        dog(bob_cat, {"left": 0.7, "top": 0.1, "width": 0.3000004, "height": 0.3}),
        dog(bob_cat, {"left": 0.1, "top": 0.1, "width": 0.2, "height": 0.3}),
    ]
    lines[4]["labels"][0]["name"] = "Toy"
    # WHEN it is imported
    report = _import(engine, alice, lines)
    # THEN each bad line is refused with its number and reason, and nothing of it is written
    assert report.errors == [
        "line 1: label 'Dog' box 1: left 1.5 is outside the image (0 to 1)",
        "line 2: label 'Dog' box 1: top is 'x', not a number",
        "line 3: label 'Dog' box 1: left 0.6 + width 0.6 ends past the image (1)",
    ]
    assert report.labels == 2 and report.clamped_boxes == 1
    assert "3 lines refused" in report.summary() and "1 boxes clamped" in report.summary()
    # and no later export carries a box outside its image
    coco = json.loads(
        interchange.build_export(session=_session(engine), viewer=alice, fmt=ExportFormat.COCO).data
    )
    jsonschema.validate(coco, COCO_SCHEMA)
    sizes = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    dogs = [a for a in coco["annotations"] if names[a["category_id"]] == "Dog"]
    assert [a["image_id"] for a in dogs] == [
        next(i["id"] for i in coco["images"] if i["labelkit_id"] == bob_cat)
    ]
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0
        assert x + w <= sizes[a["image_id"]][0] and y + h <= sizes[a["image_id"]][1]
    assert dogs[0]["bbox"] == [448.0, 48.0, 192.0, 144.0]  # clamped onto the right edge of 640 px


def _session(engine: Engine) -> Session:  # a read-only session for one export
    return Session(engine)


def test_manifest_boxes_outside_the_image_are_refused(engine: Engine, world: dict[str, object]) -> None:  # noqa: F811
    alice, ids = _who(world)
    ref = f"s3://b/users/x/{ids['palace.jpg']}.jpg"

    def line(box: dict[str, object]) -> dict[str, Any]:
        return {
            "source-ref": ref,
            "bounding-box": {
                "image_size": [{"width": 640, "height": 480}],
                "annotations": [{"class_id": 0, **box}],
            },
            "bounding-box-metadata": {"class-map": {"0": "Tower"}, "type": "groundtruth/object-detection"},
        }

    with transaction(engine) as s:
        image = s.get(Image, ids["palace.jpg"])
        assert image is not None
        ref = interchange.source_ref(image.object_key, "s3://b")
    report = _import(
        engine,
        alice,
        [
            line({"left": -5, "top": 0, "width": 100, "height": 100}),
            line({"left": 600, "top": 0, "width": 100, "height": 100}),
            line({"left": 600, "top": 0, "width": 40, "height": 100}),
        ],
    )
    assert report.errors == [
        "line 1: box 1 ('Tower'): left -5 is outside the image (0 to 640px)",
        "line 2: box 1 ('Tower'): left 600 + width 100 ends past the image (640px)",
    ]
    assert report.labels == 1 and report.boxes == 1


# --------------------------------------------------------------------------- bundles


def test_coco_bundle_holds_the_images_under_readable_unique_names(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    tmp_path: Path,  # noqa: F811
) -> None:
    alice, ids = _who(world)
    store, data = _stored(engine, tmp_path / "images")
    # GIVEN two photos uploaded under the same name (but for case) and one with a hostile name
    _rename(engine, ids["bob-cat.jpg"], "CAT.jpeg")
    _rename(engine, ids["palace.jpg"], "../../Château de Versailles?.jpg")
    # WHEN a COCO bundle is made
    zf, summary = _bundle(engine, alice, ExportFormat.COCO, store, tmp_path / "coco.zip")
    assert interchange.bundle_file_name(ExportFormat.COCO) == "labelkit-coco-bundle.zip"
    assert zf.testzip() is None and summary.images == 3
    # THEN the images are there under safe, unique names, beside the annotation file
    assert sorted(zf.namelist()) == [
        "README.txt",
        "images/CAT-2.jpg",
        "images/Chateau_de_Versailles.jpg",
        "images/cat.jpg",
        "labelkit-coco.json",
    ]
    doc = json.loads(zf.read("labelkit-coco.json"))
    jsonschema.validate(doc, COCO_SCHEMA)
    by_id = {i["labelkit_id"]: i for i in doc["images"]}
    assert by_id[ids["cat.jpg"]]["file_name"] == "images/cat.jpg"
    assert by_id[ids["bob-cat.jpg"]]["file_name"] == "images/CAT-2.jpg"
    # and every file_name opens the very photo it describes
    with transaction(engine) as s:
        keys = {i.id: i.object_key for i in s.query(Image)}
    for image in doc["images"]:
        assert zf.read(image["file_name"]) == data[keys[image["labelkit_id"]]]
    assert len(doc["annotations"]) == 4


def test_manifest_bundle_source_refs_and_missing_images(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    tmp_path: Path,  # noqa: F811
) -> None:
    alice, ids = _who(world)
    store, _ = _stored(engine, tmp_path / "images")
    with transaction(engine) as s:
        palace = s.get(Image, ids["palace.jpg"])
        assert palace is not None
        palace_key = palace.object_key
    store.delete(palace_key)  # GIVEN one photo is no longer in the store
    for base, prefix in (("", "images/"), ("s3://bucket/dataset/", "s3://bucket/dataset/images/")):
        zf, result = _bundle(
            engine, alice, ExportFormat.MANIFEST, store, tmp_path / "ds.zip", source_ref_base=base
        )
        records = [json.loads(line) for line in zf.read("labelkit-labels.manifest").decode().splitlines()]
        # THEN source-ref points at the bundle's images (relative, or where the folder goes)
        assert sorted(r["source-ref"] for r in records) == [f"{prefix}bob-cat.jpg", f"{prefix}cat.jpg"]
        for r in records:
            assert r["source-ref"].removeprefix(prefix) in {n.removeprefix("images/") for n in zf.namelist()}
        # and the missing photo is left out and named
        assert result.missing == (palace_key,) and result.images == 2


# --------------------------------------------------------------------------- CSV and source-ref


def test_csv_for_excel_starts_with_a_bom(engine: Engine, world: dict[str, object]) -> None:  # noqa: F811
    alice, ids = _who(world)
    with transaction(engine) as s:
        label_q.import_human_label(
            session=s,
            viewer=alice,
            image_id=ids["palace.jpg"],
            name="Café",
            review=ReviewState.CONFIRMED,
        )
        plain = interchange.build_export(session=s, viewer=alice, fmt=ExportFormat.CSV).data
        excel = interchange.build_export(session=s, viewer=alice, fmt=ExportFormat.CSV, csv_bom=True).data
    assert not plain.startswith(b"\xef\xbb\xbf")
    assert excel.startswith(b"\xef\xbb\xbf") and excel[3:] == plain
    rows = list(csv.DictReader(io.StringIO(excel.decode("utf-8-sig"))))
    assert "Café" in {r["label"] for r in rows} and set(rows[0]) == set(interchange.LABEL_COLUMNS)


def test_local_manifest_names_file_paths_or_the_configured_s3_form(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    tmp_path: Path,  # noqa: F811
) -> None:
    alice, _ = _who(world)
    local = (tmp_path / "images").as_posix()
    with transaction(engine) as s:
        paths = interchange.build_export(
            session=s, viewer=alice, fmt=ExportFormat.MANIFEST, storage_url=local
        )
        s3 = interchange.build_export(
            session=s,
            viewer=alice,
            fmt=ExportFormat.MANIFEST,
            storage_url=local,
            source_ref_base="s3://bucket/photos",
        )
    refs = [json.loads(line)["source-ref"] for line in paths.data.decode().splitlines()]
    assert all(r.startswith(str(tmp_path / "images" / "users")) for r in refs)
    s3_refs = [json.loads(line)["source-ref"] for line in s3.data.decode().splitlines()]
    assert all(r.startswith("s3://bucket/photos/users/") for r in s3_refs)
    # The s3:// form imports back in local mode (matched by the object key).
    report = interchange.import_text(engine=engine, viewer=alice, text=s3.data, storage_url=local)
    assert report.unknown == [] and report.images == 3


def test_manifest_s3_url_setting_is_checked() -> None:
    assert Settings(manifest_s3_url="s3://bucket/prefix/").manifest_s3_url == "s3://bucket/prefix"
    assert Settings(manifest_s3_url="s3://bucket/p").manifest_source_ref_base == "s3://bucket/p"
    assert Settings(manifest_s3_url="s3://b", storage_url="s3://store").manifest_source_ref_base == ""
    for bad in ("bucket/prefix", "s3://", "https://bucket"):
        with pytest.raises(ValidationError):
            Settings(manifest_s3_url=bad)


def test_cli_bundle_bom_and_source_refs(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    _stored(engine, tmp_path / "data" / "images")
    out = tmp_path / "coco.zip"
    # A bundle goes to a file
    assert export_cli.main(["--format", "coco", "--bundle", "--out", str(out)]) == 0
    assert "3 images" in capsys.readouterr().err
    assert "labelkit-coco.json" in zipfile.ZipFile(out).namelist()
    assert export_cli.main(["--format", "coco", "--bundle"]) == 1  # not to a terminal
    assert "--out" in capsys.readouterr().err
    for wrong in (
        ["--format", "jsonl", "--bundle"],
        ["--format", "coco", "--bom"],
        ["--format", "manifest", "--s3-refs"],
    ):
        with pytest.raises(SystemExit):
            export_cli.main(wrong)
        capsys.readouterr()
    # CSV for Excel
    csv_out = tmp_path / "labels.csv"
    assert export_cli.main(["--format", "csv", "--bom", "--out", str(csv_out)]) == 0
    assert csv_out.read_bytes().startswith(b"\xef\xbb\xbf")
    # source-ref forms: file paths by default, s3:// under the setting or an explicit base
    assert export_cli.main(["--format", "manifest"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["source-ref"].startswith(str(tmp_path))
    monkeypatch.setenv("LABELKIT_MANIFEST_S3_URL", "s3://bucket/photos")
    get_settings.cache_clear()
    assert export_cli.main(["--format", "manifest", "--s3-refs"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["source-ref"].startswith(
        "s3://bucket/photos/users/"
    )
    assert export_cli.main(["--format", "manifest", "--source-ref-base", "s3://other/x/"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["source-ref"].startswith("s3://other/x/users/")
    # An import with a bad box names the line on standard error and exits 2
    bad = tmp_path / "bad.jsonl"
    image_id = _who(world)[1]["cat.jpg"]
    bad.write_text(
        json.dumps(
            {
                "image_id": image_id,
                "labels": [
                    {"name": "Dog", "instances": [{"left": 1.5, "top": 0, "width": -0.2, "height": 0.1}]}
                ],
            }
        )
        + "\n"
    )
    assert export_cli.main(["--import", str(bad), "--user", "alice"]) == 2
    assert "line 1: label 'Dog' box 1: left 1.5 is outside the image" in capsys.readouterr().err
    with transaction(engine) as s:
        rows = label_q.labels_for_image(session=s, viewer=_who(world)[0], image_id=image_id)
    assert "Dog" not in {r.name for r in rows if r.source == LabelSource.HUMAN}
    get_settings.cache_clear()


def test_bundle_names_are_safe_and_unique() -> None:
    from tests.unit.test_box_writers import _entries

    entries = _entries(0)[:6]
    for e, name in zip(entries, ["a.jpg", "A.JPG", "", "...", "x" * 300 + ".png", "日本.jpg"], strict=True):
        e.image.original_name = name
    names = list(interchange.bundle_names(entries).values())
    assert names[:4] == ["images/a.jpg", "images/A-2.jpg", "images/image.jpg", "images/image-2.jpg"]
    assert names[4] == "images/" + "x" * 80 + ".jpg" and names[5] == "images/image-3.jpg"
    options = ExportOptions()
    assert options.labels == ()


class _WholeReadsRefused(LocalStore):
    """A store that fails any read of a whole object: a bundle must copy photos in pieces."""

    def get(self, key: str) -> bytes:
        raise AssertionError(f"{key} was read whole")


def test_a_bundle_copies_each_photo_in_pieces_and_tells_its_progress(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    tmp_path: Path,
) -> None:
    alice, _ = _who(world)
    _, data = _stored(engine, tmp_path / "images")
    store = _WholeReadsRefused(tmp_path / "images")
    told: list[tuple[int, int]] = []
    # WHEN a bundle is written from a store that refuses whole reads
    zf, summary = _bundle(
        engine, alice, ExportFormat.COCO, store, tmp_path / "b.zip", progress=lambda d, t: told.append((d, t))
    )
    # THEN every photo is in it, stored (not deflated), byte for byte
    photos = [i for i in zf.infolist() if i.filename.startswith("images/")]
    assert len(photos) == 3 == summary.images and zf.testzip() is None
    assert {i.compress_type for i in photos} == {zipfile.ZIP_STORED}
    assert sorted(zf.read(i) for i in photos) == sorted(data.values())
    # and progress went from none to all, photo by photo
    assert told == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_a_bundle_above_the_dashboard_limit_names_the_command_that_makes_it(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shlex

    alice, _ = _who(world)
    store, _ = _stored(engine, tmp_path / "data" / "images")
    options = ExportOptions(owner="bob", labels=("Animal",), min_confidence=50.0, since=date(2020, 1, 2))
    with transaction(engine) as s:
        entries = interchange.collect(session=s, viewer=alice, options=options)
    assert interchange.photo_bytes(entries) == 1000  # bob's cat, by the size recorded at upload
    # GIVEN a limit below the photos' size, WHEN the dashboard checks it
    assert interchange.check_bundle_size(entries, max_bytes=1000, fmt="coco", options=options) == 1000
    with pytest.raises(interchange.BundleTooLarge) as refused:
        interchange.check_bundle_size(
            entries,
            max_bytes=999,
            fmt="coco",
            options=options,
            as_user="alice",
            source_ref_base="s3://b/x y",
        )
    # THEN it is refused with both sizes and the command line
    e = refused.value
    assert (
        "weigh 1 kB, more than the 999 bytes" in str(e) and "LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES" in e.reason
    )
    assert e.command == (
        "labelkit export --format coco --bundle --as alice --owner bob --label Animal --since 2020-01-02 "
        "--min-confidence 50 --source-ref-base 's3://b/x y' --out labelkit-coco-bundle.zip"
    )
    # and that command (as `labelkit export` runs it) makes the same bundle, with no limit
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    monkeypatch.setenv("LABELKIT_DASHBOARD_BUNDLE_MAX_BYTES", "1")
    get_settings.cache_clear()
    command = interchange.bundle_command(fmt="coco", options=options, as_user="alice")
    argv = shlex.split(command)
    assert argv[:2] == ["labelkit", "export"]
    assert export_cli.main(argv[2:]) == 0
    assert "1 images" in capsys.readouterr().err
    made = zipfile.ZipFile(tmp_path / "labelkit-coco-bundle.zip")  # tests run in tmp_path
    expected, _ = _bundle(engine, alice, ExportFormat.COCO, store, tmp_path / "page.zip")
    assert made.namelist() == ["images/bob-cat.jpg", "labelkit-coco.json", "README.txt"]
    assert made.read("images/bob-cat.jpg") == expected.read("images/bob-cat.jpg")
    get_settings.cache_clear()


def test_the_cli_leaves_no_half_bundle(
    engine: Engine,
    world: dict[str, object],  # noqa: F811
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    store, _ = _stored(engine, tmp_path / "data" / "images")
    # GIVEN a photo the store refuses to read (a link out of its folder), after a good one
    with transaction(engine) as s:
        key = s.query(Image).order_by(Image.created_at.desc()).first().object_key  # type: ignore[union-attr]
    store.delete(key)
    (tmp_path / "secret").write_bytes(b"not a photo")
    (tmp_path / "data" / "images" / key).symlink_to(tmp_path / "secret")
    out = tmp_path / "coco.zip"
    out.write_bytes(b"an older bundle")
    # WHEN the CLI writes a bundle and fails on it
    code = export_cli.main(["--format", "coco", "--bundle", "--out", str(out)])
    # THEN it says so, and neither a half zip nor a part file is left; the older file is untouched
    assert code == 1 and "error:" in capsys.readouterr().err
    assert out.read_bytes() == b"an older bundle"
    assert sorted(p.name for p in tmp_path.iterdir() if "coco" in p.name) == ["coco.zip"]
    get_settings.cache_clear()


def test_bundle_names_are_never_windows_device_names() -> None:
    from tests.unit.test_box_writers import _entries

    entries = _entries(0)[:7]
    given = ["CON.jpg", "nul.jpeg", "COM1.png", "lpt9 .jpg", "Aux.tar.jpg", "_CON.jpg", "CONSOLE.jpg"]
    for e, name in zip(entries, given, strict=True):
        e.image.original_name = name
    # WHEN bundle names are made for photos uploaded under device names
    names = [n.removeprefix("images/") for n in interchange.bundle_names(entries).values()]
    # THEN each gets a "_" in front (still unique, case aside), and other names are kept
    assert [n.rsplit(".", 1)[0] for n in names] == [
        "_CON",
        "_nul",
        "_COM1",
        "_lpt9",
        "_Aux.tar",
        "_CON-2",
        "CONSOLE",
    ]
