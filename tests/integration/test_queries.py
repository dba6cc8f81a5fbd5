"""The queries (``labelkit.db.queries``) on SQLite and on the real MariaDB (same tests, both backends)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, ImageTerm, LabelRow, ReviewState, TermKind, utcnow
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import BoundingBox, Instance, Label, LabelResult, Viewer
from labelkit.errors import NotFound


def _cat_result(version: str = "test-1", conf: float = 91.0) -> LabelResult:
    return LabelResult(
        model_version=version,
        labels=[
            Label(
                name="Cat",
                confidence=conf,
                parents=["Mammal", "Animal"],
                categories=["Animals and Pets"],
                instances=[
                    Instance(box=BoundingBox(left=0.1, top=0.2, width=0.5, height=0.6), confidence=80)
                ],
            ),
            Label(name="Animal", confidence=93.0, categories=["Animals and Pets"]),
            Label(name="Whisker", confidence=58.0, parents=["Cat", "Animal"]),
        ],
    )


def _building_result() -> LabelResult:
    return LabelResult(
        model_version="test-1",
        labels=[
            Label(
                name="Palace",
                confidence=77.0,
                parents=["Building"],
                categories=["Buildings and Architecture"],
            )
        ],
    )


def _user(engine: Engine, name: str) -> Viewer:
    with transaction(engine) as s:
        u = user_q.create_user(session=s, username=name, password_hash="x")
        return Viewer(user_id=u.id, is_admin=u.is_admin)


def _image(engine: Engine, owner: Viewer, sha: str) -> str:
    with transaction(engine) as s:
        img = image_q.create_image(
            session=s,
            owner_id=owner.user_id,
            original_name=f"{sha}.jpg",
            content_type="image/jpeg",
            extension=".jpg",
            size_bytes=1234,
            width=640,
            height=480,
            sha256=sha * 64,
        )
        return img.id


def test_migrations_create_every_table_with_utf8mb4(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {"users", "images", "labels", "image_terms", "queue_messages", "alembic_version"} <= names
    if engine.dialect.name == "mysql":
        with engine.connect() as conn:
            charsets = {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT CCSA.character_set_name FROM information_schema.TABLES T "
                    "JOIN information_schema.COLLATION_CHARACTER_SET_APPLICABILITY CCSA "
                    "ON CCSA.collation_name = T.table_collation WHERE T.table_schema = DATABASE()"
                )
            }
        assert charsets == {"utf8mb4"}


def test_first_user_is_admin_and_usernames_are_case_insensitive(engine: Engine) -> None:
    first = _user(engine, "Alice")
    second = _user(engine, "bob")
    assert first.is_admin and not second.is_admin
    with transaction(engine) as s:
        assert user_q.get_user_by_username(session=s, username="ALICE ") is not None


def test_utf8mb4_names_round_trip(engine: Engine) -> None:
    alice = _user(engine, "alice")
    image_id = _image(engine, alice, "a")
    with transaction(engine) as s:
        img = image_q.get_image(session=s, viewer=alice, image_id=image_id)
        img.original_name = "猫 🐈 كلب.jpg"
    with transaction(engine) as s:
        assert image_q.get_image(session=s, viewer=alice, image_id=image_id).original_name == "猫 🐈 كلب.jpg"


def test_object_key_holds_owner_and_random_id(engine: Engine) -> None:
    alice = _user(engine, "alice")
    image_id = _image(engine, alice, "a")
    with transaction(engine) as s:
        img = image_q.get_image(session=s, viewer=alice, image_id=image_id)
    assert img.object_key == f"users/{alice.user_id}/{image_id}.jpg"
    assert img.status == ImageStatus.PENDING


def test_duplicate_sha_is_found_for_the_same_owner_only(engine: Engine) -> None:
    alice, bob = _user(engine, "alice"), _user(engine, "bob")
    _image(engine, alice, "a")
    with transaction(engine) as s:
        assert image_q.find_duplicate(session=s, owner_id=alice.user_id, sha256="a" * 64) is not None
        assert image_q.find_duplicate(session=s, owner_id=bob.user_id, sha256="a" * 64) is None
    _image(engine, bob, "a")  # another owner may upload the same file


def test_saving_the_same_result_twice_writes_nothing_new(engine: Engine) -> None:
    alice = _user(engine, "alice")
    image_id = _image(engine, alice, "a")
    with transaction(engine) as s:
        written = worker_q.save_model_labels(session=s, image_id=image_id, result=_cat_result())
    with transaction(engine) as s:
        before = s.execute(select(LabelRow.id, LabelRow.name, LabelRow.instance).order_by(LabelRow.id)).all()
    with transaction(engine) as s:  # the same job delivered again
        worker_q.save_model_labels(session=s, image_id=image_id, result=_cat_result())
    with transaction(engine) as s:
        after = s.execute(select(LabelRow.id, LabelRow.name, LabelRow.instance).order_by(LabelRow.id)).all()
        terms = s.scalar(select(func.count()).select_from(ImageTerm))
    assert written == 4  # Cat, its box, Animal, Whisker
    assert len(before) == 4
    assert after == before  # same rows, same ids: nothing rewritten
    assert terms == 3 + 3 + 1  # labels Cat/Animal/Whisker; parents Mammal/Animal/Cat; one category


def test_label_filter_finds_children_through_parents(engine: Engine) -> None:
    alice = _user(engine, "alice")
    cat, palace = _image(engine, alice, "a"), _image(engine, alice, "b")
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=cat, result=_cat_result())
        worker_q.save_model_labels(session=s, image_id=palace, result=_building_result())
    with transaction(engine) as s:

        def ids(**kw: object) -> set[str]:
            page = image_q.list_images(session=s, viewer=alice, flt=image_q.ImageFilter(**kw))  # type: ignore[arg-type]
            return {i.id for i in page.items}

        assert ids(label="Mammal") == {cat}
        assert ids(label="Building") == {palace}
        assert ids(label="Palace") == {palace}
        assert ids(category="Animals and Pets") == {cat}
        assert ids(label="Mammal", min_confidence=90) == {cat}
        assert ids(label="Mammal", min_confidence=95) == set()
        assert ids(min_confidence=92) == {cat}
        assert ids() == {cat, palace}


def test_gallery_is_newest_first_and_paginated(engine: Engine) -> None:
    alice = _user(engine, "alice")
    ids = [_image(engine, alice, c) for c in "abcde"]
    with transaction(engine) as s:
        first = image_q.list_images(session=s, viewer=alice, page=1, page_size=2)
        third = image_q.list_images(session=s, viewer=alice, page=3, page_size=2)
    assert first.total == 5 and first.pages == 3
    assert [i.id for i in first.items] == [ids[4], ids[3]]
    assert [i.id for i in third.items] == [ids[0]]


def test_status_and_date_filters(engine: Engine) -> None:
    alice = _user(engine, "alice")
    a, b = _image(engine, alice, "a"), _image(engine, alice, "b")
    with transaction(engine) as s:
        worker_q.mark_failed(session=s, image_id=a, reason="Not an image.")
    with transaction(engine) as s:
        failed = image_q.list_images(
            session=s, viewer=alice, flt=image_q.ImageFilter(status=ImageStatus.FAILED)
        )
        future = image_q.list_images(
            session=s, viewer=alice, flt=image_q.ImageFilter(since=utcnow() + timedelta(hours=1))
        )
        counts = image_q.status_counts(session=s, viewer=alice)
    assert [i.id for i in failed.items] == [a] and failed.items[0].failure_reason == "Not an image."
    assert future.total == 0
    assert counts[ImageStatus.FAILED] == 1 and counts[ImageStatus.PENDING] == 1
    assert b


def test_users_never_see_or_change_each_others_images(engine: Engine) -> None:
    admin, alice, bob = _user(engine, "admin"), _user(engine, "alice"), _user(engine, "bob")
    img = _image(engine, alice, "a")
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=img, result=_cat_result())
    with transaction(engine) as s:
        for call in (
            lambda: image_q.get_image(session=s, viewer=bob, image_id=img),
            lambda: label_q.labels_for_image(session=s, viewer=bob, image_id=img),
            lambda: label_q.set_human_label(
                session=s, viewer=bob, image_id=img, name="Cat", review=ReviewState.REJECTED
            ),
            lambda: image_q.reset_for_retry(session=s, viewer=bob, image_id=img),
            lambda: image_q.delete_image(session=s, viewer=bob, image_id=img),
        ):
            with pytest.raises(NotFound):
                call()
        assert image_q.list_images(session=s, viewer=bob).total == 0
        assert review_q.review_queue(session=s, viewer=bob) == []
        assert stats_q.label_stats(session=s, viewer=bob) == []
        assert stats_q.term_counts(session=s, viewer=bob, kind=TermKind.CATEGORY) == []
        assert stats_q.images_with_term_count(session=s, viewer=bob, term="Animal") == 0
        # The owner and the admin do see it.
        assert image_q.list_images(session=s, viewer=alice).total == 1
        assert image_q.list_images(session=s, viewer=admin).total == 1
        assert stats_q.images_with_term_count(session=s, viewer=alice, term="Animal") == 1


def test_human_review_is_stored_beside_the_model_label(engine: Engine) -> None:
    alice = _user(engine, "alice")
    img = _image(engine, alice, "a")
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=img, result=_cat_result())
    with transaction(engine) as s:
        queue = review_q.review_queue(session=s, viewer=alice)
        assert [r.name for r in queue] == ["Whisker", "Cat", "Animal"]  # lowest confidence first
        label_q.set_human_label(
            session=s, viewer=alice, image_id=img, name="Cat", review=ReviewState.CONFIRMED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=img, name="Whisker", review=ReviewState.REJECTED
        )
        label_q.set_human_label(
            session=s, viewer=alice, image_id=img, name="Sofa", review=ReviewState.CONFIRMED
        )
        # Repeating an action updates the same row.
        label_q.set_human_label(
            session=s, viewer=alice, image_id=img, name="Cat", review=ReviewState.CONFIRMED
        )
    with transaction(engine) as s:
        labels = label_q.labels_for_image(session=s, viewer=alice, image_id=img)
        model_cat = [r for r in labels if r.name == "Cat" and r.source == "model" and r.instance == 0]
        human = {r.name: r for r in labels if r.source == "human"}
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        queue_after = [r.name for r in review_q.review_queue(session=s, viewer=alice)]
        sofa_images = image_q.list_images(
            session=s, viewer=alice, flt=image_q.ImageFilter(label="Sofa")
        ).total
    assert model_cat[0].review == ReviewState.UNREVIEWED  # the model's row is never overwritten
    assert set(human) == {"Cat", "Whisker", "Sofa"}
    assert human["Cat"].created_by == alice.user_id and human["Cat"].parents == ["Mammal", "Animal"]
    assert human["Whisker"].review == ReviewState.REJECTED
    assert queue_after == ["Animal"]
    assert stats["Cat"].precision == 1.0 and stats["Whisker"].precision == 0.0
    assert stats["Animal"].precision is None
    assert sofa_images == 1


def test_label_stats_count_images_and_mean_confidence(engine: Engine) -> None:
    alice = _user(engine, "alice")
    a, b = _image(engine, alice, "a"), _image(engine, alice, "b")
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=a, result=_cat_result(conf=90))
        worker_q.save_model_labels(session=s, image_id=b, result=_cat_result(conf=70))
    with transaction(engine) as s:
        stats = {st.name: st for st in stats_q.label_stats(session=s, viewer=alice)}
        cats = stats_q.term_counts(session=s, viewer=alice, kind=TermKind.CATEGORY)
    assert stats["Cat"].images == 2  # the box rows do not double-count
    assert stats["Cat"].mean_confidence == pytest.approx(80)
    assert cats == [("Animals and Pets", 2)]


def test_delete_removes_labels_and_terms(engine: Engine) -> None:
    alice = _user(engine, "alice")
    img = _image(engine, alice, "a")
    with transaction(engine) as s:
        worker_q.save_model_labels(session=s, image_id=img, result=_cat_result())
    with transaction(engine) as s:
        key = image_q.delete_image(session=s, viewer=alice, image_id=img)
    with transaction(engine) as s:
        left = [s.scalar(select(func.count()).select_from(t)) for t in (Image, LabelRow, ImageTerm)]
    assert key.endswith(f"{img}.jpg")
    assert left == [0, 0, 0]


def test_retry_resets_a_failed_image(engine: Engine) -> None:
    alice = _user(engine, "alice")
    img = _image(engine, alice, "a")
    with transaction(engine) as s:
        worker_q.mark_labelling(session=s, image_id=img)
        worker_q.mark_failed(session=s, image_id=img, reason="boom")
    with transaction(engine) as s:
        image = image_q.reset_for_retry(session=s, viewer=alice, image_id=img)
        assert (image.status, image.failure_reason, image.attempts) == (ImageStatus.PENDING, None, 0)
