"""Authorization matrix: two users (alice, bob) and an admin.

* Every public function of every module of ``labelkit.db.queries`` (and of
  ``labelkit.compare``) that takes a ``viewer`` (found with ``inspect``, so a new one without
  a case here fails) called by bob with alice's image id,
  key, label names and model versions is refused (``NotFound``) or gives exactly what it
  gives once alice's image no longer exists: "another user's id behaves like a missing id".
* Every use case of ``labelkit.uploads`` that takes a ``viewer`` likewise, changing nothing.
* Object keys cannot be guessed: ``users/{owner}/{uuid4 hex}{ext}``, never from the file
  name; ``LocalStore`` refuses every escape.
* File names and label names with HTML are shown as text on the gallery, image, labels and
  review pages (no element renders user data as HTML).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

import labelkit.db.queries
from labelkit import compare, people, uploads
from labelkit.auth import Principal
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import transaction
from labelkit.db.models import (
    Base,
    ImageFeatureRow,
    ImageStatus,
    LabelRow,
    ReviewState,
    TermKind,
    new_id,
    utcnow,
)
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import people as people_q
from labelkit.db.queries import search as search_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import (
    BoundingBox,
    FaceVector,
    ImageFeatures,
    Label,
    LabelResult,
    ModerationLabel,
    TextDetection,
    Viewer,
)
from labelkit.errors import NotFound, StorageError
from labelkit.features import embedding
from labelkit.services import Services
from labelkit.storage.local import LocalStore
from tests.dashboard.conftest import BLUE, GREEN, RED, app, jpeg, texts, upload

PASSWORD = "correct horse battery"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
SCRIPT_NAME = "<script>alert(1).jpg"
ALICE_LABEL, ALICE_PARENT, ALICE_V1, ALICE_V2 = (
    "AliceOnlyLabel",
    "AliceParent",
    "alice-model-1",
    "alice-model-2",
)
BOB_VERSION = "bob-model-1+bob-model-2"
BOX = BoundingBox(left=0.1, top=0.1, width=0.5, height=0.1)
PHASHES = {"Alice": "a11ce0000000a11c", "Bob": "b0b0000000000b0b"}


def _viewer_functions(module: Any) -> dict[str, Callable[..., Any]]:
    return {
        name: fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__
        and not name.startswith("_")
        and "viewer" in inspect.signature(fn).parameters
    }


QUERY_MODULES = [
    importlib.import_module(f"labelkit.db.queries.{m.name}")
    for m in pkgutil.iter_modules(labelkit.db.queries.__path__)
] + [compare]
_FOUND = [(name, fn) for module in QUERY_MODULES for name, fn in _viewer_functions(module).items()]
QUERY_FUNCTIONS = dict(_FOUND)
USE_CASES = _viewer_functions(uploads)


@dataclasses.dataclass
class World:
    admin: Principal
    alice: Principal
    bob: Principal
    alice_image: str
    alice_key: str
    bob_image: str


def _label(name: str, conf: float, parents: list[str] | None = None) -> Label:
    return Label(name=name, confidence=conf, parents=parents or [], categories=["AliceCategory"])


@pytest.fixture
def world(services: Services, auth: LocalAuth) -> World:
    admin = auth.sign_up("admin", PASSWORD)  # the first account is the admin
    alice = auth.sign_up("alice", PASSWORD)
    bob = auth.sign_up("bob", PASSWORD)
    alice_image = upload(services, alice, "alice-secret.jpg", RED)
    bob_image = upload(services, bob, "bob.jpg", BLUE)
    with transaction(services.engine) as s:
        for image_id, prefix in ((alice_image, "Alice"), (bob_image, "Bob")):
            for version in (f"{prefix.lower()}-model-1", f"{prefix.lower()}-model-2"):
                labels = [
                    _label(f"{prefix}OnlyLabel", 61.0, [f"{prefix}Parent"]),
                    _label(f"{prefix}Other", 57.0),
                ]
                # the current version also read a word (alice's: her label's name) and flagged it
                first = version.endswith("-2")
                text = [
                    TextDetection(text=f"{prefix}OnlyLabel", type="LINE", id=0, confidence=90, box=BOX),
                    TextDetection(
                        text=f"{prefix}OnlyLabel", type="WORD", id=1, parent_id=0, confidence=90, box=BOX
                    ),
                ]
                result = LabelResult(
                    labels=labels,
                    model_version=version,
                    text=text if first else None,
                    moderation=[ModerationLabel(name="Explicit", confidence=95.0)] if first else None,
                )
                worker_q.save_model_labels(session=s, image_id=image_id, result=result)
            worker_q.mark_labelled(
                session=s,
                image_id=image_id,
                model_version=f"{prefix.lower()}-model-1+{prefix.lower()}-model-2",
                properties={"sharpness": 50.0},
            )
            # the features the worker stores with the labels: hash, embedding, thumbnail
            worker_q.save_features(
                session=s,
                image_id=image_id,
                features=ImageFeatures(
                    phash=PHASHES[prefix],
                    embedding=embedding.pack(np.full(8, 1.0 if prefix == "Alice" else -1.0)),
                    embedding_model="matrix-embedding",
                ),
                thumb_key=f"thumbs/{prefix.lower()}-thumb.jpg",
            )
        alice_key = image_q.get_image(session=s, viewer=alice.viewer, image_id=alice_image).object_key
        label_q.set_human_label(
            session=s,
            viewer=alice.viewer,
            image_id=alice_image,
            name="AliceHuman",
            review=ReviewState.CONFIRMED,
        )
    return World(admin, alice, bob, alice_image, alice_key, bob_image)


def _arguments(fn: Callable[..., Any], w: World, viewer: Viewer) -> dict[str, Any]:
    """Arguments aimed at alice's data, by parameter name. A required parameter not known
    here fails the test: a new function needs a deliberate case."""
    known: dict[str, Any] = {
        "viewer": viewer,
        "image_id": w.alice_image,
        "image_ids": [w.alice_image],
        "keys": [w.alice_key],
        "term": ALICE_LABEL,
        "names": [ALICE_LABEL, ALICE_PARENT, "AliceOther"],
        "name": ALICE_LABEL,
        "review": ReviewState.CONFIRMED,
        "since": utcnow() - timedelta(days=30),
        "kind": TermKind.LABEL,
        "version_a": ALICE_V1,
        "version_b": ALICE_V2,
        # the configuration bob's image was labelled with: only alice's image is outdated
        "model_version": BOB_VERSION,
        "flt": image_q.ImageFilter(label=ALICE_LABEL, owner_id=w.alice.user_id),
        # duplicates: alice's folder of hashes, her hash; search: her label, ranked elsewhere
        "owner_id": w.alice.user_id,
        "phash": PHASHES["Alice"],
        "exclude": "",
        "include": [[search_q.TermRef(kind=TermKind.LABEL, term=ALICE_LABEL)]],
        "ranked": [(w.alice_image, 90.0)],
        "why": "looks like alice-secret.jpg",
        "thumb_key": "thumbs/late-thumb.jpg",
        "labels": [label_q.HumanLabel(ALICE_LABEL, ReviewState.CONFIRMED)],
        "terms": [ALICE_LABEL],  # her label, and a word read in her photo
    }
    args: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in ("session", "services"):
            continue
        if name in known:
            args[name] = known[name]
        elif param.default is inspect.Parameter.empty:
            pytest.fail(f"{fn.__name__}: no test value for required parameter {name!r}; add one")
    return args


def _norm(x: Any) -> Any:
    """A comparable, session-independent form of a result (ORM rows by their columns)."""
    if isinstance(x, Base):
        attrs = sa_inspect(x).mapper.column_attrs
        return (type(x).__name__, tuple((a.key, _norm(getattr(x, a.key))) for a in attrs))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, tuple((f.name, _norm(getattr(x, f.name))) for f in dataclasses.fields(x)))
    if isinstance(x, dict):
        return ("dict", sorted(((_norm(k), _norm(v)) for k, v in x.items()), key=repr))
    if isinstance(x, list | tuple):
        return [_norm(v) for v in x]
    if isinstance(x, set | frozenset):
        return sorted((_norm(v) for v in x), key=repr)
    return x


def _call(services: Services, fn: Callable[..., Any], args: dict[str, Any], *, dry: bool = False) -> Any:
    """``fn``'s answer, normalised, or "NotFound"; ``dry`` rolls its writes back."""
    try:
        if dry:
            with Session(services.engine) as s:
                try:
                    return _norm(fn(session=s, **args))
                finally:
                    s.rollback()
        with transaction(services.engine) as s:
            return _norm(fn(session=s, **args))
    except NotFound:
        return "NotFound"


def _alice_markers(w: World) -> list[str]:
    return [
        w.alice_image,
        w.alice_key,
        w.alice.user_id,
        "alice-secret",
        ALICE_LABEL,
        ALICE_PARENT,
        "AliceOther",
        "AliceHuman",
        ALICE_V1,
        ALICE_V2,
    ]


def test_every_viewer_function_is_covered() -> None:
    # GIVEN the queries' and the use cases' person-facing functions, found by inspection
    # THEN there are as many as we know of (a new one shows up in the parametrised tests below)
    assert len(_FOUND) == len(QUERY_FUNCTIONS), "two query modules define the same name"
    assert len(QUERY_FUNCTIONS) >= 38, sorted(QUERY_FUNCTIONS)
    # every query module that acts for a person was inspected
    assert {fn.__module__ for fn in QUERY_FUNCTIONS.values()} >= {
        f"labelkit.db.queries.{m}" for m in ("images", "labels", "reviews", "stats", "bulk")
    } | {"labelkit.compare"}
    # the per-photo review and the Labels page's activity range (issue 16) are among them
    assert {
        "count_review_images",
        "review_images",
        "review_image_ids",
        "set_review_for_images",
        "activity_span",
        "activity_per_hour",
    } <= set(QUERY_FUNCTIONS)
    assert set(USE_CASES) == {
        "retry_image",
        "delete_image",
        "delete_images",
        "delete_copies",
        "relabel_outdated",
    }, sorted(USE_CASES)


# Functions whose answer for alice does not depend on this one labelled image (she has no
# failed images); bob's side of the matrix is still checked for them.
_NOT_ABOUT_A_LABELLED_IMAGE = {"failed_images"}
# A person's own folder of duplicates is theirs whatever it holds (an admin's list changes).
_THE_VIEWER_THEMSELVES = {"owners_with_hashes"}
# Functions that record what the worker did not store: alice's thumbnail is not recorded yet.
_BEFORE = {"record_thumb_key": lambda s: s.execute(update(ImageFeatureRow).values(thumb_key=None))}


@pytest.mark.parametrize("name", sorted(QUERY_FUNCTIONS))
def test_query_function_refuses_or_hides_other_users_data(
    services: Services, world: World, name: str
) -> None:
    fn = QUERY_FUNCTIONS[name]
    writes = name.startswith(("delete_", "set_", "reset_", "mark_"))
    if name in _BEFORE:
        with transaction(services.engine) as s:
            _BEFORE[name](s)
    # GIVEN alice's labelled image, and bob who has his own; the call reaches alice's data
    # for alice and for the admin (else the matrix would prove nothing)
    answers = {
        who.username: _call(services, fn, _arguments(fn, world, who.viewer), dry=True)
        for who in (world.alice, world.admin)
    }
    assert "NotFound" not in answers.values(), (name, answers)
    # WHEN bob calls the function with alice's ids, key, label names and model versions
    as_bob = _call(services, fn, _arguments(fn, world, world.bob.viewer))
    # THEN nothing of alice's appears in the answer ...
    echoed = {ALICE_V1, ALICE_V2} if "version_a" in inspect.signature(fn).parameters else set()
    for marker in set(_alice_markers(world)) - echoed:  # (the versions asked about are echoed back)
        assert marker not in repr(as_bob), f"{name} leaked {marker!r} to bob: {as_bob!r}"
    if "image_id" in inspect.signature(fn).parameters:
        assert as_bob == "NotFound", f"{name} did not refuse bob: {as_bob!r}"
    # ... and it is exactly the answer he gets once alice's image does not exist at all,
    # while alice's and the admin's answers change
    with transaction(services.engine) as s:
        image_q.delete_image(session=s, viewer=world.admin.viewer, image_id=world.alice_image)
    assert _call(services, fn, _arguments(fn, world, world.bob.viewer)) == as_bob, name
    if writes or name in _NOT_ABOUT_A_LABELLED_IMAGE:
        return
    for who in (world.alice, world.admin):
        if who is world.alice and name in _THE_VIEWER_THEMSELVES:
            continue
        gone = _call(services, fn, _arguments(fn, world, who.viewer))
        assert gone != answers[who.username], f"{name}: {who.username} gets the same without alice's image"


def _alice_footprint(services: Services, world: World) -> tuple[Any, bool, int]:
    """Alice's image row, whether its object exists, and how many labels it has."""
    with transaction(services.engine) as s:
        img = _norm(image_q.get_image(session=s, viewer=world.alice.viewer, image_id=world.alice_image))
        labels = len(
            label_q.labels_for_image(session=s, viewer=world.alice.viewer, image_id=world.alice_image)
        )
    return img, services.store.exists(world.alice_key), labels


IMAGE_USE_CASES = {n: fn for n, fn in USE_CASES.items() if "image_id" in inspect.signature(fn).parameters}


@pytest.mark.parametrize("name", sorted(IMAGE_USE_CASES))
def test_use_case_with_other_users_image_is_refused_and_changes_nothing(
    services: Services, world: World, name: str
) -> None:
    # GIVEN alice's image, failed, with its message on the dead-letter queue
    with transaction(services.engine) as s:
        worker_q.mark_failed(session=s, image_id=world.alice_image, reason="boom")
    before, queued = _alice_footprint(services, world), services.queue.stats()
    # WHEN bob runs the use case with alice's image id
    with pytest.raises(NotFound):
        IMAGE_USE_CASES[name](services=services, viewer=world.bob.viewer, image_id=world.alice_image)
    # THEN her row, labels, object and queue entries are untouched
    assert _alice_footprint(services, world) == before
    assert services.queue.stats() == queued


def test_bulk_delete_deletes_only_the_viewers_images(services: Services, world: World) -> None:
    # GIVEN alice's image and bob's, each with its object and stored thumbnail
    before = _alice_footprint(services, world)
    # WHEN bob bulk-deletes alice's image together with his own (the Duplicates page's call)
    deleted = uploads.delete_images(
        services=services, viewer=world.bob.viewer, image_ids=[world.alice_image, world.bob_image]
    )
    # THEN only his went; alice's row, labels and object are untouched
    assert deleted == [world.bob_image]
    assert _alice_footprint(services, world) == before
    with transaction(services.engine) as s, pytest.raises(NotFound):
        image_q.get_image(session=s, viewer=world.bob.viewer, image_id=world.bob_image)


def test_deleting_copies_touches_only_the_viewers_images(services: Services, world: World) -> None:
    # GIVEN alice's labelled image and bob's
    before = _alice_footprint(services, world)
    # WHEN bob deletes alice's image as a copy of his, or his as a copy of hers, copying the
    # labels to the keeper first (the Duplicates page's call)
    for keepers in ({world.alice_image: world.bob_image}, {world.bob_image: world.alice_image}):
        result = uploads.delete_copies(
            services=services, viewer=world.bob.viewer, keepers=keepers, copy_labels=True
        )
        # THEN nothing is deleted or copied (his copy stays: its labels could not go to hers)
        assert result.deleted == [] and result.labels_copied == 0
    assert _alice_footprint(services, world) == before
    with transaction(services.engine) as s:
        assert image_q.get_image(session=s, viewer=world.bob.viewer, image_id=world.bob_image)


def test_relabelling_touches_only_the_viewers_images(services: Services, world: World) -> None:
    # GIVEN alice's and bob's labelled images; the pipeline's configuration is bob's
    def status(image_id: str) -> str:
        with transaction(services.engine) as s:
            return str(image_q.get_image(session=s, viewer=world.admin.viewer, image_id=image_id).status)

    queued = services.queue.stats()
    # WHEN bob relabels his outdated images
    n = uploads.relabel_outdated(services=services, viewer=world.bob.viewer, model_version=ALICE_V1)
    # THEN only his image went back to the queue; alice's, outdated too, is untouched
    assert n == 1
    assert status(world.bob_image) == str(ImageStatus.PENDING)
    assert status(world.alice_image) == str(ImageStatus.LABELLED)
    assert services.queue.stats().visible == queued.visible + 1
    # and alice's own call reaches hers
    assert uploads.relabel_outdated(services=services, viewer=world.alice.viewer, model_version=ALICE_V1) == 1
    assert status(world.alice_image) == str(ImageStatus.PENDING)


def test_object_keys_are_random_and_never_from_the_file_name(services: Services, world: World) -> None:
    # GIVEN uploads whose names try to reach bob's folder
    names = [f"../{world.bob.user_id}/x.jpg", f"users/{world.bob.user_id}/y.jpg", "..\\..\\z.jpg"]
    blobs = [jpeg((30 * i, 90, 140)) for i in range(len(names))]
    ids = [upload(services, world.alice, n, data) for n, data in zip(names, blobs, strict=True)]
    with transaction(services.engine) as s:
        keys = [image_q.get_image(session=s, viewer=world.alice.viewer, image_id=i).object_key for i in ids]
    # THEN every key is in alice's folder, named by a fresh random (uuid4) id
    for image_id, key in zip(ids, keys, strict=True):
        assert key == f"users/{world.alice.user_id}/{image_id}.jpg"
        assert re.fullmatch(r"[0-9a-f]{32}", image_id) and uuid.UUID(hex=image_id).version == 4
    ids_made = {new_id() for _ in range(10_000)}
    assert len(ids_made) == 10_000
    assert all(uuid.UUID(hex=i).version == 4 for i in list(ids_made)[:100])
    # user ids too: the folder name cannot be guessed from a username
    assert re.fullmatch(r"[0-9a-f]{32}", world.bob.user_id) and world.bob.username not in world.bob.user_id


@pytest.mark.parametrize(
    "key",
    [
        "../outside.jpg",
        "users/../../outside.jpg",
        "users/bob/../../../outside.jpg",
        "/etc/passwd",
        "users\\..\\..\\outside.jpg",
        "users/./bob/x.jpg",
        "users//x.jpg",
        "users/bob/x.jpg\x00.png",
        "",
        "users/bob/" + "a" * 1100,
    ],
)
def test_local_store_refuses_escapes(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "store")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for action in (
        lambda: store.put(key, b"x", content_type="image/jpeg"),
        lambda: store.get(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
    ):
        with pytest.raises(StorageError):
            action()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_local_store_refuses_a_symlink_out_of_the_store(tmp_path: Path) -> None:
    # GIVEN a user folder that is a symlink to somewhere outside the store
    store = LocalStore(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    (tmp_path / "store" / "users").mkdir(parents=True)
    os.symlink(outside, tmp_path / "store" / "users" / "mallory")
    # THEN neither reads nor writes go through it
    with pytest.raises(StorageError):
        store.get("users/mallory/secret.jpg")
    with pytest.raises(StorageError):
        store.put("users/mallory/new.jpg", b"x", content_type="image/jpeg")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.jpg"]


# --------------------------------------------------------------------------- HTML shown as text

_UNESCAPED_TAG = re.compile(r"(?<!\\)<\s*(script|img)", re.IGNORECASE)
# The dashboard's own scripts (folding the filters on a phone, scrolling to the current photo):
# fixed text marked data-labelkit, never built from anything a user typed (checked below).
_OWN_SCRIPT = re.compile(r"<script data-labelkit=\"[a-z-]+\"[^>]*>.*?</script>", re.DOTALL)


def _walk(at: AppTest) -> list[Any]:
    found: list[Any] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            found.append(child)
            walk(child)

    walk(at._tree)
    return found


def _assert_html_is_text(at: AppTest, must_show: list[str]) -> None:
    assert not at.exception, at.exception
    for el in _walk(at):
        proto = getattr(el, "proto", None)
        body = getattr(proto, "body", None)
        if isinstance(body, str):
            if getattr(proto, "allow_html", False):
                assert "alert(1)" not in body, f"user data in an HTML element: {body!r}"
            for own in _OWN_SCRIPT.findall(body):
                assert not any(m in own for m in ("alert(1)", "onerror", IMG)), f"user data in {own!r}"
            assert not _UNESCAPED_TAG.search(_OWN_SCRIPT.sub("", body)), (
                f"unescaped markup in {el.type}: {body!r}"
            )
    shown = texts(at) + "\n".join(str(d.value.to_dict()) for d in at.dataframe)
    for text in must_show:
        assert text in shown, f"{text!r} is not shown as text"


@pytest.fixture
def hostile(services: Services, auth: LocalAuth) -> tuple[Principal, list[str]]:
    carol = auth.sign_up("carol", PASSWORD)
    # ("/" separates folders in a file name, so a closing tag cannot be part of one)
    ids = [upload(services, carol, SCRIPT_NAME, RED), upload(services, carol, f"{IMG}.jpg", GREEN)]
    with transaction(services.engine) as s:
        for image_id in ids:
            labels = [_label(SCRIPT, 60.0, [IMG]), _label(IMG, 58.0)]
            worker_q.save_model_labels(
                session=s, image_id=image_id, result=LabelResult(labels=labels, model_version="m1")
            )
            worker_q.mark_labelled(session=s, image_id=image_id, model_version="m1", properties=None)
            label_q.set_human_label(
                session=s,
                viewer=carol.viewer,
                image_id=image_id,
                name=f"human {IMG}",
                review=ReviewState.CONFIRMED,
            )
        assert s.scalars(select(LabelRow.name)).all()
    return carol, ids


def test_html_in_names_is_shown_as_text_on_every_page(
    services: Services, hostile: tuple[Principal, list[str]]
) -> None:
    carol, ids = hostile
    # WHEN carol opens the gallery, each image, the labels and the review pages
    # THEN the names are shown as text and no element renders them as HTML
    # (each card names the person's label: theirs at 100% outranks the model's guesses)
    _assert_html_is_text(app(carol, "app_pages/gallery.py"), [SCRIPT_NAME, f"{IMG}.jpg", f"human {IMG}"])
    for image_id in ids:
        _assert_html_is_text(app(carol, "app_pages/image.py", image=image_id), [SCRIPT, IMG, f"human {IMG}"])
    _assert_html_is_text(app(carol, "app_pages/labels.py"), [SCRIPT, IMG])
    _assert_html_is_text(app(carol, "app_pages/review.py"), [SCRIPT, IMG, SCRIPT_NAME])


# --- people (issue 29): faces and persons are one owner's ----------------------------------

#: Every use case of ``labelkit.people`` that names a person or a face, called by bob with
#: alice's ids (found with ``inspect``: a new one without a case here fails).
PEOPLE_CASES: dict[str, Callable[[Session, str, str, str], Any]] = {
    "name_person": lambda s, owner, person, face: people.name_person(
        s, owner_id=owner, person_id=person, name="Mallory"
    ),
    "hide_person": lambda s, owner, person, face: people.hide_person(
        s, owner_id=owner, person_id=person, hidden=True
    ),
    "merge": lambda s, owner, person, face: people.merge(
        s, owner_id=owner, keep_id=person, other_id=person + "x"
    ),
    "split_face": lambda s, owner, person, face: people.split_face(s, owner_id=owner, face_id=face),
    "remove_person": lambda s, owner, person, face: people.remove_person(s, owner_id=owner, person_id=person),
}


def _people_footprint(services: Services, owner: str) -> tuple[Any, ...]:
    with transaction(services.engine) as s:
        return (
            people_q.listing(session=s, owner_id=owner),
            [(p.id, p.name, p.hidden) for p in people_q.people_of(session=s, owner_id=owner)],
            sorted(
                r.name
                for r in s.scalars(select(LabelRow).where(LabelRow.model_version == people_q.PERSON_LABELS))
            ),
        )


def test_every_people_use_case_naming_a_person_or_face_is_covered() -> None:
    named = {
        name
        for name, fn in inspect.getmembers(people, inspect.isfunction)
        if fn.__module__ == people.__name__
        and not name.startswith("_")
        and {"person_id", "face_id", "keep_id"} & set(inspect.signature(fn).parameters)
    }
    assert named == set(PEOPLE_CASES)


@pytest.mark.parametrize("name", sorted(PEOPLE_CASES))
def test_another_users_person_or_face_is_refused_and_changes_nothing(
    services: Services, world: World, name: str
) -> None:
    # GIVEN alice's photo with a face, grouped into a person she named
    vec = np.random.default_rng(5).standard_normal(128).astype("<f4").tobytes()
    features = ImageFeatures(faces=(FaceVector(box=BOX, descriptor=vec),), face_model="test-model")
    alice = world.alice.user_id
    with transaction(services.engine) as s:
        people.add_faces(s, image_id=world.alice_image, owner_id=alice, features=features)
        ((face, _),) = people_q.image_faces(session=s, owner_id=alice, image_id=world.alice_image)
        assert face.person_id is not None
        people.name_person(s, owner_id=alice, person_id=face.person_id, name="Alice's Grandma")
    before = _people_footprint(services, alice)
    # WHEN bob acts on her person or face by id
    with pytest.raises(NotFound), transaction(services.engine) as s:
        PEOPLE_CASES[name](s, world.bob.user_id, face.person_id, face.id)
    # THEN he is told it does not exist, and nothing of hers changed
    assert _people_footprint(services, alice) == before
    with transaction(services.engine) as s:
        assert people_q.listing(session=s, owner_id=world.bob.user_id) == []
        assert people_q.image_faces(session=s, owner_id=world.bob.user_id, image_id=world.alice_image) == []
