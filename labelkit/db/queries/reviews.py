"""What awaits review: the review queue per label (lowest confidence first) and per photo
(every awaiting model label of an image, with its boxes, at once), their counts, and
confirming or rejecting every awaiting label of chosen photos.

"Awaiting review" is :func:`labelkit.db.counts.awaiting_review`, the same condition as the
review-queue count and the gallery's "unreviewed" filter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from labelkit.db.models import ALL_OWNERS, Image, LabelCount, LabelRow, LabelSource, ReviewState
from labelkit.db.queries._scope import _IN_CHUNK, _awaiting_review, _scoped, _totals_owner
from labelkit.db.queries.images import images_by_ids
from labelkit.db.queries.labels import HumanLabel, set_human_labels
from labelkit.domain import Viewer


def review_queue(*, session: Session, viewer: Viewer, limit: int = 50, offset: int = 0) -> list[LabelRow]:
    """Model labels (image level) no person has confirmed or rejected yet, lowest confidence first."""
    stmt = (
        select(LabelRow)
        .join(Image, Image.id == LabelRow.image_id)
        .where(*_awaiting_review())
        .order_by(LabelRow.confidence.asc(), LabelRow.id)
        .limit(limit)
        .offset(offset)
    )
    if not viewer.is_admin and _owns_a_large_share(session, viewer):
        # Walk the labels in confidence order (ix_labels_source_conf) and stop after a page:
        # with >= 1% of the awaiting labels that finds a page within ~100 x page rows. MySQL
        # would otherwise start from the user's images and sort all their labels (seconds
        # for a user with 100,000 images); for a small user that plan is the right one.
        stmt = stmt.prefix_with("STRAIGHT_JOIN", dialect="mysql")
    return list(session.scalars(_scoped(stmt, viewer)))


def count_review_queue(*, session: Session, viewer: Viewer) -> int:
    """How many labels :func:`review_queue` would page through."""
    stmt = select(func.sum(LabelCount.awaiting)).where(LabelCount.owner_id == _totals_owner(viewer))
    return int(session.scalar(stmt) or 0)


def _owns_a_large_share(session: Session, viewer: Viewer) -> bool:
    if session.get_bind().dialect.name not in ("mysql", "mariadb"):
        return False  # the plan choice it feeds is MySQL's STRAIGHT_JOIN
    everyone = count_review_queue(session=session, viewer=Viewer(user_id=ALL_OWNERS, is_admin=True))
    return everyone > 0 and count_review_queue(session=session, viewer=viewer) >= everyone / 100


@dataclass(frozen=True, slots=True)
class ReviewLabel:
    """A model label awaiting review on one image (the most confident row of that name)."""

    name: str
    confidence: float
    parents: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # left, top, w, h
    suggested: bool = False  # a suggestion from what the owner taught (source ``learned``)


@dataclass(frozen=True, slots=True)
class ReviewImage:
    image: Image
    labels: list[ReviewLabel]  # least certain first


def _images_awaiting(viewer: Viewer) -> Select[str, float]:
    """(image id, least confidence among its labels awaiting review) per image: images with a
    taught label's suggestion first (issue #27), then the least certain first."""
    least = func.min(LabelRow.confidence)
    suggested = func.max(case((LabelRow.source == LabelSource.LEARNED, 1), else_=0))
    return _scoped(
        select(LabelRow.image_id, least.label("least"))
        .join(Image, Image.id == LabelRow.image_id)
        .where(*_awaiting_review())
        .group_by(LabelRow.image_id)
        .order_by(suggested.desc(), least.asc(), LabelRow.image_id),
        viewer,
    )


def count_review_images(*, session: Session, viewer: Viewer) -> int:
    """How many of the viewer's images have a model label awaiting review (O(awaiting labels))."""
    stmt = _scoped(
        select(func.count(func.distinct(LabelRow.image_id)))
        .join(Image, Image.id == LabelRow.image_id)
        .where(*_awaiting_review()),
        viewer,
    )
    return int(session.scalar(stmt) or 0)


def review_image_ids(*, session: Session, viewer: Viewer, limit: int | None = None) -> list[str]:
    """Ids of the viewer's images with labels awaiting review, in review order (the Review
    page's "select all": every matching photo, not only the page shown)."""
    stmt = _images_awaiting(viewer)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [str(image_id) for image_id, _ in session.execute(stmt)]


def review_images(*, session: Session, viewer: Viewer, limit: int = 10, offset: int = 0) -> list[ReviewImage]:
    """A page of the viewer's images with labels awaiting review, the image with the least
    certain such label first; each with all its awaiting labels and their boxes."""
    order = [str(i) for i, _ in session.execute(_images_awaiting(viewer).limit(limit).offset(offset))]
    if not order:
        return []
    images = images_by_ids(session=session, viewer=viewer, image_ids=order)
    rows = session.scalars(
        select(LabelRow)
        .where(LabelRow.image_id.in_(order), *_awaiting_review())
        .order_by(LabelRow.image_id, LabelRow.confidence.desc(), LabelRow.id)
    )
    best: dict[tuple[str, str], LabelRow] = {}
    for r in rows:
        best.setdefault((r.image_id, r.name), r)  # compare mode: one entry per name
    boxes: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    box_rows = session.execute(
        select(
            LabelRow.image_id,
            LabelRow.name,
            LabelRow.box_left,
            LabelRow.box_top,
            LabelRow.box_width,
            LabelRow.box_height,
        )
        .where(
            LabelRow.image_id.in_(order),
            LabelRow.source == LabelSource.MODEL,
            LabelRow.instance > 0,
            LabelRow.box_left.is_not(None),
        )
        .order_by(LabelRow.image_id, LabelRow.name, LabelRow.model_version, LabelRow.instance)
    )
    for image_id, name, left, top, width, height in box_rows:
        if (image_id, name) in best:
            boxes.setdefault((image_id, name), []).append(
                (float(left or 0.0), float(top or 0.0), float(width or 0.0), float(height or 0.0))
            )
    out = []
    for image_id in order:
        if image_id not in images:
            continue
        labels = sorted(
            (
                ReviewLabel(
                    name=r.name,
                    confidence=float(r.confidence),
                    parents=list(r.parents or []),
                    boxes=boxes.get((image_id, r.name), []),
                    suggested=r.source == LabelSource.LEARNED,
                )
                for (i, _), r in best.items()
                if i == image_id
            ),
            key=lambda lab: (not lab.suggested, lab.confidence, lab.name),
        )
        out.append(ReviewImage(image=images[image_id], labels=labels))
    return out


def awaiting_pairs(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> list[tuple[str, str]]:
    """(image id, label name) of every label awaiting review on the viewer's images among
    ``image_ids`` (others are left out, as if missing), in image then name order."""
    ids = sorted(set(image_ids))
    out: list[tuple[str, str]] = []
    for start in range(0, len(ids), _IN_CHUNK):
        out += [
            (str(i), str(n))
            for i, n in session.execute(
                _scoped(
                    select(LabelRow.image_id, LabelRow.name)
                    .join(Image, Image.id == LabelRow.image_id)
                    .where(LabelRow.image_id.in_(ids[start : start + _IN_CHUNK]), *_awaiting_review())
                    .distinct()
                    .order_by(LabelRow.image_id, LabelRow.name),
                    viewer,
                )
            )
        ]
    return out


def set_review_for_images(
    *, session: Session, viewer: Viewer, image_ids: Iterable[str], review: ReviewState
) -> int:
    """Confirm or reject every label awaiting review on the viewer's images among
    ``image_ids`` (others are left out, as if missing); returns how many labels were reviewed.
    Labels people already reviewed keep their answer. One write per image (all its labels at
    once); :mod:`labelkit.reviewing` splits large selections into short transactions."""
    by_image: dict[str, list[str]] = {}
    for image_id, name in awaiting_pairs(session=session, viewer=viewer, image_ids=image_ids):
        by_image.setdefault(image_id, []).append(name)
    done = 0
    for image_id, names in by_image.items():
        set_human_labels(
            session=session,
            viewer=viewer,
            image_id=image_id,
            labels=[HumanLabel(name, review) for name in names],
        )
        done += len(names)
    return done
