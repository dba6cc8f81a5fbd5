"""Compare mode: two labellers on the same images, their agreement and cost, on SQLite and MariaDB.

The two labellers are scripted (different model versions and label sets, as the
local model and Rekognition name things differently), run through the real
``Pipeline`` so each image carries both model versions as in production.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy.engine import Engine

from labelkit import analytics, compare
from labelkit.db.engine import transaction
from labelkit.db.queries import images as image_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.domain import Label, LabelResult, Viewer
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.pipeline import Pipeline
from labelkit.queue.events import make_s3_event
from labelkit.settings import get_settings
from labelkit.storage.local import LocalStore
from tests.dashboard.conftest import BLUE, GREEN, RED, app, elements, texts

LOCAL, REKOGNITION = "efficientnet-lite2-test", "rekognition-3.0"


def _label(name: str, conf: float, parents: tuple[str, ...] = (), aliases: tuple[str, ...] = ()) -> Label:
    return Label(name=name, confidence=conf, parents=list(parents), aliases=list(aliases))


class ScriptedLabeler:
    """Answers from a script keyed by the image's sha256 (an image not in it gets no labels)."""

    def __init__(self, model_version: str, script: dict[bytes, list[Label]]) -> None:
        self._version = model_version
        self._script = {hashlib.sha256(k).hexdigest(): v for k, v in script.items()}

    @property
    def model_version(self) -> str:
        return self._version

    def label(self, image: ImageInput, options: LabelOptions) -> LabelResult:
        labels = self._script.get(hashlib.sha256(image.data).hexdigest(), [])
        return LabelResult(labels=labels, model_version=self._version)


LOCAL_LABELS = {
    RED: [_label("Cat", 90, ("Feline", "Mammal", "Animal")), _label("Animal", 95)],
    GREEN: [_label("Dog", 80, ("Canine", "Animal"))],
    BLUE: [_label("Cat", 70, ("Animal",))],
}
REKOGNITION_LABELS = {
    RED: [
        _label("Cat", 99, ("Mammal", "Animal")),
        _label("Kitten", 92, ("Cat", "Mammal", "Animal"), ("Kitty",)),
        _label("Mammal", 99, ("Animal",)),
        _label("Animal", 99),
    ],
    GREEN: [],  # Rekognition ran but found nothing above the threshold
    BLUE: [_label("Cat", 97, ("Animal",))],
}


class World:
    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.store = LocalStore(str(root / "images"))
        both = [ScriptedLabeler(LOCAL, LOCAL_LABELS), ScriptedLabeler(REKOGNITION, REKOGNITION_LABELS)]
        self.compare = self._pipeline(both)
        self.local_only = self._pipeline(both[:1])
        with transaction(engine) as s:
            self.alice = user_q.create_user(
                session=s, username="alice", password_hash=None, is_admin=False
            ).id
            self.bob = user_q.create_user(session=s, username="bob", password_hash=None, is_admin=False).id
            self.admin = user_q.create_user(session=s, username="root", password_hash=None, is_admin=True).id

    def _pipeline(self, labelers: list[ScriptedLabeler]) -> Pipeline:
        return Pipeline(
            engine=self.engine, store=self.store, labelers=labelers, options=LabelOptions(), max_receives=3
        )

    def add(self, owner: str, data: bytes, pipeline: Pipeline) -> str:
        with transaction(self.engine) as s:
            img = image_q.create_image(
                session=s,
                owner_id=owner,
                original_name="x.jpg",
                content_type="image/jpeg",
                extension=".jpg",
                size_bytes=len(data),
                width=96,
                height=64,
                sha256=hashlib.sha256(data).hexdigest(),
            )
            image_id, key = img.id, img.object_key
        self.store.put(key, data, content_type="image/jpeg")
        [outcome] = pipeline.handle_message(make_s3_event(bucket="local", key=key, size=len(data)))
        assert outcome.status == "labelled", outcome
        return image_id


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    w = World(engine, tmp_path)
    # alice: red (partial agreement), green (Rekognition found nothing), blue labelled by local only.
    w.red = w.add(w.alice, RED, w.compare)  # type: ignore[attr-defined]
    w.green = w.add(w.alice, GREEN, w.compare)  # type: ignore[attr-defined]
    w.add(w.alice, BLUE, w.local_only)
    # bob: blue, where both agree completely.
    w.add(w.bob, BLUE, w.compare)
    return w


def test_agreement_per_label_and_overall(world: World) -> None:
    with transaction(world.engine) as s:
        ag = compare.labeller_agreement(
            session=s, viewer=Viewer(world.alice), version_a=LOCAL, version_b=REKOGNITION
        )
    # red: local {cat, animal} (+ parents feline, mammal), Rekognition {cat, kitten, mammal, animal}:
    #      agreed {cat, animal, mammal (a parent of local's Cat)} of 4 -> 0.75
    # green: local {dog}, Rekognition nothing -> 0; blue (local only) is not compared.
    assert ag.images == 2
    assert ag.per_image == {world.red: 0.75, world.green: 0.0}  # type: ignore[attr-defined]
    assert ag.mean_jaccard == pytest.approx(0.375)
    by_name = {la.name: (la.a_images, la.b_images, la.both, la.either) for la in ag.labels}
    assert by_name == {
        "Cat": (1, 1, 1, 1),
        "Animal": (1, 1, 1, 1),
        "Mammal": (0, 1, 1, 1),  # only Rekognition labels it, but it is a parent of local's Cat
        "Kitten": (0, 1, 0, 1),  # local has no Kitten label, parent or alias
        "Dog": (1, 0, 0, 1),
    }
    df = analytics.agreement_frame(ag)
    assert list(df.columns) == analytics.AGREEMENT_COLUMNS
    assert dict(zip(df["label"], df["jaccard"], strict=True))["Kitten"] == 0.0
    hist = analytics.agreement_histogram(ag)
    assert hist["images"].sum() == 2 and hist["images"].iloc[0] == 1 and hist["images"].iloc[7] == 1


def test_agreement_is_scoped_by_viewer_and_symmetric(world: World) -> None:
    with transaction(world.engine) as s:
        bob = compare.labeller_agreement(
            session=s, viewer=Viewer(world.bob), version_a=LOCAL, version_b=REKOGNITION
        )
        admin = compare.labeller_agreement(
            session=s, viewer=Viewer(world.admin, is_admin=True), version_a=REKOGNITION, version_b=LOCAL
        )
        versions = stats_q.model_versions(session=s, viewer=Viewer(world.alice))
        counted = [
            stats_q.count_model_versions(session=s, viewer=v)
            for v in (Viewer(world.alice), Viewer(world.bob), Viewer(world.admin, is_admin=True))
        ]
    assert counted == [2, 2, 2]
    assert (bob.images, bob.mean_jaccard) == (1, 1.0)
    assert admin.images == 3 and admin.mean_jaccard == pytest.approx((0.75 + 0 + 1) / 3)
    # alice's images: local labelled red, green and blue; Rekognition labelled red and blue... of hers,
    # only red has Rekognition rows (green got none).
    assert [(v.model_version, v.images, v.labels) for v in versions] == [(LOCAL, 3, 4), (REKOGNITION, 1, 4)]


def test_cost_per_1000_images(world: World) -> None:
    with transaction(world.engine) as s:
        costs = analytics.model_version_costs(
            session=s, viewer=Viewer(world.admin, is_admin=True), price_per_1000=1.5
        )
    rows = {
        r.model_version: (r.labeller, r.images, r.cost_per_1000, r.cost_so_far) for r in costs.itertuples()
    }
    assert rows == {
        LOCAL: ("Local model", 4, 0.0, 0.0),
        REKOGNITION: ("Amazon Rekognition", 2, 1.5, 0.003),
    }


@pytest.fixture
def dashboard_env(
    world: World, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for name, value in {
        "LABELKIT_DATA_DIR": str(tmp_path),
        "LABELKIT_DATABASE_URL": db_url,
        "LABELKIT_LABELER": "local,rekognition",
        "LABELKIT_REKOGNITION_PRICE_PER_1000": "1.25",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def test_compare_page_and_image_page_render(world: World, dashboard_env: None) -> None:
    from labelkit.auth import Principal

    alice = Principal(user_id=world.alice, username="alice")
    at = app(alice, "app_pages/compare.py")
    assert not at.exception
    shown = texts(at)
    assert "Compare labellers" in shown and "a parent or an alias" in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images labelled by both"] == "2"
    assert metrics["Overall agreement"] == "38%"
    assert metrics["A: cost per 1,000 images"] == "$0.00"
    assert metrics["B: cost per 1,000 images"] == "$1.25"
    assert len(elements(at, "vega_lite_chart")) == 2  # agreement per label and per image
    table = at.dataframe[0].value
    assert set(table["label"]) == {"Cat", "Animal", "Mammal", "Kitten", "Dog"}

    # The image page shows both labellers side by side.
    at = app(alice, "app_pages/image.py", image=world.red)  # type: ignore[attr-defined]
    assert not at.exception
    shown = texts(at)
    assert LOCAL in shown and REKOGNITION in shown and "Kitten · 92%" in shown


def test_compare_page_is_offered_only_with_two_model_versions(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelkit.auth import Principal

    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    with transaction(engine) as s:
        uid = user_q.create_user(session=s, username="solo", password_hash=None).id
    # One labeller (nothing labelled twice): navigation has no compare page.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app(Principal(user_id=uid, username="solo", is_admin=True), "app_pages/compare.py")
    st.cache_resource.clear()
    st.cache_data.clear()
