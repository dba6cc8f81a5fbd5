"""Read-only aggregates behind the dashboard's charts and pages and the notebooks: label
and term counts (from the running totals), confidence histograms, activity over time, label
co-occurrence, the label each gallery card shows, and the model versions that labelled the
images (with the rows compare mode reads; the agreement maths is :mod:`labelkit.compare`).

Each is scoped by a viewer (admins see all) and returns plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from labelkit import primary
from labelkit.db import counts
from labelkit.db.models import (
    ConfidenceBin,
    Image,
    ImageTerm,
    LabelCount,
    LabelRow,
    LabelSource,
    ReviewState,
    TermCount,
    TermKind,
)
from labelkit.db.queries._scope import _owned, _scoped, _term_total, _totals_owner
from labelkit.domain import Viewer

# --------------------------------------------------------------------------- labels and terms
# Read from the running totals.


@dataclass(frozen=True, slots=True)
class LabelStat:
    name: str
    images: int  # images carrying it as a label or a parent (the gallery filter's count)
    mean_confidence: float | None  # of the model's labels of this name; None: the model gave none
    confirmed: int = 0
    rejected: int = 0
    categories: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        """Share of reviewed model labels that people confirmed (None if none reviewed)."""
        reviewed = self.confirmed + self.rejected
        return self.confirmed / reviewed if reviewed else None


def label_stats(*, session: Session, viewer: Viewer, limit: int | None = None) -> list[LabelStat]:
    """Per label name: images carrying it, mean confidence and review counts (image level),
    most common first. Read from the running totals.

    ``images`` is the gallery's label filter count: images whose effective labels (the
    model's minus those a person rejected, plus people's own) have the name or have it as a
    parent. Names people added are listed; so are names only people reviewed (``images`` 0
    when every verdict was a rejection). ``mean_confidence`` is over the model's labels of
    the name that no person rejected."""
    stmt = (
        select(LabelCount)
        .where(
            LabelCount.owner_id == _totals_owner(viewer),
            (LabelCount.images > 0) | (LabelCount.confirmed > 0) | (LabelCount.rejected > 0),
        )
        .order_by(LabelCount.images.desc(), LabelCount.name)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        LabelStat(
            name=r.name,
            images=int(r.images),
            mean_confidence=r.confidence_milli / r.model_rows / 1000 if r.model_rows else None,
            confirmed=int(r.confirmed),
            rejected=int(r.rejected),
        )
        for r in session.scalars(stmt)
    ]


def term_counts(
    *, session: Session, viewer: Viewer, kind: TermKind, limit: int = 50
) -> list[tuple[str, int]]:
    """Images per term of one kind (e.g. categories), most common first."""
    return _top_terms(session, viewer, kind.value, limit)


def _top_terms(session: Session, viewer: Viewer, kind: str, limit: int) -> list[tuple[str, int]]:
    stmt = (
        select(TermCount.term, TermCount.images)
        .where(TermCount.owner_id == _totals_owner(viewer), TermCount.kind == kind, TermCount.images > 0)
        .order_by(TermCount.images.desc(), TermCount.term)
        .limit(limit)
    )
    return [(t, int(n)) for t, n in session.execute(stmt)]


def images_with_term_count(*, session: Session, viewer: Viewer, term: str) -> int:
    """How many of the viewer's images carry ``term`` as a label or a parent."""
    return _term_total(session, _totals_owner(viewer), counts.ANY, term)


@dataclass(frozen=True, slots=True)
class TermSuggestion:
    term: str
    images: int


def term_suggestions(*, session: Session, viewer: Viewer, limit: int = 500) -> list[TermSuggestion]:
    """Label names and parents the viewer's images carry, most common first (filter suggestions)."""
    return [TermSuggestion(term=t, images=n) for t, n in _top_terms(session, viewer, counts.ANY, limit)]


# --------------------------------------------------------------------------- confidences


def confidence_bins(*, session: Session, viewer: Viewer) -> dict[int, int]:
    """Image-level model labels no person rejected, per whole confidence point (0..99; 100 is
    counted in 99)."""
    stmt = select(ConfidenceBin.bin, ConfidenceBin.labels).where(
        ConfidenceBin.owner_id == _totals_owner(viewer), ConfidenceBin.labels > 0
    )
    return {int(b): int(n) for b, n in session.execute(stmt)}


def model_confidences(*, session: Session, viewer: Viewer, limit: int = 200_000) -> list[float]:
    """Confidences of image-level model labels no person rejected (for a histogram; binned
    by the caller): what :func:`confidence_bins` counts."""
    stmt = _owned(
        select(LabelRow.confidence).where(*counts.not_rejected()),
        viewer,
        LabelRow.image_id,
    ).limit(limit)
    return [float(c) for c in session.scalars(stmt)]


# --------------------------------------------------------------------------- activity
# The Labels page's "over time" chart spans the viewer's first to last activity (not a fixed
# 30 days) and picks its bin (hour, day, week) from that span.


def activity_span(*, session: Session, viewer: Viewer) -> tuple[datetime, datetime] | None:
    """(first, last) upload or labelling time of the viewer's images; None without images."""
    first_up, last_up, last_lab = session.execute(
        _scoped(
            select(func.min(Image.created_at), func.max(Image.created_at), func.max(Image.labelled_at)),
            viewer,
        )
    ).one()
    if first_up is None:
        return None
    first, last = _utc(first_up), _utc(last_up)
    if last_lab is not None:
        last = max(last, _utc(last_lab))
    return first, last


def _utc(value: Any) -> datetime:
    # Aggregates bypass UTCDateTime's result processing: the value comes back naive (SQLite
    # may even return text), always UTC.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class HourCount:
    hour: str  # YYYY-MM-DD HH:00 (UTC)
    uploads: int = 0
    labelled: int = 0


def activity_per_hour(*, session: Session, viewer: Viewer, since: datetime) -> list[HourCount]:
    """Uploads (by ``created_at``) and images labelled (by ``labelled_at``) per UTC hour."""
    dialect = session.get_bind().dialect.name

    def hour(col: Any) -> Any:
        if dialect == "sqlite":
            return func.strftime("%Y-%m-%d %H:00", col)
        return func.date_format(col, "%Y-%m-%d %H:00")

    up, lab = hour(Image.created_at), hour(Image.labelled_at)
    uploads = _scoped(select(up, func.count()).where(Image.created_at >= since).group_by(up), viewer)
    labelled = _scoped(
        select(lab, func.count())
        .where(Image.labelled_at.is_not(None), Image.labelled_at >= since)
        .group_by(lab),
        viewer,
    )
    hours: dict[str, dict[str, int]] = {}
    for h, n in session.execute(uploads):
        hours.setdefault(str(h), {})["uploads"] = int(n)
    for h, n in session.execute(labelled):
        hours.setdefault(str(h), {})["labelled"] = int(n)
    return [HourCount(hour=h, **c) for h, c in sorted(hours.items())]


@dataclass(frozen=True, slots=True)
class DayCount:
    day: str  # YYYY-MM-DD (UTC)
    uploads: int = 0
    labelled: int = 0


def activity_per_day(*, session: Session, viewer: Viewer, since: datetime) -> list[DayCount]:
    """Uploads (by ``created_at``) and images labelled (by ``labelled_at``) per UTC day."""
    # DATE() exists on SQLite and MySQL alike, and both hold UTC (see UTCDateTime).
    up_day = func.date(Image.created_at)
    lab_day = func.date(Image.labelled_at)
    uploads = _scoped(select(up_day, func.count()).where(Image.created_at >= since).group_by(up_day), viewer)
    labelled = _scoped(
        select(lab_day, func.count())
        .where(Image.labelled_at.is_not(None), Image.labelled_at >= since)
        .group_by(lab_day),
        viewer,
    )
    days: dict[str, dict[str, int]] = {}
    for day, n in session.execute(uploads):
        days.setdefault(str(day), {})["uploads"] = int(n)
    for day, n in session.execute(labelled):
        days.setdefault(str(day), {})["labelled"] = int(n)
    return [DayCount(day=d, **c) for d, c in sorted(days.items())]


def labelled_times(
    *, session: Session, viewer: Viewer, since: datetime, limit: int = 100_000
) -> list[datetime]:
    """When images were labelled since ``since`` (the caller buckets them, e.g. per minute)."""
    stmt = _scoped(
        select(Image.labelled_at)
        .where(Image.labelled_at.is_not(None), Image.labelled_at >= since)
        .order_by(Image.labelled_at)
        .limit(limit),
        viewer,
    )
    return [t for t in session.scalars(stmt) if t is not None]


# --------------------------------------------------------------------------- co-occurrence, cards


@dataclass(frozen=True, slots=True)
class PairCount:
    a: str
    b: str
    images: int


def label_cooccurrence(
    *, session: Session, viewer: Viewer, names: Sequence[str], latest: int | None = None
) -> list[PairCount]:
    """For every pair of ``names`` (both orders, and a name with itself): images carrying both,
    each as a label or a parent (the gallery filter's "images with X"; a name with itself is
    its Labels-page count).

    ``latest`` counts only the viewer's ``latest`` most recently uploaded images: pairs cannot
    be kept as running totals (their number grows with the square of the vocabulary), and
    counting them over every image is O(images).
    """
    if not names:
        return []
    searchable = [TermKind.LABEL, TermKind.PARENT]
    left, right = aliased(ImageTerm), aliased(ImageTerm)
    stmt = (
        # A term can be both a label and a parent of one image: count the image once.
        select(left.term, right.term, func.count(func.distinct(left.image_id)))
        .select_from(left)
        .join(right, and_(right.image_id == left.image_id, right.kind.in_(searchable)))
        .where(left.kind.in_(searchable), left.term.in_(list(names)), right.term.in_(list(names)))
        .group_by(left.term, right.term)
    )
    if latest is None:
        stmt = _owned(stmt, viewer, left.image_id)
        return [PairCount(a=a, b=b, images=int(n)) for a, b, n in session.execute(stmt)]
    # The latest images: fetch their (image, name) rows for these names and count the pairs
    # here; a self-join in SQL costs ~4x more at 5,000 images (bench/queries.py).
    recent = (
        _scoped(select(Image.id), viewer)
        .order_by(Image.created_at.desc(), Image.id.desc())
        .limit(latest)
        .subquery()
    )
    rows = session.execute(
        select(ImageTerm.image_id, ImageTerm.term)
        .join(recent, recent.c.id == ImageTerm.image_id)
        .where(ImageTerm.kind.in_(searchable), ImageTerm.term.in_(list(names)))
    )
    per_image: dict[str, set[str]] = {}
    for image_id, term in rows:
        per_image.setdefault(image_id, set()).add(term)
    pairs: dict[tuple[str, str], int] = {}
    for terms in per_image.values():
        for a in terms:
            for b in terms:
                pairs[a, b] = pairs.get((a, b), 0) + 1
    return [PairCount(a=a, b=b, images=n) for (a, b), n in sorted(pairs.items())]


def primary_labels(
    *, session: Session, viewer: Viewer, image_ids: Iterable[str]
) -> dict[str, tuple[str, float]]:
    """Each of the viewer's images' headline label and its confidence (the rule:
    :mod:`labelkit.primary`), among its effective labels (``image_terms``: never one
    a person rejected, nor one only evidence for a rejected name; people's own at 100), with
    the boxes of the current model version and the ones people drew."""
    ids = sorted(set(image_ids))
    best: dict[str, tuple[str, float]] = {}
    for start in range(0, len(ids), _PRIMARY_CHUNK):
        best.update(_primary_labels(session, viewer, ids[start : start + _PRIMARY_CHUNK]))
    return best


_PRIMARY_CHUNK = 500


def _primary_labels(session: Session, viewer: Viewer, ids: list[str]) -> dict[str, tuple[str, float]]:
    stmt = _scoped(
        select(ImageTerm.image_id, ImageTerm.kind, ImageTerm.term, ImageTerm.confidence)
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.image_id.in_(ids), ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT])),
        viewer,
    )
    labels: dict[str, dict[str, float]] = {}
    parents: dict[str, set[str]] = {}
    for image_id, kind, term, conf in session.execute(stmt):
        if kind == TermKind.LABEL:
            labels.setdefault(image_id, {})[term] = float(conf)
        else:
            parents.setdefault(image_id, set()).add(term)
    rows = session.execute(
        _scoped(
            select(
                LabelRow.image_id,
                LabelRow.source,
                LabelRow.model_version,
                LabelRow.name,
                LabelRow.instance,
                LabelRow.review,
                LabelRow.implied_by,
                LabelRow.parents,
                LabelRow.categories,
                LabelRow.box_left,
                LabelRow.box_top,
                LabelRow.box_width,
                LabelRow.box_height,
                Image.model_version,
            )
            .join(Image, Image.id == LabelRow.image_id)
            .where(LabelRow.image_id.in_(list(labels))),
            viewer,
        )
    )
    boxes: dict[tuple[str, str], list[primary.Box]] = {}
    drawn: dict[tuple[str, str], list[primary.Box]] = {}
    info: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    by_model: set[tuple[str, str]] = set()
    for image_id, source, version, name, instance, review, implied, pars, cats, *box, current in rows:
        key = (image_id, name)
        human = LabelSource(source) == LabelSource.HUMAN
        if human and (implied or ReviewState(review) == ReviewState.REJECTED):
            continue
        if not human:
            by_model.add(key)
            if version != current:
                continue
        if instance == 0 or key not in info:
            info[key] = (list(pars or []), list(cats or []))
        if instance > 0 and box[0] is not None:
            (drawn if human else boxes).setdefault(key, []).append(
                (float(box[0]), float(box[1] or 0), float(box[2] or 0), float(box[3] or 0))
            )
    best: dict[str, tuple[str, float]] = {}
    for image_id, named in labels.items():
        above = parents.get(image_id, set())
        candidates = []
        for name, conf in named.items():
            key = (image_id, name)
            pars, cats = info.get(key, ([], []))
            candidates.append(
                primary.Candidate(
                    name=name,
                    confidence=conf,
                    categories=tuple(cats),
                    parents=tuple(p for p in pars if p in above or p in named),
                    boxes=tuple(drawn.get(key) or boxes.get(key, [])),
                    added_by_person=key in info and key not in by_model,
                )
            )
        chosen = primary.choose(candidates) or primary.choose(candidates, threshold=0.0)
        if chosen is not None:
            best[image_id] = (chosen, named[chosen])
    return best


# --------------------------------------------------------------------------- model versions
# And the rows compare mode reads (the agreement maths is :mod:`labelkit.compare`).


@dataclass(frozen=True, slots=True)
class ModelVersionCount:
    model_version: str
    images: int
    labels: int


def count_model_versions(*, session: Session, viewer: Viewer) -> int:
    """How many model versions labelled the viewer's images (from the running totals; the
    dashboard offers the Compare page from two)."""
    stmt = select(func.count()).where(
        TermCount.owner_id == _totals_owner(viewer),
        TermCount.kind == counts.MODEL_VERSION,
        TermCount.images > 0,
    )
    return int(session.scalar(stmt) or 0)


def model_versions(*, session: Session, viewer: Viewer) -> list[ModelVersionCount]:
    """Model versions that labelled the viewer's images, with image and label counts (most images first)."""
    stmt = _owned(
        select(
            LabelRow.model_version,
            func.count(func.distinct(LabelRow.image_id)),
            func.count(),
        )
        .where(LabelRow.source == LabelSource.MODEL, LabelRow.instance == 0)
        .group_by(LabelRow.model_version),
        viewer,
        LabelRow.image_id,
    )
    rows = [
        ModelVersionCount(model_version=str(v), images=int(i), labels=int(n))
        for v, i, n in session.execute(stmt)
    ]
    return sorted(rows, key=lambda r: (-r.images, r.model_version))


@dataclass(frozen=True, slots=True)
class VersionLabels:
    """What compare mode reads for two model versions (the maths is :mod:`labelkit.compare`)."""

    # (image id, model version, name, parents, aliases) of their image-level model labels
    rows: list[tuple[str, str, str, list[str] | None, list[str] | None]]
    ran_both: list[str]  # images both versions ran on (even if one found nothing)


def version_labels(
    *, session: Session, viewer: Viewer, version_a: str, version_b: str, limit: int = 500_000
) -> VersionLabels:
    """The image-level model labels of two model versions on the viewer's images, and the
    images both versions ran on."""
    stmt = _scoped(
        select(LabelRow.image_id, LabelRow.model_version, LabelRow.name, LabelRow.parents, LabelRow.aliases)
        .join(Image, Image.id == LabelRow.image_id)
        .where(
            LabelRow.source == LabelSource.MODEL,
            LabelRow.instance == 0,
            LabelRow.model_version.in_([version_a, version_b]),
        )
        .limit(limit),
        viewer,
    )
    rows: list[tuple[str, str, str, list[str] | None, list[str] | None]] = [
        (image_id, version, name, parents, aliases)
        for image_id, version, name, parents, aliases in session.execute(stmt)
    ]
    # Images both versions ran on, even if one found nothing (its rows are then absent):
    # the pipeline records every version it ran as "a+b" on the image.
    ran_both = _scoped(
        select(Image.id, Image.model_version).where(
            Image.model_version.contains(version_a), Image.model_version.contains(version_b)
        ),
        viewer,
    )
    both = [
        image_id
        for image_id, joined in session.execute(ran_both)
        if {version_a, version_b} <= set(str(joined).split("+"))
    ]
    return VersionLabels(rows=rows, ran_both=both)
