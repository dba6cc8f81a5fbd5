"""Relabelling (issue 14): a new labeller version replaces the old model labels of the same
labeller, keeps human reviews and other labellers' labels, and keeps the running totals
exact; labels of earlier versions stay readable until then. SQLite and MariaDB."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from labelkit.db import counts
from labelkit.db.engine import transaction
from labelkit.db.models import LabelSource, ReviewState, TermKind
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer
from labelkit.settings import Settings

OLD = "efficientnet-lite2-int8-onnx-1.1-rules1.aaaaaaaa"
NEW = "efficientnet-lite2-int8+det+face-f1.bbbbbbbb"
REK = "rekognition-3.0"


def _setup(engine: Engine) -> tuple[Viewer, str]:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username="alice", password_hash="x")
        viewer = Viewer(user_id=u.id, is_admin=u.is_admin)
        image = image_q.create_image(
            session=s,
            owner_id=u.id,
            original_name="a.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1000,
            width=64,
            height=48,
            sha256="0" * 64,
        )
        return viewer, image.id


def _result(version: str, *names: str) -> LabelResult:
    box = Instance(box=BoundingBox(left=0.1, top=0.1, width=0.3, height=0.3), confidence=80.0)
    return LabelResult(
        model_version=version,
        labels=[
            Label(name=n, confidence=80.0, parents=["Animal"], categories=["Animals"], instances=[box])
            for n in names
        ],
    )


def _rows(engine: Engine, viewer: Viewer, image_id: str) -> set[tuple[str, str, str]]:
    with transaction(engine) as s:
        return {
            (r.source.value, r.model_version, r.name)
            for r in label_q.labels_for_image(session=s, viewer=viewer, image_id=image_id)
            if r.instance == 0
        }


def _totals_exact(engine: Engine) -> None:
    with transaction(engine) as s:
        running = counts.dump(s)
        counts.rebuild(s)
        assert counts.dump(s) == running


def test_relabelling_replaces_old_model_labels_and_keeps_reviews(engine: Engine) -> None:
    viewer, image_id = _setup(engine)
    # GIVEN labels from an earlier local version and from Rekognition, and a human review
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(OLD, "Tabby", "Cat"))
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(REK, "Kitten"))
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=viewer, image_id=image_id, name="Tabby", review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=viewer, image_id=image_id, name="Cat", review=ReviewState.REJECTED
        )
    # the old labels are readable as they are
    assert ("model", OLD, "Tabby") in _rows(engine, viewer, image_id)
    _totals_exact(engine)

    # WHEN the new local labeller's result is written
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(NEW, "Cat", "Person"))

    # THEN the old local labels are gone, Rekognition's and the reviews stay
    rows = _rows(engine, viewer, image_id)
    assert not {r for r in rows if r[1] == OLD}
    assert {("model", NEW, "Cat"), ("model", NEW, "Person"), ("model", REK, "Kitten")} <= rows
    assert {("human", "", "Tabby"), ("human", "", "Cat")} <= rows
    with transaction(engine) as s:
        boxes = [
            r for r in label_q.labels_for_image(session=s, viewer=viewer, image_id=image_id) if r.instance > 0
        ]
        assert {r.model_version for r in boxes} == {NEW, REK}
        # terms follow: "Tabby" is still found (confirmed by a person), "Person" now too
        admin = Viewer(user_id="x", is_admin=True)
        assert stats_q.images_with_term_count(session=s, viewer=admin, term="Person") == 1
        assert stats_q.images_with_term_count(session=s, viewer=admin, term="Tabby") == 1
    _totals_exact(engine)

    # and writing the same result again changes nothing
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(NEW, "Cat", "Person"))
    assert _rows(engine, viewer, image_id) == rows
    _totals_exact(engine)


def test_outdated_images_are_found_and_marked_for_relabelling(engine: Engine) -> None:
    viewer, image_id = _setup(engine)
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(OLD, "Cat"))
        worker_q.mark_labelled(session=s, image_id=image_id, model_version=OLD, properties=None)
    with transaction(engine) as s:
        assert [i.id for i in worker_q.outdated_images_for_worker(session=s, model_version=NEW)] == [image_id]
        assert worker_q.outdated_images_for_worker(session=s, model_version=OLD) == []
        marked = image_q.mark_for_relabel(session=s, viewer=viewer, model_version=NEW)
    assert len(marked) == 1
    with transaction(engine) as s:
        image = image_q.get_image(session=s, viewer=viewer, image_id=image_id)
        assert image.status.value == "pending"
    assert ("model", OLD, "Cat") in _rows(engine, viewer, image_id)  # kept until replaced
    assert LabelSource.MODEL.value == "model" and TermKind.LABEL


def test_relabel_missing_features_backfills_photos_labelled_before_features(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A photo labelled before the worker stored features (no hash, thumbnail or embedding)
    is labelled by the current configuration, so a plain relabel leaves it alone;
    ``--missing-features`` labels it again and it gets them, and no other photo is touched."""
    import io

    from PIL import Image as PILImage
    from sqlalchemy import delete, select

    from labelkit import relabel
    from labelkit.db.models import Image, ImageFeatureRow
    from labelkit.services import build_services
    from labelkit.settings import get_settings
    from labelkit.uploads import upload_image
    from tests.dashboard.conftest import drain

    services = build_services(settings)
    with transaction(services.engine) as s:
        owner = user_q.create_user(session=s, username="alice", password_hash="x").id
    ids = []
    for colour in ("red", "blue"):
        buf = io.BytesIO()
        PILImage.new("RGB", (96, 64), colour).save(buf, format="JPEG")
        result = upload_image(
            services=services, owner_id=owner, filename=f"{colour}.jpg", data=buf.getvalue()
        )
        assert result.image_id, result
        ids.append(result.image_id)
    drain(services)
    old, kept = ids
    with transaction(services.engine) as s:
        before = {
            r.image_id: (r.phash, r.thumb_key, r.updated_at) for r in s.scalars(select(ImageFeatureRow))
        }
        assert set(before) == {old, kept} and before[old][0] and before[old][1]
        s.execute(delete(ImageFeatureRow).where(ImageFeatureRow.image_id == old))  # as before issue 18
    for name, value in (
        ("LABELKIT_DATA_DIR", str(settings.data_dir)),
        ("LABELKIT_DATABASE_URL", settings.database_url),
        ("LABELKIT_LABELER", "fake"),
    ):
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert relabel.main([]) == 0
        assert "relabelled 0 of 0" in capsys.readouterr().out  # same configuration: nothing to do
        assert relabel.main(["--missing-features"]) == 0
        assert "relabelled 1 of 1" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    with transaction(services.engine) as s:
        after = {r.image_id: (r.phash, r.thumb_key, r.updated_at) for r in s.scalars(select(ImageFeatureRow))}
        statuses = {i.id: i.status.value for i in s.scalars(select(Image))}
    assert after[old][:2] == before[old][:2]  # the same hash and thumbnail as the first time
    assert after[kept] == before[kept]  # untouched
    assert statuses == {old: "labelled", kept: "labelled"}
