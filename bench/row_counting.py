"""The dashboard's aggregates as they were before the running totals (issue #9): counted
from the label and term rows on every call, O(rows). ``bench.queries`` times these as
"before" beside the current queries (``labelkit.db.queries``) ("after"), with EXPLAIN of both.

Kept here for the benchmark, and as the reference the tests compare the running totals
with; the application reads ``labelkit.db.counts``' totals. Same definitions (issue #16):
"images with X" are images whose ``image_terms`` (their effective labels: rejected ones left
out, people's own in) have X as a label or a parent; confidences leave out rejected labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from labelkit.db.counts import not_rejected
from labelkit.db.models import Image, ImageTerm, LabelRow, LabelSource, ReviewState, TermKind
from labelkit.db.queries import _scope as scope_q
from labelkit.db.queries import images as image_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import stats as stats_q
from labelkit.domain import Viewer

SEARCHABLE = [TermKind.LABEL, TermKind.PARENT]


def label_stats(s: Session, v: Viewer, limit: int | None = None) -> list[tuple[Any, ...]]:
    """(name, images) per name carried as a label or a parent, most common first; then
    (name, review, n) per name and verdict; then (name, mean confidence) of the model's
    labels no person rejected."""
    images = func.count(func.distinct(ImageTerm.image_id))
    counts = scope_q._owned(
        select(ImageTerm.term, images)
        .where(ImageTerm.kind.in_(SEARCHABLE))
        .group_by(ImageTerm.term)
        .order_by(images.desc(), ImageTerm.term),
        v,
        ImageTerm.image_id,
    )
    if limit is not None:
        counts = counts.limit(limit)
    reviews = scope_q._owned(
        select(LabelRow.name, LabelRow.review, func.count())
        .where(
            LabelRow.source == LabelSource.HUMAN,
            LabelRow.instance == 0,
            LabelRow.review != ReviewState.UNREVIEWED,
        )
        .group_by(LabelRow.name, LabelRow.review),
        v,
        LabelRow.image_id,
    )
    means = scope_q._owned(
        select(LabelRow.name, func.avg(LabelRow.confidence)).where(*not_rejected()).group_by(LabelRow.name),
        v,
        LabelRow.image_id,
    )
    return [*s.execute(counts).all(), *s.execute(reviews).all(), *s.execute(means).all()]


def term_counts(s: Session, v: Viewer, kind: TermKind, limit: int = 50) -> list[tuple[Any, ...]]:
    stmt = scope_q._owned(
        select(ImageTerm.term, func.count())
        .where(ImageTerm.kind == kind)
        .group_by(ImageTerm.term)
        .order_by(func.count().desc(), ImageTerm.term)
        .limit(limit),
        v,
        ImageTerm.image_id,
    )
    return list(s.execute(stmt).all())


def term_suggestions(s: Session, v: Viewer, limit: int = 500) -> list[tuple[Any, ...]]:
    stmt = scope_q._scoped(
        select(ImageTerm.term, func.count(func.distinct(ImageTerm.image_id)))
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT]))
        .group_by(ImageTerm.term)
        .order_by(func.count(func.distinct(ImageTerm.image_id)).desc(), ImageTerm.term)
        .limit(limit),
        v,
    )
    return list(s.execute(stmt).all())


def label_filter_page(s: Session, v: Viewer, label: str) -> tuple[int, list[Any]]:
    base = image_q._filtered_images(v, image_q.ImageFilter(label=label))
    total = int(s.scalar(select(func.count()).select_from(base.subquery())) or 0)
    items = s.scalars(base.order_by(Image.created_at.desc(), Image.id.desc()).limit(24)).all()
    return total, list(items)


def confidence_histogram(s: Session, v: Viewer) -> Any:
    values = np.asarray(stats_q.model_confidences(session=s, viewer=v), dtype=float)
    return np.histogram(values, bins=np.arange(0, 105, 5, dtype=float))


def cooccurrence(s: Session, v: Viewer, top: int) -> list[tuple[Any, ...]]:
    names = [r[0] for r in s.execute(_top_names(v, top))]
    left, right = aliased(ImageTerm), aliased(ImageTerm)
    stmt = scope_q._owned(
        select(left.term, right.term, func.count(func.distinct(left.image_id)))
        .select_from(left)
        .join(right, and_(right.image_id == left.image_id, right.kind.in_(SEARCHABLE)))
        .where(left.kind.in_(SEARCHABLE), left.term.in_(names), right.term.in_(names))
        .group_by(left.term, right.term),
        v,
        left.image_id,
    )
    return list(s.execute(stmt).all())


def _top_names(v: Viewer, top: int) -> Any:
    images = func.count(func.distinct(ImageTerm.image_id))
    return scope_q._owned(
        select(ImageTerm.term)
        .where(ImageTerm.kind.in_(SEARCHABLE))
        .group_by(ImageTerm.term)
        .order_by(images.desc(), ImageTerm.term)
        .limit(top),
        v,
        ImageTerm.image_id,
    )


def count_review_queue(s: Session, v: Viewer) -> int:
    stmt = select(func.count()).select_from(LabelRow).where(*scope_q._awaiting_review())
    return int(s.scalar(scope_q._owned(stmt, v, LabelRow.image_id)) or 0)


def before_calls(v: Viewer, label: str) -> dict[str, Callable[[Session], object]]:
    """The "before" of each benchmarked query that the running totals changed, by query name."""
    return {
        "label_stats (label counts)": lambda s: label_stats(s, v),
        "term_counts categories": lambda s: term_counts(s, v, TermKind.CATEGORY),
        "term_suggestions": lambda s: term_suggestions(s, v),
        f"list_images label={label} p1 + total": lambda s: label_filter_page(s, v, label),
        "charts: label_table": lambda s: label_stats(s, v),
        "charts: confidence_histogram": lambda s: confidence_histogram(s, v),
        "charts: categories": lambda s: term_counts(s, v, TermKind.CATEGORY, limit=30),
        "charts: cooccurrence top 15": lambda s: (label_stats(s, v, 15), cooccurrence(s, v, 15)),
        "review_queue p1 + count": lambda s: (
            review_q.review_queue(session=s, viewer=v, limit=20),
            count_review_queue(s, v),
        ),
    }
