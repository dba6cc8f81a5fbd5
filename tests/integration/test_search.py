"""Search that understands words (issue #18, item 1), on SQLite and MariaDB.

Rows are written through the product's own write paths (the worker's save_model_labels, a
person's set_human_label), so ``image_terms`` is what the product derives. Tests marked
``model`` use the real text model (exported by ``make model``); the others run with no model
(names, aliases, parents and categories need none).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from labelkit.db.engine import transaction
from labelkit.db.models import ReviewState
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import Label, LabelResult, Viewer
from labelkit.search import parse
from labelkit.search.service import Searcher, SearchResult
from labelkit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / Settings().resolved_model_dir

DOG = Label(
    name="Dog",
    confidence=91.0,
    parents=["Canine", "Pet", "Mammal", "Animal"],
    aliases=["Canine", "Puppy"],
    categories=["Animals and Pets"],
)
CAT = Label(
    name="Cat",
    confidence=84.0,
    parents=["Pet", "Mammal", "Animal"],
    aliases=["Kitten", "Kitty"],
    categories=["Animals and Pets"],
)
PERSON = Label(name="Person", confidence=88.0, aliases=["Human"], categories=["Person Description"])
BEACH = Label(name="Beach", confidence=70.0, parents=["Shoreline", "Nature"], aliases=["Seaside"])
CAR = Label(name="Car", confidence=77.0, parents=["Vehicle"], aliases=["Automobile"])


def _user(engine: Engine, name: str, *, admin: bool = False) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x", is_admin=admin)
        return Viewer(user_id=u.id, is_admin=admin)


def _photo(engine: Engine, owner: Viewer, name: str, *labels: Label) -> str:
    with transaction(engine) as s:
        img = image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name=f"{name}.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1000,
            width=640,
            height=480,
            sha256=(name.encode().hex() * 64)[:64],
        )
        result = LabelResult(model_version="local-1", labels=list(labels))
        worker_q.save_model_labels(session=s, image_id=img.id, result=result)
        worker_q.mark_labelled(session=s, image_id=img.id, model_version="local-1", properties=None)
        return img.id


@pytest.fixture
def plain(tmp_path: Path) -> Searcher:
    """A searcher with no text model: direct matches only."""
    return Searcher(tmp_path / "no-models")


@pytest.fixture(scope="session")
def with_model() -> Searcher:
    from labelkit.labelers.text_build import ensure_text_model

    ensure_text_model(MODEL_DIR)
    return Searcher(MODEL_DIR)


def _find(engine: Engine, searcher: Searcher, viewer: Viewer, text: str, **kw: object) -> SearchResult:
    with transaction(engine) as s:
        return searcher.search(session=s, viewer=viewer, text=text, **kw)  # type: ignore[arg-type]


def _names(result: SearchResult) -> list[str]:
    return [hit.image.original_name.removesuffix(".jpg") for hit in result.page.items]


@pytest.fixture
def album(engine: Engine) -> tuple[Viewer, Viewer]:
    """Alice: a dog on a beach, a cat, a dog and a cat, a person, a car. Bob: his own dog."""
    alice, bob = _user(engine, "alice"), _user(engine, "bob")
    _photo(engine, alice, "dog-beach", DOG, BEACH)
    _photo(engine, alice, "cat", CAT)
    _photo(engine, alice, "dog-cat", DOG.model_copy(update={"confidence": 60.0}), CAT)
    _photo(engine, alice, "person", PERSON)
    _photo(engine, alice, "car", CAR)
    _photo(engine, bob, "bobs-dog", DOG)
    return alice, bob


def test_and_not_or_and_case(engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]) -> None:
    alice, _ = album
    # AND: both words must match
    assert _names(_find(engine, plain, alice, "dog beach")) == ["dog-beach"]
    # NOT
    assert sorted(_names(_find(engine, plain, alice, "dog -cat"))) == ["dog-beach"]
    # OR, and OR binds tighter than AND
    assert sorted(_names(_find(engine, plain, alice, "dog | car"))) == ["car", "dog-beach", "dog-cat"]
    assert _names(_find(engine, plain, alice, "cat | car -dog")) == ["cat", "car"]
    assert _names(_find(engine, plain, alice, "beach | car dog")) == ["dog-beach"]
    # Case is ignored
    assert _names(_find(engine, plain, alice, "DoG BEACH")) == ["dog-beach"]


def test_aliases_parents_categories_and_why(
    engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, _ = album
    puppy = _find(engine, plain, alice, "Puppy")
    assert _names(puppy) == ["dog-beach", "dog-cat"]
    assert puppy.page.items[0].why == ["Dog, alias Puppy"]
    # A parent finds its children: "animal" finds the cats and dogs
    assert sorted(_names(_find(engine, plain, alice, "animal"))) == ["cat", "dog-beach", "dog-cat"]
    # A category
    assert sorted(_names(_find(engine, plain, alice, '"animals and pets" -dog'))) == ["cat"]
    # Words typed without syntax that together are a label or category are that one term
    assert sorted(_names(_find(engine, plain, alice, "Animals and  PETS"))) == ["cat", "dog-beach", "dog-cat"]
    # Plurals are the same word; "people" is the plural of person
    assert _names(_find(engine, plain, alice, "dogs")) == ["dog-beach", "dog-cat"]
    assert _names(_find(engine, plain, alice, "people")) == ["person"]
    assert _names(_find(engine, plain, alice, "automobile")) == ["car"]


def test_ranked_by_best_matching_confidence(
    engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, _ = album
    result = _find(engine, plain, alice, "dog")
    assert _names(result) == ["dog-beach", "dog-cat"]  # Dog 91 before Dog 60
    assert [h.score for h in result.page.items] == [91.0, 60.0]
    # the best matching term ranks: "dog | cat" puts dog-cat (Cat 84) above cat (84, older)?
    either = _find(engine, plain, alice, "dog | cat")
    assert _names(either)[0] == "dog-beach"
    assert [h.score for h in either.page.items] == sorted((h.score for h in either.page.items), reverse=True)


def test_rejected_labels_never_match(engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]) -> None:
    alice, _ = album
    dog_cat = next(
        h.image.id
        for h in _find(engine, plain, alice, "dog").page.items
        if h.image.original_name == "dog-cat.jpg"
    )
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog_cat, name="Dog", review=ReviewState.REJECTED
        )
    assert _names(_find(engine, plain, alice, "dog")) == ["dog-beach"]
    assert _names(_find(engine, plain, alice, "puppy")) == ["dog-beach"]
    # Its cat still matches, and a rejected "Animal" would hide it from "animal" too
    assert "dog-cat" in _names(_find(engine, plain, alice, "cat"))
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=dog_cat, name="Animal", review=ReviewState.REJECTED
        )
    assert "dog-cat" not in _names(_find(engine, plain, alice, "animal"))


def test_another_users_photos_never_match(
    engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, bob = album
    assert _names(_find(engine, plain, bob, "dog")) == ["bobs-dog"]
    assert "bobs-dog" not in _names(_find(engine, plain, alice, "dog | cat | car | person"))
    # An admin sees everyone's
    admin = _user(engine, "root", admin=True)
    assert sorted(_names(_find(engine, plain, admin, "dog"))) == ["bobs-dog", "dog-beach", "dog-cat"]


def test_combined_with_the_gallery_filter_and_paginated(
    engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, _ = album
    flt = image_q.ImageFilter(min_confidence=80)
    assert _names(_find(engine, plain, alice, "dog", flt=flt)) == ["dog-beach"]  # Dog 60 < 80
    first = _find(engine, plain, alice, "animal", page=1, page_size=2)
    second = _find(engine, plain, alice, "animal", page=2, page_size=2)
    assert first.page.total == 3 and first.page.pages == 2
    assert len(first.page.items) == 2 and len(second.page.items) == 1
    assert not {h.image.id for h in first.page.items} & {h.image.id for h in second.page.items}


def test_people_own_labels_match(engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]) -> None:
    alice, _ = album
    car = _find(engine, plain, alice, "car").page.items[0].image.id
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=car, name="Grandpa's Car", review=ReviewState.CONFIRMED
        )
    found = _find(engine, plain, alice, '"grandpa\'s car"')
    assert _names(found) == ["car"]


def test_nothing_found_suggests(engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer]) -> None:
    alice, _ = album
    result = _find(engine, plain, alice, "cta")
    assert result.page.total == 0
    assert result.unmatched == ["cta"]
    assert "Cat" in result.suggestions


def test_similar_token_is_kept() -> None:
    q = parse("similar:abc123 dog")
    assert q.similar_to == "abc123" and q.include == (("dog",),)


@pytest.mark.model
def test_related_words_through_the_model(
    engine: Engine, with_model: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, _ = album
    # GIVEN words that are no label's name or alias
    pup = _find(engine, with_model, alice, "pup")
    assert _names(pup) == ["dog-beach", "dog-cat"]
    assert pup.page.items[0].why == ["Dog, related to “pup”"]
    assert _names(_find(engine, with_model, alice, "shore")) == ["dog-beach"]
    assert _names(_find(engine, with_model, alice, "kitty-cat -pup")) == ["cat"]
    # AND the words of the issue
    assert _names(_find(engine, with_model, alice, "puppy")) == ["dog-beach", "dog-cat"]
    assert _names(_find(engine, with_model, alice, "people")) == ["person"]
    assert _names(_find(engine, with_model, alice, "seaside")) == ["dog-beach"]
    assert _names(_find(engine, with_model, alice, "automobile")) == ["car"]
    # AND "dog" is not "any animal" (no cat through the model)
    assert "cat" not in _names(_find(engine, with_model, alice, "doggy"))


@pytest.mark.model
def test_nothing_found_suggests_nearest_in_meaning(
    engine: Engine, with_model: Searcher, album: tuple[Viewer, Viewer]
) -> None:
    alice, _ = album
    result = _find(engine, with_model, alice, "hamster")
    assert result.page.total == 0
    assert result.suggestions and set(result.suggestions) & {"Cat", "Dog", "Pet", "Mammal", "Animal"}


def test_cli_search(
    engine: Engine,
    db_url: str,
    album: tuple[Viewer, Viewer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from labelkit.search.__main__ import main
    from labelkit.settings import get_settings

    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_LABELER", "fake")
    get_settings.cache_clear()
    assert main(["puppy -cat", "--user", "alice", "--json"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [r["name"] for r in rows] == ["dog-beach.jpg"]
    assert rows[0]["why"] == ["Dog, alias Puppy"]
    assert "1 match for puppy -cat" in out.err


def test_pages_equal_the_whole_ranking(engine: Engine, plain: Searcher) -> None:
    """The ranked page is read from the best-scored matches only (a confidence floor from
    the term index, taken deeper when too few images pass it): every page of every query
    equals the page of the whole ranking computed here from what was written. Confidences
    are drawn from five values so scores tie (then newest first, then id); an image with
    both Dog and Cat has two matching rows for ``dog | cat``, and excludes, other groups and
    a confidence filter drop images past the floor: each makes the floor go deeper."""
    import random

    from sqlalchemy import select

    from labelkit.db.models import Image

    rnd = random.Random(18)
    # 73.456789 is no single-precision float: MySQL's FLOAT stores 73.45679 and reads it
    # back as 73.4568, above what it stores.
    CONFS = [50.0, 60.0, 73.456789, 80.0, 91.234567]  # noqa: N806
    alice, bob = _user(engine, "alice"), _user(engine, "bob")
    admin = _user(engine, "root", admin=True)
    written: dict[str, dict[str, float]] = {}  # image id -> label -> confidence
    for k in range(40):
        owner = alice if k % 4 else bob
        labels = {}
        if rnd.random() < 0.7:
            labels["Dog"] = rnd.choice(CONFS)
        if rnd.random() < 0.5:
            labels["Cat"] = rnd.choice(CONFS)
        made = [
            DOG.model_copy(update={"confidence": c})
            if n == "Dog"
            else CAT.model_copy(update={"confidence": c})
            for n, c in labels.items()
        ]
        written[_photo(engine, owner, f"p{k:02d}-{'-'.join(labels) or 'none'}", *made, CAR)] = labels
    with transaction(engine) as s:
        rows = {i.id: i for i in s.scalars(select(Image))}

    def expected(viewer: Viewer, text: str, min_conf: float | None) -> list[str]:
        def conf(labels: dict[str, float], name: str) -> float | None:
            c = labels.get(name)
            return c if c is not None and (min_conf is None or c >= min_conf) else None

        ranked = []
        for image_id, labels in written.items():
            if not viewer.is_admin and rows[image_id].owner_id != viewer.user_id:
                continue
            dog, cat = conf(labels, "Dog"), conf(labels, "Cat")
            if text in ("animal", "dog | cat"):
                scores = [c for c in (dog, cat) if c is not None]
            elif text == "dog -cat":
                scores = [dog] if dog is not None and "Cat" not in labels else []
            else:  # "dog cat"
                scores = [dog, cat] if dog is not None and cat is not None else []
            if scores:
                img = rows[image_id]
                ranked.append((-max(scores), img.created_at, img.id))
        ranked.sort(key=lambda r: (r[0], -r[1].timestamp(), [-ord(ch) for ch in r[2]]))
        return [rows[i].original_name.removesuffix(".jpg") for _, _, i in ranked]

    for viewer in (alice, admin):
        for text in ("animal", "dog | cat", "dog -cat", "dog cat"):
            for min_conf in (None, 65.0):
                want = expected(viewer, text, min_conf)
                flt = image_q.ImageFilter(min_confidence=min_conf)
                got: list[str] = []
                for page in range(1, len(want) // 3 + 2):
                    found = _find(engine, plain, viewer, text, flt=flt, page=page, page_size=3)
                    assert found.page.total == len(want), (text, min_conf)
                    got += _names(found)
                assert got == want, (viewer.is_admin, text, min_conf)


def test_counting_stops_at_the_cap_but_one_name_totals_stay_exact(
    engine: Engine, plain: Searcher, album: tuple[Viewer, Viewer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past COUNT_CAP matches a search says "at least" (the gallery shows "N+"): counting
    every match costs O(matches). A one-name search reads its exact total from the running
    totals whatever its size."""
    from labelkit.db.queries import search as search_q

    alice, _ = album
    monkeypatch.setattr(search_q, "COUNT_CAP", 1)
    either = _find(engine, plain, alice, "dog | cat", page_size=2)  # dog-beach, cat, dog-cat
    assert (either.page.total, either.page.capped) == (1, True)
    assert len(either.page.items) == 2  # the page is not cut by the count
    named = _find(engine, plain, alice, "animal")
    assert (named.page.total, named.page.capped) == (3, False)
    status = _find(engine, plain, alice, "dog -person", flt=image_q.ImageFilter(status="labelled"))
    assert (status.page.total, status.page.capped) == (1, True)  # counted through the images
    monkeypatch.setattr(search_q, "COUNT_CAP", 10)
    under = _find(engine, plain, alice, "dog | cat")
    assert (under.page.total, under.page.capped) == (3, False)


def test_a_catalogue_label_added_in_lower_case_is_found_by_name_case_and_alias(
    engine: Engine, plain: Searcher
) -> None:
    """Issue 24 item 1: "beach" a person added (stored as typed, as before the fix) is found
    by "beach", "Beach" and the catalogue's aliases, also when a model's "Beach" is elsewhere."""
    # GIVEN a beach photo the model saw only sky on, with "beach" added by a person in lower
    # case, and another photo the model called Beach
    alice = _user(engine, "alice")
    shore = _photo(engine, alice, "shore", Label(name="Sky", confidence=80.0))
    _photo(engine, alice, "dog-beach", DOG, BEACH)
    with transaction(engine) as s:
        row = label_q.set_human_label(
            session=s, viewer=alice, image_id=shore, name="beach", review=ReviewState.CONFIRMED
        )
        assert row.name == "beach"  # no catalogue details given: stored as typed
    # THEN every way of asking for a beach finds both photos
    for text in ("beach", "Beach", "BEACH", "seaside", "coast", "beaches"):
        assert sorted(_names(_find(engine, plain, alice, text))) == ["dog-beach", "shore"], text
    # AND leaving beaches out leaves both out
    assert _names(_find(engine, plain, alice, "sky -beach")) == []


def test_an_imported_lower_case_catalogue_label_is_stored_the_catalogues_way(
    engine: Engine, plain: Searcher
) -> None:
    """``labelkit export --import`` of {"name": "beach", "source": "human"}: stored as the
    catalogue's Beach with its parent Outdoors, so "beach", "seaside" and "outdoors" find it."""
    import json

    from labelkit.interchange.importer import import_text

    alice = _user(engine, "alice")
    shore = _photo(engine, alice, "shore", Label(name="Sky", confidence=80.0))
    line = json.dumps({"image_id": shore, "labels": [{"name": "beach", "source": "human"}]})
    report = import_text(engine=engine, viewer=alice, text=line)
    assert report.labels == 1 and not report.errors
    with transaction(engine) as s:
        human = [
            r
            for r in label_q.labels_for_image(session=s, viewer=alice, image_id=shore)
            if r.model_version == ""
        ]
    assert [(r.name, r.parents, r.review) for r in human] == [("Beach", ["Outdoors"], ReviewState.CONFIRMED)]
    for text in ("beach", "seaside", "outdoors"):
        assert _names(_find(engine, plain, alice, text)) == ["shore"], text


def test_a_name_differing_only_in_case_from_a_label_on_the_photo_is_that_label(engine: Engine) -> None:
    # GIVEN a photo the model labelled "Beach"
    alice = _user(engine, "alice")
    photo = _photo(engine, alice, "shore", BEACH)
    # WHEN a person confirms "beach" and then rejects "BEACH"
    with transaction(engine) as s:
        label_q.set_human_label(
            session=s, viewer=alice, image_id=photo, name="beach", review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=photo, name="BEACH", review=ReviewState.REJECTED
        )
    # THEN both verdicts went to the model's Beach, the last one standing (on every database)
    with transaction(engine) as s:
        human = [
            r
            for r in label_q.labels_for_image(session=s, viewer=alice, image_id=photo)
            if r.model_version == ""
        ]
    assert [(r.name, r.review) for r in human] == [("Beach", ReviewState.REJECTED)]
