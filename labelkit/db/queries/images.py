"""Images as people see them: uploading a row, finding one, the gallery's page and
filters (:class:`ImageFilter`), status counts, deleting, retry and relabel, and images by
ids or object keys.

Scoped by the :class:`~labelkit.domain.Viewer`: another user's image id behaves exactly
like an id that does not exist (``NotFound``), so ids leak nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from labelkit.db import counts
from labelkit.db.models import (
    FaceGroupingOff,
    FaceRow,
    Image,
    ImageFeatureRow,
    ImageStatus,
    ImageTerm,
    ImageTextRow,
    LabelRow,
    LabelSource,
    ReviewState,
    TermKind,
    new_id,
    utcnow,
)
from labelkit.db.queries import people as people_q
from labelkit.db.queries._scope import _awaiting_review, _scoped, _term_total, _totals_owner
from labelkit.domain import FACE_LABEL, Viewer
from labelkit.errors import NotFound


def object_key_for(owner_id: str, image_id: str, extension: str) -> str:
    """Keys are never built from user input: owner id, random image id, sniffed extension."""
    return f"users/{owner_id}/{image_id}{extension}"


def find_duplicate(*, session: Session, owner_id: str, sha256: str) -> Image | None:
    return session.scalar(select(Image).where(Image.owner_id == owner_id, Image.sha256 == sha256))


def create_image(
    *,
    session: Session,
    owner_id: str,
    original_name: str,
    content_type: str,
    extension: str,
    size_bytes: int,
    width: int,
    height: int,
    sha256: str,
) -> Image:
    image_id = new_id()
    image = Image(
        id=image_id,
        owner_id=owner_id,
        object_key=object_key_for(owner_id, image_id, extension),
        original_name=original_name,
        content_type=content_type,
        bytes=size_bytes,
        width=width,
        height=height,
        sha256=sha256,
        status=ImageStatus.PENDING,
        attempts=0,
    )
    session.add(image)
    session.flush()
    return image


def get_image(*, session: Session, viewer: Viewer, image_id: str) -> Image:
    """The image, if the viewer may see it; otherwise ``NotFound`` (same as missing)."""
    image = session.scalar(_scoped(select(Image).where(Image.id == image_id), viewer))
    if image is None:
        raise NotFound(f"no image {image_id!r}")
    return image


class ReviewFilter(enum.StrEnum):
    """The gallery's review filter.

    ``unreviewed``: a model label on the image awaits review (the Review page lists it);
    ``reviewed``: a person reviewed the image and none of its model labels awaits review;
    ``rejected``: a person rejected at least one of its labels.
    """

    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ImageFilter:
    """Gallery filters. ``label`` matches a label name or any of its parents."""

    label: str | None = None
    category: str | None = None
    status: ImageStatus | None = None
    min_confidence: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    owner_id: str | None = None  # admins may narrow to one owner
    review: ReviewFilter | None = None  # where people's reviews stand (see ReviewFilter)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Image]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _filtered_images(viewer: Viewer, flt: ImageFilter) -> Select[Any]:
    stmt = _scoped(select(Image), viewer)
    if flt.owner_id is not None:
        stmt = stmt.where(Image.owner_id == flt.owner_id)
    if flt.status is not None:
        stmt = stmt.where(Image.status == flt.status)
    if flt.since is not None:
        stmt = stmt.where(Image.created_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(Image.created_at < flt.until)
    if flt.label:
        # image_terms carries each label name and parent with the best confidence
        # behind it, so "Animal >= 80" finds an image whose "Cat" is 85.
        cond = [
            ImageTerm.image_id == Image.id,
            ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT]),
            ImageTerm.term == flt.label.strip(),
        ]
        if flt.min_confidence is not None:
            cond.append(ImageTerm.confidence >= flt.min_confidence)
        stmt = stmt.where(exists().where(*cond))
    elif flt.min_confidence is not None:
        stmt = stmt.where(
            exists().where(
                ImageTerm.image_id == Image.id,
                ImageTerm.kind == TermKind.LABEL,
                ImageTerm.confidence >= flt.min_confidence,
            )
        )
    if flt.category:
        stmt = stmt.where(
            exists().where(
                ImageTerm.image_id == Image.id,
                ImageTerm.kind == TermKind.CATEGORY,
                ImageTerm.term == flt.category.strip(),
            )
        )
    if flt.review is not None:
        stmt = stmt.where(_review_condition(ReviewFilter(flt.review)))
    return stmt


def _review_condition(review: ReviewFilter) -> Any:
    """A condition on ``Image`` for the gallery's review filter."""
    awaiting = exists().where(LabelRow.image_id == Image.id, *_awaiting_review())
    human = aliased(LabelRow)
    if review == ReviewFilter.UNREVIEWED:
        return awaiting
    if review == ReviewFilter.REJECTED:
        return exists().where(
            human.image_id == Image.id,
            human.source == LabelSource.HUMAN,
            human.review == ReviewState.REJECTED,
        )
    reviewed = exists().where(
        human.image_id == Image.id,
        human.source == LabelSource.HUMAN,
        human.review != ReviewState.UNREVIEWED,
    )
    return and_(reviewed, ~awaiting)


def list_images(
    *,
    session: Session,
    viewer: Viewer,
    flt: ImageFilter | None = None,
    page: int = 1,
    page_size: int = 24,
) -> Page:
    """A page of the viewer's images, newest first."""
    flt = flt or ImageFilter()
    page = max(1, page)
    base = _filtered_images(viewer, flt)
    total = _label_only_total(session, viewer, flt)
    if total is None:
        total = int(session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    items = session.scalars(
        base.order_by(Image.created_at.desc(), Image.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return Page(items=list(items), total=total, page=page, page_size=page_size)


@dataclass(frozen=True, slots=True)
class Neighbours:
    """An image's place in the gallery's order (newest first) within a filter: the image
    shown before it (``newer``), the one after it (``older``), and how many come before it."""

    newer: str | None
    older: str | None
    position: int  # 0 for the first image of the gallery


def neighbours(*, session: Session, viewer: Viewer, flt: ImageFilter | None, image_id: str) -> Neighbours:
    """The images before and after ``image_id`` in :func:`list_images`' order under ``flt``
    (the image itself need not match the filter: it is placed where it would sort).
    ``NotFound`` for an image the viewer cannot see."""
    current = get_image(session=session, viewer=viewer, image_id=image_id)
    base = _filtered_images(viewer, flt or ImageFilter()).with_only_columns(Image.id)
    at, key = current.created_at, current.id
    before = or_(Image.created_at > at, and_(Image.created_at == at, Image.id > key))
    after = or_(Image.created_at < at, and_(Image.created_at == at, Image.id < key))
    newer = session.scalar(base.where(before).order_by(Image.created_at.asc(), Image.id.asc()).limit(1))
    older = session.scalar(base.where(after).order_by(Image.created_at.desc(), Image.id.desc()).limit(1))
    position = 0
    if newer is not None:
        position = int(session.scalar(select(func.count()).select_from(base.where(before).subquery())) or 0)
    return Neighbours(newer=newer, older=older, position=position)


def _label_only_total(session: Session, viewer: Viewer, flt: ImageFilter) -> int | None:
    """The total of a label-only filter from the running totals (counting the matches is
    O(matches): seconds for a common label over everyone's images), else None."""
    only_label = ImageFilter(label=flt.label, owner_id=flt.owner_id)
    if not flt.label or flt != only_label:
        return None
    if flt.owner_id is not None and not viewer.is_admin and flt.owner_id != viewer.user_id:
        return None  # another user's images: the scoped query finds none
    owner = flt.owner_id if flt.owner_id is not None else _totals_owner(viewer)
    return _term_total(session, owner, counts.ANY, flt.label.strip())


def status_counts(*, session: Session, viewer: Viewer) -> dict[ImageStatus, int]:
    stmt = _scoped(select(Image.status, func.count()).group_by(Image.status), viewer)
    per_status = dict.fromkeys(ImageStatus, 0)
    for status, n in session.execute(stmt):
        per_status[ImageStatus(status)] = int(n)
    return per_status


def delete_image(*, session: Session, viewer: Viewer, image_id: str) -> str:
    """Delete the image's rows (labels and terms cascade). Returns its object key,
    which the caller deletes from the store after the transaction commits."""
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    key = image.object_key
    with counts.counting(session, [image.id]):
        # Explicit deletes as well as ON DELETE CASCADE: SQLite only cascades with
        # foreign_keys=ON, and connections made elsewhere may not set it.
        session.execute(delete(ImageTerm).where(ImageTerm.image_id == image.id))
        session.execute(delete(LabelRow).where(LabelRow.image_id == image.id))
    session.execute(delete(ImageTextRow).where(ImageTextRow.image_id == image.id))
    # Its faces (personal data) go too; a person left with no face goes with them.
    touched = people_q.delete_image_faces(session=session, image_ids=[image.id])
    if touched:
        people_q.delete_empty_people(session=session, owner_id=image.owner_id)
        people_q.fix_covers(session=session, owner_id=image.owner_id, person_ids=touched)
    session.execute(delete(Image).where(Image.id == image.id))
    return key


def reset_for_retry(*, session: Session, viewer: Viewer, image_id: str) -> Image:
    """Put a failed (or stuck) image back to pending so it can be enqueued again."""
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    image.status = ImageStatus.PENDING
    image.failure_reason = None
    image.attempts = 0
    image.queued_at = None  # set again once the new job is enqueued
    return image


def mark_queued(*, session: Session, image_id: str) -> None:
    """The image's labelling job is surely on its way (enqueued, or stored where S3 notifies)."""
    session.execute(update(Image).where(Image.id == image_id).values(queued_at=utcnow()))


def mark_for_relabel(
    *,
    session: Session,
    viewer: Viewer,
    model_version: str,
    missing_features: bool = False,
    limit: int | None = None,
) -> list[tuple[str, str, int]]:
    """Put the viewer's images labelled by another configuration back to pending (their
    labels stay until the new ones replace them); returns (id, object key, size) to enqueue.
    ``missing_features``: also those labelled before the worker stored features (no hash,
    embedding or thumbnail: similar photos and duplicates do not see them), whatever their
    configuration. Oldest first, at most ``limit``."""
    outdated: Any = Image.model_version != model_version
    if missing_features:
        outdated = or_(outdated, ~exists().where(ImageFeatureRow.image_id == Image.id))
        if not people_q.grouping_off_for_everyone(session=session):
            # Faces boxed before faces were grouped (or while the owner had it off): none stored.
            # A photo whose faces were all too small to describe is picked again each time.
            boxed = exists().where(
                LabelRow.image_id == Image.id,
                LabelRow.source == LabelSource.MODEL,
                LabelRow.name == FACE_LABEL,
                LabelRow.instance > 0,
            )
            off = select(FaceGroupingOff.owner_id)
            no_faces = ~exists().where(FaceRow.image_id == Image.id)
            outdated = or_(outdated, and_(boxed, no_faces, Image.owner_id.not_in(off)))
    labelled = select(Image).where(Image.status == ImageStatus.LABELLED, outdated)
    stmt = _scoped(labelled.order_by(Image.created_at, Image.id), viewer)
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    for image in session.scalars(stmt):
        image.status = ImageStatus.PENDING
        image.attempts = 0
        image.queued_at = None  # set again once its new job is enqueued
        out.append((image.id, image.object_key, int(image.bytes)))
    return out


def images_by_ids(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> dict[str, Image]:
    """The viewer's images among ``image_ids`` (others are silently left out)."""
    ids = sorted(set(image_ids))
    if not ids:
        return {}
    rows = session.scalars(_scoped(select(Image).where(Image.id.in_(ids)), viewer))
    return {img.id: img for img in rows}


def failed_images(*, session: Session, viewer: Viewer, limit: int = 100) -> list[Image]:
    """Failed images with their reasons, most recently failed first."""
    stmt = _scoped(
        select(Image)
        .where(Image.status == ImageStatus.FAILED)
        .order_by(Image.updated_at.desc(), Image.id)
        .limit(limit),
        viewer,
    )
    return list(session.scalars(stmt))


def images_by_object_keys(*, session: Session, viewer: Viewer, keys: Iterable[str]) -> dict[str, Image]:
    """The viewer's images among these object keys (to name dead letters)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(_scoped(select(Image).where(Image.object_key.in_(wanted)), viewer))
    return {img.object_key: img for img in rows}
