"""The running totals behind the dashboard's counts (labelkit.db.counts) stay equal to a
recount from the rows, whatever mix of writes happens, on SQLite and MariaDB; and the
derived terms, the Labels page and the gallery's filter agree on "images with label X"
(issue #16: a person's rejection outranks the model, people's own labels count)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from labelkit import analytics
from labelkit.db import counts
from labelkit.db.engine import in_transaction, transaction
from labelkit.db.models import (
    ALL_OWNERS,
    Image,
    ImageTerm,
    LabelCount,
    LabelRow,
    LabelSource,
    ReviewState,
    TermKind,
)
from labelkit.db.queries import _scope as scope_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer

NAMES = ["Cat", "Dog", "Sofa", "Tree", "Car", "Bird", "Cup", "Dog House"]
REVIEWED_PARENTS = ["Animal", "Vehicle"]
PARENTS = {"Cat": ["Animal", "Mammal"], "Dog": ["Animal", "Mammal"], "Bird": ["Animal"], "Car": ["Vehicle"]}
CATEGORIES = {
    "Cat": ["Animals"],
    "Dog": ["Animals"],
    "Bird": ["Animals"],
    "Car": ["Vehicles"],
    "Tree": ["Plants"],
}


def _user(engine: Engine, name: str) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x")
        return Viewer(user_id=u.id, is_admin=u.is_admin)


def _image(engine: Engine, owner: Viewer, n: int) -> str:
    with transaction(engine) as s:
        return image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name=f"{n}.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1000,
            width=64,
            height=48,
            sha256=f"{n:064d}",
        ).id


def _result(rng: random.Random, version: str) -> LabelResult:
    labels = []
    for name in rng.sample(NAMES, rng.randint(0, 5)):
        # Confidences on awkward values too: 100, 99.9996, .5 steps, float32 rounding.
        conf = rng.choice([100.0, 99.9996, 55.5, 0.0, round(rng.uniform(0, 100), 4), rng.uniform(0, 100)])
        boxes = [
            Instance(
                box=BoundingBox(left=0.1, top=0.1, width=0.5, height=0.5), confidence=rng.uniform(0, 100)
            )
            for _ in range(rng.randint(0, 2))
        ]
        labels.append(
            Label(
                name=name,
                confidence=conf,
                parents=PARENTS.get(name, []),
                categories=CATEGORIES.get(name, []),
                instances=boxes,
            )
        )
    return LabelResult(model_version=version, labels=labels)


def _check(engine: Engine) -> None:
    with transaction(engine) as s:
        running = counts.dump(s)
        counts.rebuild(s)
        fresh = counts.dump(s)
        s.rollback()
    for table in fresh:
        assert running[table] == fresh[table], (
            table,
            sorted(running[table] - fresh[table])[:5],
            sorted(fresh[table] - running[table])[:5],
        )


@pytest.mark.slow
def test_random_writes_keep_totals_equal_to_a_recount(engine: Engine) -> None:
    rng = random.Random(20261124)
    admin, alice, bob = _user(engine, "admin"), _user(engine, "alice"), _user(engine, "bob")
    people = [alice, bob, admin]
    images: list[tuple[str, Viewer, LabelResult | None]] = []
    n = 0
    for step in range(120):
        op = rng.choice(
            ["new", "new", "save", "resave", "compare", "review", "add", "import", "unreview", "delete"]
        )
        if op == "new" or not images:
            n += 1
            owner = rng.choice(people)
            image_id = _image(engine, owner, n)
            result = _result(rng, "m-1")
            with transaction(engine) as s:
                worker_q.save_model_labels(session=s, image_id=image_id, result=result)
            images.append((image_id, owner, result))
            continue
        image_id, owner, result = rng.choice(images)
        with transaction(engine) as s:
            if op == "save":
                worker_q.save_model_labels(session=s, image_id=image_id, result=_result(rng, "m-1"))
            elif op == "resave" and result is not None:  # a re-delivered job
                worker_q.save_model_labels(session=s, image_id=image_id, result=result)
            elif op == "compare":
                worker_q.save_model_labels(session=s, image_id=image_id, result=_result(rng, "m-2"))
            elif op in ("review", "add"):
                # Reviews of parents too: rejecting "Animal" takes it from every label's parents.
                name = (
                    rng.choice(NAMES + REVIEWED_PARENTS) if op == "review" else f"Extra {rng.randint(1, 3)}"
                )
                review = rng.choice([ReviewState.CONFIRMED, ReviewState.REJECTED])
                label_q.set_human_label(session=s, viewer=owner, image_id=image_id, name=name, review=review)
            elif op == "import":
                label_q.import_human_label(
                    session=s,
                    viewer=owner,
                    image_id=image_id,
                    name=rng.choice(NAMES),
                    review=rng.choice([ReviewState.CONFIRMED, ReviewState.REJECTED]),
                    parents=rng.choice([None, ["Animal"], ["Imported Parent"]]),
                    categories=rng.choice([None, ["Imported"]]),
                    boxes=[(0.1, 0.1, 0.2, 0.2, 80.0)] * rng.randint(0, 2),
                )
            elif op == "unreview":
                some = [i for i, _, _ in rng.sample(images, min(3, len(images)))]
                label_q.delete_human_labels(session=s, viewer=owner, image_ids=some)
            elif op == "delete":
                image_q.delete_image(session=s, viewer=owner, image_id=image_id)
                images = [t for t in images if t[0] != image_id]
        if step % 10 == 9:
            _check(engine)
    _check(engine)

    # And the readers agree with counting the rows the slow way.
    _check_readers(engine, (alice, bob, admin))


def _check_readers(engine: Engine, viewers: tuple[Viewer, ...]) -> None:
    with transaction(engine) as s:
        carried = _slow_terms(s)
        stored: dict[str, dict[tuple[str, str], float]] = {}
        for t in s.scalars(select(ImageTerm)):
            stored.setdefault(t.image_id, {})[TermKind(t.kind).value, t.term] = t.confidence
        assert {k: v for k, v in stored.items() if v} == {k: v for k, v in carried.items() if v}
        for viewer in viewers:
            stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=viewer)}
            slow = {st.name: st for st in _slow_label_stats(s, viewer, carried)}
            assert {k: (v.images, v.confirmed, v.rejected) for k, v in stats.items()} == {
                k: (v.images, v.confirmed, v.rejected) for k, v in slow.items()
            }
            for name, st in stats.items():
                if slow[name].mean_confidence is None:
                    assert st.mean_confidence is None, name
                else:
                    assert st.mean_confidence == pytest.approx(slow[name].mean_confidence, abs=1e-3)
                # The Labels page's count is the gallery filter's: from the totals (label
                # only) and counted from image_terms (with a confidence bound every term meets).
                assert (
                    image_q.list_images(session=s, viewer=viewer, flt=image_q.ImageFilter(label=name)).total
                    == st.images
                )
                counted = image_q.ImageFilter(label=name, min_confidence=0)
                assert image_q.list_images(session=s, viewer=viewer, flt=counted).total == st.images, name
            assert review_q.count_review_queue(session=s, viewer=viewer) == len(
                review_q.review_queue(session=s, viewer=viewer, limit=10_000)
            )
            hist = analytics.confidence_histogram(session=s, viewer=viewer)
            assert int(hist["labels"].sum()) == len(stats_q.model_confidences(session=s, viewer=viewer))


def _slow_terms(s: Any) -> dict[str, dict[tuple[str, str], float]]:
    """Every image's terms, from its label rows by the rule written out again: model labels
    minus the names a person rejected (as labels and as parents), plus people's confirmed
    or added labels at 100 with the parents and categories on their rows."""
    rows: dict[str, list[LabelRow]] = {}
    for r in s.scalars(select(LabelRow).where(LabelRow.instance == 0)):
        rows.setdefault(r.image_id, []).append(r)
    out: dict[str, dict[tuple[str, str], float]] = {}
    for image_id, labels in rows.items():
        no = {r.name for r in labels if r.source == LabelSource.HUMAN and r.review == ReviewState.REJECTED}
        terms: dict[tuple[str, str], float] = {}
        for r in labels:
            if r.name in no or (r.source == LabelSource.HUMAN and r.review != ReviewState.CONFIRMED):
                continue
            conf = r.confidence if r.source == LabelSource.MODEL else 100.0
            keys = [("label", r.name)] + [("parent", p) for p in r.parents if p not in no]
            keys += [("category", c) for c in r.categories]
            for key in keys:
                terms[key] = max(conf, terms.get(key, 0.0))
        out[image_id] = terms
    return out


def _slow_label_stats(
    s: Any, viewer: Viewer, carried: dict[str, dict[tuple[str, str], float]]
) -> list[stats_q.LabelStat]:
    """label_stats counted from the rows: images carrying the name as a label or a parent,
    the mean of the model's labels no person rejected, people's verdicts."""
    mine = set(s.scalars(scope_q._scoped(select(Image.id), viewer)))
    images: dict[str, int] = {}
    for image_id, terms in carried.items():
        if image_id in mine:
            for name in {t for kind, t in terms if kind in ("label", "parent")}:
                images[name] = images.get(name, 0) + 1
    confs: dict[str, list[float]] = {}
    verdicts: dict[str, dict[str, int]] = {}
    rows = [r for r in s.scalars(select(LabelRow).where(LabelRow.instance == 0)) if r.image_id in mine]
    rejected = {
        (r.image_id, r.name) for r in rows if r.source == LabelSource.HUMAN and r.review == "rejected"
    }
    for r in rows:
        if r.source == LabelSource.MODEL and (r.image_id, r.name) not in rejected:
            confs.setdefault(r.name, []).append(r.confidence)
        elif r.source == LabelSource.HUMAN and r.review != ReviewState.UNREVIEWED:
            verdict = verdicts.setdefault(r.name, {})
            verdict[str(r.review)] = verdict.get(str(r.review), 0) + 1
    names = {n for n, k in images.items() if k} | set(verdicts)
    return [
        stats_q.LabelStat(
            name=name,
            images=images.get(name, 0),
            mean_confidence=sum(confs[name]) / len(confs[name]) if name in confs else None,
            confirmed=verdicts.get(name, {}).get("confirmed", 0),
            rejected=verdicts.get(name, {}).get("rejected", 0),
        )
        for name in names
    ]


def test_admins_read_everyones_totals_and_users_their_own(engine: Engine) -> None:
    admin, alice, bob = _user(engine, "admin"), _user(engine, "alice"), _user(engine, "bob")
    cat = LabelResult(
        model_version="m",
        labels=[Label(name="Cat", confidence=90, parents=["Animal"], categories=["Animals"])],
    )
    for owner, k in ((alice, 1), (alice, 2), (bob, 3)):
        image_id = _image(engine, owner, k)
        with transaction(engine) as s:
            worker_q.save_model_labels(session=s, image_id=image_id, result=cat)
    with transaction(engine) as s:
        assert stats_q.images_with_term_count(session=s, viewer=alice, term="Animal") == 2
        assert stats_q.images_with_term_count(session=s, viewer=bob, term="Animal") == 1
        assert stats_q.images_with_term_count(session=s, viewer=admin, term="Animal") == 3
        assert stats_q.term_counts(session=s, viewer=admin, kind=TermKind.CATEGORY) == [("Animals", 3)]
        # The label filter's total comes from the totals too, and stays scoped.
        flt = image_q.ImageFilter(label="Animal")
        assert image_q.list_images(session=s, viewer=alice, flt=flt).total == 2
        assert image_q.list_images(session=s, viewer=admin, flt=flt).total == 3
        other = image_q.ImageFilter(label="Animal", owner_id=bob.user_id)
        assert image_q.list_images(session=s, viewer=admin, flt=other).total == 1
        assert image_q.list_images(session=s, viewer=alice, flt=other).total == 0
        everyone = s.scalar(select(LabelCount.images).where(LabelCount.owner_id == ALL_OWNERS))
        assert everyone == 3


@pytest.mark.slow
def test_concurrent_writers_keep_totals_exact(engine: Engine) -> None:
    """Four threads write labels and reviews for the same images at once (a redelivered
    job racing the first delivery, people reviewing meanwhile): totals stay exact."""
    alice = _user(engine, "alice")
    ids = [_image(engine, alice, k) for k in range(12)]
    rng = random.Random(7)
    results = {i: _result(rng, "m-1") for i in ids}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        r = random.Random(seed)
        try:
            for _ in range(30):
                image_id = r.choice(ids)

                def write(s: Any, image_id: str = image_id) -> None:
                    if r.random() < 0.6:
                        worker_q.save_model_labels(session=s, image_id=image_id, result=results[image_id])
                    else:
                        label_q.set_human_label(
                            session=s,
                            viewer=alice,
                            image_id=image_id,
                            name=r.choice(NAMES),
                            review=r.choice([ReviewState.CONFIRMED, ReviewState.REJECTED]),
                        )

                in_transaction(engine, write)  # a deadlock victim runs again, as in the pipeline
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _check(engine)


def test_the_cli_finds_and_repairs_drifted_totals(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import update

    from labelkit.db.engine import dispose_engines
    from labelkit.settings import get_settings

    alice = _user(engine, "alice")
    image_id = _image(engine, alice, 1)
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=image_id, result=_result(random.Random(3), "m"))
        label_q.set_human_label(
            session=s, viewer=alice, image_id=image_id, name="Cat", review=ReviewState.CONFIRMED
        )
        # Rows changed behind the queries' back (e.g. loaded by hand): the totals drift.
        s.execute(update(LabelCount).values(images=LabelCount.images + 5))

    monkeypatch.setenv("LABELKIT_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert counts.main(["--check"]) == 1
        assert counts.main(["--check"]) == 1, "--check changes nothing"
        assert "differed" in capsys.readouterr().out
        assert counts.main([]) == 0
        assert counts.main(["--check"]) == 0
        assert "matched" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
        dispose_engines()
    _check(engine)
