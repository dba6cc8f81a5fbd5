"""People (issue 29): faces grouped into persons, named once, found everywhere; one person's
people are nobody else's; a photo's faces go with it.

Real faces and real descriptors: photos go through ``labelkit upload --label`` (the product's
own intake, worker, face detector and face descriptor). The astronaut and the cameraman are the
portraits scikit-image ships; the astronaut is also uploaded mirrored, cropped and darkened,
as a second, third and fourth photo of the same person.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image

from labelkit import people, relabel, upload
from labelkit import people_cli as cli
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.models import FaceClusterRun, FaceRow, LabelRow, LabelSource
from labelkit.db.queries import images as image_q
from labelkit.db.queries import people as people_q
from labelkit.domain import Viewer
from labelkit.errors import NotFound
from labelkit.interchange import gather
from labelkit.interchange.options import ExportOptions
from labelkit.search import __main__ as search_cli
from labelkit.services import build_services
from labelkit.settings import Settings

pytestmark = pytest.mark.model

PASSWORD = "correct horse battery staple 9"


def _jpeg(pixels: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    image = Image.fromarray(pixels)
    if size is not None:
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def album(env: Settings, tmp_path: Path) -> dict[str, str]:
    """alice's photos, labelled: four of the astronaut, the cameraman, and a cup of coffee."""
    engine = build_services(env).engine
    LocalAuth(engine).sign_up("alice", PASSWORD)
    LocalAuth(engine).sign_up("bob", PASSWORD)
    astronaut = skimage.data.astronaut()
    folder = tmp_path / "album"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(_jpeg(astronaut))
    (folder / "mirrored.jpg").write_bytes(_jpeg(astronaut[:, ::-1], (700, 700)))
    (folder / "cropped.jpg").write_bytes(_jpeg(astronaut[20:400, 60:480], (800, 724)))
    (folder / "darker.jpg").write_bytes(_jpeg((astronaut * 0.6).astype(np.uint8)))
    (folder / "cameraman.jpg").write_bytes(_jpeg(np.stack([skimage.data.camera()] * 3, axis=-1)))
    (folder / "coffee.jpg").write_bytes(_jpeg(skimage.data.coffee()))
    assert upload.main([str(folder), "--user", "alice", "--label", "--quiet"]) == 0
    with transaction(engine) as s:
        viewer = _viewer(env, "alice")
        page = image_q.list_images(session=s, viewer=viewer, page_size=100)
    return {i.original_name: i.id for i in page.items}


def _viewer(env: Settings, user: str) -> Viewer:
    return LocalAuth(build_services(env).engine).sign_in(user, PASSWORD).viewer


def _people(capsys: pytest.CaptureFixture[str], user: str = "alice", *extra: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert cli.main(["--user", user, "--json", *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _photos_of(record: dict[str, Any]) -> set[str]:
    return {f["original_name"] for f in record["faces"]}


def _person_labels(env: Settings) -> dict[str, set[str]]:
    """{label name: image ids} of the ``Person: <name>`` labels."""
    out: dict[str, set[str]] = {}
    with transaction(build_services(env).engine) as s:
        for row in s.query(LabelRow).filter(
            LabelRow.source == LabelSource.HUMAN, LabelRow.name.like("Person: %")
        ):
            out.setdefault(row.name, set()).add(row.image_id)
    return out


def _search(capsys: pytest.CaptureFixture[str], query: str, user: str = "alice") -> set[str]:
    capsys.readouterr()
    assert search_cli.main([query, "--user", user, "--json"]) == 0
    return {json.loads(line)["id"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")}


def test_photos_of_one_person_are_grouped_and_named_once(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN four photos of the astronaut and one of the cameraman, uploaded and labelled
    records = _people(capsys)
    # THEN the astronaut's four photos are one person, the cameraman another; the coffee no one
    groups = sorted((_photos_of(r) for r in records), key=len, reverse=True)
    assert groups == [{"astronaut.jpg", "mirrored.jpg", "cropped.jpg", "darker.jpg"}, {"cameraman.jpg"}]
    assert all(r["name"] is None for r in records)
    first = records[0]["faces"][0]
    assert set(records[0]) == {"person_id", "name", "faces"}
    assert set(first) == {"image_id", "original_name", "box"} and set(first["box"]) == {
        "left",
        "top",
        "width",
        "height",
    }
    assert 0 < first["box"]["width"] < 1 and first["image_id"] == album[first["original_name"]]

    # WHEN alice names the astronaut once
    eileen = next(r["person_id"] for r in records if len(r["faces"]) == 4)
    assert cli.main(["--user", "alice", "--name", eileen, "Eileen Collins"]) == 0
    # THEN every photo of her carries "Person: Eileen Collins", and search finds them by name
    four = {album[n] for n in ("astronaut.jpg", "mirrored.jpg", "cropped.jpg", "darker.jpg")}
    assert _person_labels(env) == {"Person: Eileen Collins": four}
    assert _search(capsys, "eileen") == four
    assert _search(capsys, "person:eileen") == four
    assert next(r for r in _people(capsys) if r["person_id"] == eileen)["name"] == "Eileen Collins"


def test_split_merge_recluster_and_delete_keep_names_in_step(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = build_services(env).engine
    alice = _viewer(env, "alice").user_id
    records = _people(capsys)
    eileen = next(r["person_id"] for r in records if len(r["faces"]) == 4)
    cameraman = next(r["person_id"] for r in records if len(r["faces"]) == 1)
    with transaction(engine) as s:
        people.name_person(s, owner_id=alice, person_id=eileen, name="Eileen")
        mirrored_face = next(
            f.id
            for f in people_q.person_faces(session=s, owner_id=alice, person_id=eileen)
            if f.image_id == album["mirrored.jpg"]
        )
    # WHEN alice says the mirrored photo's face is "not Eileen"
    with transaction(engine) as s:
        alone = people.split_face(s, owner_id=alice, face_id=mirrored_face)
    # THEN it is a person of its own and the mirrored photo loses the name
    assert album["mirrored.jpg"] not in _person_labels(env)["Person: Eileen"]
    assert len(_person_labels(env)["Person: Eileen"]) == 3
    # ... and a re-cluster does not put it back with Eileen
    assert cli.main(["--user", "alice", "--recluster"]) == 0
    records = {r["person_id"]: r for r in _people(capsys)}
    assert album["mirrored.jpg"] not in {f["image_id"] for f in records[eileen]["faces"]}
    assert len(records[eileen]["faces"]) == 3 and records[eileen]["name"] == "Eileen"
    # WHEN she merges it back (undoing the split)
    with transaction(engine) as s:
        people.merge(s, owner_id=alice, keep_id=eileen, other_id=alone)
    # THEN Eileen has four photos again, all named
    assert len(_person_labels(env)["Person: Eileen"]) == 4
    assert len(_people(capsys)) == 2
    # WHEN one of her photos is deleted
    with transaction(engine) as s:
        image_q.delete_image(session=s, viewer=_viewer(env, "alice"), image_id=album["darker.jpg"])
    # THEN its face goes with it
    with transaction(engine) as s:
        assert not s.query(FaceRow).filter(FaceRow.image_id == album["darker.jpg"]).count()
    assert len(_person_labels(env)["Person: Eileen"]) == 3
    # WHEN the cameraman's only photo is deleted, he is gone too
    with transaction(engine) as s:
        image_q.delete_image(session=s, viewer=_viewer(env, "alice"), image_id=album["cameraman.jpg"])
    assert cameraman not in {r["person_id"] for r in _people(capsys)}


def test_nobody_else_sees_or_changes_someone_s_people(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = build_services(env).engine
    bob = _viewer(env, "bob").user_id
    eileen = next(r["person_id"] for r in _people(capsys) if len(r["faces"]) == 4)
    # bob has no people, and cannot name, hide, merge, split or remove alice's
    assert _people(capsys, "bob") == []
    with transaction(engine) as s:
        face = people_q.person_faces(session=s, owner_id=_viewer(env, "alice").user_id, person_id=eileen)[0]
    for attempt in (
        lambda s: people.name_person(s, owner_id=bob, person_id=eileen, name="Mallory"),
        lambda s: people.hide_person(s, owner_id=bob, person_id=eileen, hidden=True),
        lambda s: people.remove_person(s, owner_id=bob, person_id=eileen),
        lambda s: people.split_face(s, owner_id=bob, face_id=face.id),
    ):
        with pytest.raises(NotFound), transaction(engine) as s:
            attempt(s)
    assert cli.main(["--user", "bob", "--name", eileen, "Mallory"]) == 2
    assert _person_labels(env) == {}
    assert _search(capsys, "astronaut", user="bob") == set()


def test_turning_grouping_off_deletes_the_face_data(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = build_services(env).engine
    alice = _viewer(env, "alice").user_id
    eileen = next(r["person_id"] for r in _people(capsys) if len(r["faces"]) == 4)
    with transaction(engine) as s:
        people.name_person(s, owner_id=alice, person_id=eileen, name="Eileen")
    # WHEN alice turns face grouping off for herself
    with transaction(engine) as s:
        people.set_grouping(s, owner_id=alice, on=False, by=alice)
    # THEN her faces, people and the names on her photos are gone
    with transaction(engine) as s:
        assert not s.query(FaceRow).filter(FaceRow.owner_id == alice).count()
    assert _people(capsys) == [] and _person_labels(env) == {}
    # ... and a new photo of a face is not grouped
    folder = Path("more")
    folder.mkdir()
    (folder / "again.jpg").write_bytes(_jpeg(skimage.data.astronaut(), (600, 600)))
    assert upload.main([str(folder), "--user", "alice", "--label", "--quiet"]) == 0
    assert _people(capsys) == []


def test_the_worker_reclusters_once_faces_stop_coming_and_exports_leave_names_out(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine = build_services(env).engine
    alice = _viewer(env, "alice")
    # `labelkit upload --label` re-clustered once it had labelled: nothing left to do
    assert people.recluster_changed(engine, quiet_seconds=0) == 0
    # Faces the worker grouped and nobody re-clustered yet (as a listener leaves them):
    with transaction(engine) as s:
        s.query(FaceClusterRun).delete()
    # ... it waits for a quiet moment before re-clustering (the faces just arrived)
    assert people.recluster_changed(engine, quiet_seconds=3600) == 0
    assert people.recluster_changed(engine, quiet_seconds=0) == 1
    # ... and does not again until they change
    assert people.recluster_changed(engine, quiet_seconds=0) == 0
    eileen = next(r["person_id"] for r in _people(capsys) if len(r["faces"]) == 4)
    with transaction(engine) as s:
        people.name_person(s, owner_id=alice.user_id, person_id=eileen, name="Eileen")
    # Exports leave people's names out unless asked for (personal data)
    with transaction(engine) as s:
        plain = gather.collect(session=s, viewer=alice)
        named = gather.collect(session=s, viewer=alice, options=ExportOptions(people=True))
    assert not {lab.name for e in plain for lab in e.labels} & {"Person: Eileen"}
    assert sum(lab.name == "Person: Eileen" for e in named for lab in e.labels) == 4


def test_photos_labelled_before_grouping_are_grouped_by_relabel_missing_features(
    env: Settings, album: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN alice's photos as they were before faces were grouped: face boxes, no faces stored
    engine = build_services(env).engine
    with transaction(engine) as s:
        people_q.delete_owner_people(session=s, owner_id=_viewer(env, "alice").user_id)
    assert _people(capsys) == []
    # WHEN the photos missing features are labelled again
    capsys.readouterr()
    assert relabel.main(["--missing-features"]) == 0
    # THEN the five photos with a face are (not the coffee) and grouped as a new upload's are
    assert "relabelled 5 of 5 images" in capsys.readouterr().out
    assert sorted(len(r["faces"]) for r in _people(capsys)) == [1, 4]
    # ... and a second run finds nothing left to do
    assert relabel.main(["--missing-features"]) == 0
    assert "relabelled 0 of 0 images" in capsys.readouterr().out
