"""The query benchmark's data generator (``bench.queries``) at a tiny size, on SQLite and MariaDB.

GIVEN a migrated, empty database WHEN the generator fills it THEN the rows are what the
application would have written (image_terms derived from labels as ``save_model_labels``
and ``set_human_label`` do), and every benchmarked query runs. No timing assertions.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bench import row_counting
from bench.queries import explain, generate, queries
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, ImageTerm, LabelRow, LabelSource, ReviewState, User
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer

# Generates a benchmark database: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

IMAGES = 500


def _expected_terms(labels: list[LabelRow]) -> dict[tuple[str, str], float]:
    """The image's effective labels' terms: the model's minus the names a person rejected (as
    labels and as parents), plus people's confirmed labels at 100; best confidence each."""
    no = {
        lab.name for lab in labels if lab.source == LabelSource.HUMAN and lab.review == ReviewState.REJECTED
    }
    best: dict[tuple[str, str], float] = {}
    for lab in labels:
        if lab.instance != 0 or lab.name in no:
            continue
        if lab.source == LabelSource.MODEL:
            conf = lab.confidence
        elif lab.review == ReviewState.CONFIRMED:
            conf = 100.0
        else:
            continue
        keys = [("label", lab.name)] + [("parent", p) for p in lab.parents if p not in no]
        for key in keys + [("category", c) for c in lab.categories]:
            best[key] = max(conf, best.get(key, 0.0))
    return best


def test_generator_writes_consistent_rows_and_every_query_runs(engine: Engine) -> None:
    report = generate(engine, images=IMAGES, labels_per_image=10, users=40, chunk=200)

    assert report.images == IMAGES
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Image)) == IMAGES
        assert s.scalar(select(func.count()).select_from(User)) == 41  # + the admin
        labels = list(s.scalars(select(LabelRow)))
        terms = list(s.scalars(select(ImageTerm)))
        images = {i.id: i for i in s.scalars(select(Image))}
    assert len(labels) == report.labels and len(terms) == report.terms
    assert 8 * IMAGES < len(labels) < 13 * IMAGES

    keys = Counter((r.image_id, r.source, r.model_version, r.name, r.instance) for r in labels)
    assert max(keys.values()) == 1, "the unique label key holds"
    by_image: dict[str, list[LabelRow]] = {}
    for r in labels:
        by_image.setdefault(r.image_id, []).append(r)
    assert all(images[i].status == ImageStatus.LABELLED for i in by_image), "labels only on labelled images"
    assert any(r.source == LabelSource.HUMAN for r in labels), "some human reviews"

    actual: dict[str, dict[tuple[str, str], float]] = {}
    for t in terms:
        actual.setdefault(t.image_id, {})[(t.kind.value, t.term)] = t.confidence
    for image_id, rows in by_image.items():
        assert actual.get(image_id) == _expected_terms(rows), image_id
    assert set(actual) <= set(by_image), "no terms without labels"

    admin = Viewer(user_id=report.admin_id, is_admin=True)
    user = Viewer(user_id=report.heaviest_user)
    typical = Viewer(user_id=report.typical_user)
    assert 0 < report.typical_user_images <= report.heaviest_user_images
    measured = queries(admin, user, "Animal", deep_page=2, typical=typical)
    assert {q.who for q in measured} == {"user", "typical", "admin"}
    for q in measured:
        with transaction(engine) as s:
            q.run(s)
            if q.before is not None:
                q.before(s)
    assert sum(q.before is not None for q in measured) == 27, "9 row-counting shapes per viewer"
    if engine.dialect.name in ("mysql", "mariadb"):
        assert "type=" in explain(engine, measured[0])
        assert "type=" in explain(engine, measured[0], before=True)

    # The generator computed the running totals from the rows it loaded: they agree with
    # counting the rows the old way.
    with transaction(engine) as s:
        for v in (admin, user, typical):
            after = stats_q.label_stats(session=s, viewer=v)
            before = row_counting.label_stats(s, v)
            counted = {r[0]: int(r[1]) for r in before if len(r) == 2 and isinstance(r[1], int)}
            reviewed = {r[0] for r in before if len(r) == 3}
            assert {st.name: st.images for st in after} == {
                n: counted.get(n, 0) for n in {*counted, *reviewed}
            }
            assert review_q.count_review_queue(session=s, viewer=v) == row_counting.count_review_queue(s, v)
            assert [t.term for t in stats_q.term_suggestions(session=s, viewer=v, limit=20)] == [
                r[0] for r in row_counting.term_suggestions(s, v, limit=20)
            ]
