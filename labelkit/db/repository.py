"""Every query Labelkit makes, in one module.

Functions are keyword-only and take the ``Session`` first; callers own the
transaction. Functions that act for a person take a :class:`Viewer` and are
scoped to that person's images (admins see all): another user's image id
behaves exactly like an id that does not exist (``NotFound``), so ids leak
nothing. Worker-side functions (``*_for_worker``) are unscoped on purpose: the
pipeline acts for the system, by object key.

Writes of model labels are idempotent: the unique key (image, source, model
version, name, instance) plus insert-or-ignore means a re-delivered job writes
nothing new.

Every write to labels or terms runs inside :func:`labelkit.db.counts.counting`, which
keeps the running totals (label counts, term counts, confidence bins) in step; the
dashboard's counts and charts read those totals, not the rows (issue #9).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, delete, exists, func, select, update
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session, aliased

from labelkit.db import counts
from labelkit.db.models import (
    ALL_OWNERS,
    ConfidenceBin,
    Image,
    ImageStatus,
    ImageTerm,
    LabelCount,
    LabelRow,
    LabelSource,
    ReviewState,
    TermCount,
    TermKind,
    User,
    new_id,
    utcnow,
)
from labelkit.domain import LabelResult, Viewer
from labelkit.errors import NotFound

# --------------------------------------------------------------------------- scoping


_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


def _scoped(stmt: _S, viewer: Viewer) -> _S:
    return stmt if viewer.is_admin else stmt.where(Image.owner_id == viewer.user_id)


def _totals_owner(viewer: Viewer) -> str:
    """Whose running totals the viewer reads: their own, or everyone's (``*``) for admins."""
    return ALL_OWNERS if viewer.is_admin else viewer.user_id


def _owned(stmt: _S, viewer: Viewer, image_id: Any) -> _S:
    """Scope rows that belong to an image (``image_id``) to the viewer's images.

    Admins see every row and need no join to ``images``: the foreign key (ON DELETE
    CASCADE, plus the explicit deletes in :func:`delete_image`) means every row's image
    exists. Without the join the aggregates read one covering index (issue #9).
    """
    if viewer.is_admin:
        return stmt
    return stmt.join(Image, Image.id == image_id).where(Image.owner_id == viewer.user_id)


# --------------------------------------------------------------------------- helpers


def _insert_ignore(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, silently skipping those that hit a unique key."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite_dialect.insert(table).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        # "pk = pk" changes nothing, so MySQL reports 0 rows for a duplicate (and,
        # unlike INSERT IGNORE, other errors such as truncation still raise).
        first_pk = next(iter(table.primary_key.columns))
        stmt = mysql_dialect.insert(table).on_duplicate_key_update({first_pk.name: first_pk})
    elif dialect == "postgresql":
        stmt = pg_dialect.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other backends are not supported
        raise NotImplementedError(dialect)
    session.execute(stmt, list(rows))


# --------------------------------------------------------------------------- users


def normalize_username(username: str) -> str:
    return username.strip().casefold()


def count_users(*, session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def create_user(
    *,
    session: Session,
    username: str,
    password_hash: str | None,
    email: str | None = None,
    is_admin: bool | None = None,
    user_id: str | None = None,
) -> User:
    """Create an account. With ``is_admin=None`` the first account becomes admin."""
    if is_admin is None:
        is_admin = count_users(session=session) == 0
    user = User(
        id=user_id or new_id(),
        username=normalize_username(username),
        email=email,
        password_hash=password_hash,
        is_admin=is_admin,
    )
    session.add(user)
    session.flush()
    return user


def get_user(*, session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


def get_user_by_username(*, session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == normalize_username(username)))


def upsert_external_user(
    *, session: Session, user_id: str, username: str, email: str | None, is_admin: bool
) -> User:
    """Mirror a user from an outside identity provider (Cognito ``sub``)."""
    user = session.get(User, user_id)
    if user is None:
        return create_user(
            session=session,
            username=username,
            password_hash=None,
            email=email,
            is_admin=is_admin,
            user_id=user_id,
        )
    user.username, user.email, user.is_admin = normalize_username(username), email, is_admin
    user.last_login_at = utcnow()
    return user


# --------------------------------------------------------------------------- images


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


def _term_total(session: Session, owner: str, kind: str, term: str) -> int:
    stmt = select(TermCount.images).where(
        TermCount.owner_id == owner, TermCount.kind == kind, TermCount.term == term
    )
    return int(session.scalar(stmt) or 0)


def status_counts(*, session: Session, viewer: Viewer) -> dict[ImageStatus, int]:
    stmt = _scoped(select(Image.status, func.count()).group_by(Image.status), viewer)
    counts = dict.fromkeys(ImageStatus, 0)
    for status, n in session.execute(stmt):
        counts[ImageStatus(status)] = int(n)
    return counts


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


# --------------------------------------------------------------------------- worker side


def get_image_by_key_for_worker(*, session: Session, object_key: str, lock: bool = False) -> Image | None:
    stmt = select(Image).where(Image.object_key == object_key)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def mark_queued(*, session: Session, image_id: str) -> None:
    """The image's labelling job is surely on its way (enqueued, or stored where S3 notifies)."""
    session.execute(update(Image).where(Image.id == image_id).values(queued_at=utcnow()))


@dataclass(frozen=True, slots=True)
class UnqueuedImage:
    id: str
    object_key: str
    bytes: int


def never_queued_for_worker(
    *, session: Session, older_than_seconds: float, limit: int = 500
) -> list[UnqueuedImage]:
    """Images still ``pending`` with no job handed to the queue ``older_than_seconds`` after
    their last change: the upload (or a retry) stopped between writing the row and enqueueing."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    rows = session.execute(
        select(Image.id, Image.object_key, Image.bytes)
        .where(Image.status == ImageStatus.PENDING, Image.queued_at.is_(None), Image.updated_at < cutoff)
        .order_by(Image.updated_at)
        .limit(limit)
    )
    return [UnqueuedImage(id=i, object_key=k, bytes=int(b)) for i, k, b in rows]


def exhausted_for_worker(
    *, session: Session, max_attempts: int, older_than_seconds: float, limit: int = 500
) -> list[str]:
    """Ids of images still ``labelling`` after their last allowed attempt began more than
    ``older_than_seconds`` ago: no delivery will come again (the queue dead-letters it)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            select(Image.id)
            .where(
                Image.status == ImageStatus.LABELLING,
                Image.attempts >= max_attempts,
                Image.updated_at < cutoff,
            )
            .order_by(Image.updated_at)
            .limit(limit)
        )
    )


def fail_unfinished_for_worker(*, session: Session, image_id: str, reason: str) -> bool:
    """Mark the image failed if it is still pending or labelling (never over a result).

    Returns whether it was changed."""
    result = session.execute(
        update(Image)
        .where(Image.id == image_id, Image.status.in_([ImageStatus.PENDING, ImageStatus.LABELLING]))
        .values(status=ImageStatus.FAILED, failure_reason=reason[:2000], updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_labelling(*, session: Session, image_id: str) -> int:
    """Record an attempt; returns the attempt number."""
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(status=ImageStatus.LABELLING, attempts=Image.attempts + 1, updated_at=utcnow())
    )
    return int(session.scalar(select(Image.attempts).where(Image.id == image_id)) or 0)


def mark_failed(*, session: Session, image_id: str, reason: str) -> None:
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(status=ImageStatus.FAILED, failure_reason=reason[:2000], updated_at=utcnow())
    )


def model_versions_for_image(*, session: Session, image_id: str) -> set[str]:
    rows = session.scalars(
        select(LabelRow.model_version)
        .where(LabelRow.image_id == image_id, LabelRow.source == LabelSource.MODEL)
        .distinct()
    )
    return set(rows)


def version_family(model_version: str) -> str:
    """The labeller a model version belongs to: its first dash-separated word
    (``efficientnet-lite2-...`` -> ``efficientnet``, ``rekognition-3.0`` -> ``rekognition``)."""
    return model_version.split("-", 1)[0]


def save_model_labels(*, session: Session, image_id: str, result: LabelResult) -> int:
    """Write a labeller's result for an image, idempotently. Returns the label rows in the result.

    The result replaces the image's model labels written by *earlier versions of the same
    labeller* (same :func:`version_family`: relabelling with a new local model replaces the
    old local labels, never Rekognition's in compare mode); human rows (reviews, added
    labels) are kept. Until an image is relabelled, its old labels stay as they are.

    A result with no labels still records the model version (on the image) so a
    re-delivery knows the work is done.
    """
    with counts.counting(session, [image_id]):
        _replace_older_versions(session, image_id, result.model_version)
        return _save_model_labels(session, image_id, result)


def _replace_older_versions(session: Session, image_id: str, model_version: str) -> None:
    family = version_family(model_version)
    older = [
        v
        for v in model_versions_for_image(session=session, image_id=image_id)
        if v != model_version and version_family(v) == family
    ]
    if not older:
        return  # the usual case: one extra indexed read per write
    session.execute(
        delete(LabelRow).where(
            LabelRow.image_id == image_id,
            LabelRow.source == LabelSource.MODEL,
            LabelRow.model_version.in_(older),
        )
    )
    # The image's terms follow from the rows left (counts.counting derives them).


def outdated_images_for_worker(
    *, session: Session, model_version: str, limit: int | None = None
) -> list[Image]:
    """Labelled images whose labels come from another configuration than ``model_version``
    (the pipeline's: its labellers' versions joined by '+'), oldest first."""
    stmt = (
        select(Image)
        .where(Image.status == ImageStatus.LABELLED, Image.model_version != model_version)
        .order_by(Image.created_at, Image.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def mark_for_relabel(*, session: Session, viewer: Viewer, model_version: str) -> list[tuple[str, str, int]]:
    """Put the viewer's images labelled by another configuration back to pending (their
    labels stay until the new ones replace them); returns (id, object key, size) to enqueue."""
    stmt = _scoped(
        select(Image).where(Image.status == ImageStatus.LABELLED, Image.model_version != model_version),
        viewer,
    )
    out = []
    for image in session.scalars(stmt):
        image.status = ImageStatus.PENDING
        image.attempts = 0
        image.queued_at = None  # set again once its new job is enqueued
        out.append((image.id, image.object_key, int(image.bytes)))
    return out


def _save_model_labels(session: Session, image_id: str, result: LabelResult) -> int:
    rows: list[dict[str, Any]] = []
    for lab in result.labels:
        common = {
            "image_id": image_id,
            "source": LabelSource.MODEL,
            "model_version": result.model_version,
            "name": lab.name[:128],
            "parents": list(lab.parents),
            "aliases": list(lab.aliases),
            "categories": list(lab.categories),
            "review": ReviewState.UNREVIEWED,
            "created_at": utcnow(),
            # Every row needs every key: a multi-row INSERT takes its columns from the
            # first row, so box values on later rows were silently dropped.
            "box_left": None,
            "box_top": None,
            "box_width": None,
            "box_height": None,
        }
        rows.append({**common, "instance": 0, "confidence": lab.confidence})
        for i, inst in enumerate(lab.instances, start=1):
            rows.append(
                {
                    **common,
                    "instance": i,
                    "confidence": inst.confidence,
                    "box_left": inst.box.left,
                    "box_top": inst.box.top,
                    "box_width": inst.box.width,
                    "box_height": inst.box.height,
                }
            )
    _insert_ignore(session, LabelRow.__table__, rows)
    # image_terms follow from the rows (counts.counting derives them after this write).
    return len(rows)


def mark_labelled(
    *,
    session: Session,
    image_id: str,
    model_version: str,
    properties: dict[str, Any] | None,
) -> None:
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(
            status=ImageStatus.LABELLED,
            failure_reason=None,
            model_version=model_version[:64],
            properties=properties,
            labelled_at=utcnow(),
            updated_at=utcnow(),
        )
    )


# --------------------------------------------------------------------------- labels (people)


def labels_for_image(*, session: Session, viewer: Viewer, image_id: str) -> list[LabelRow]:
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    rows = session.scalars(
        select(LabelRow)
        .where(LabelRow.image_id == image.id)
        .order_by(LabelRow.source, LabelRow.confidence.desc(), LabelRow.name, LabelRow.instance)
    )
    return list(rows)


def set_human_label(
    *,
    session: Session,
    viewer: Viewer,
    image_id: str,
    name: str,
    review: ReviewState,
) -> LabelRow:
    """Confirm, reject or add a label as a person (stored beside the model's labels).

    Adding is confirming a name the model did not give. Repeating an action
    updates the same human row (who and when) rather than adding another.
    """
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    with counts.counting(session, [image.id]):
        return _set_human_label(session, viewer, image, name, review)


def _set_human_label(
    session: Session, viewer: Viewer, image: Image, name: str, review: ReviewState
) -> LabelRow:
    clean = " ".join(name.split())[:128]
    if not clean:
        raise ValueError("a label needs a name")
    # A locking read: with the image locked (counting), it sees a row another transaction
    # committed meanwhile (a plain read could use an older snapshot and insert a duplicate).
    row = session.scalar(
        select(LabelRow)
        .where(
            LabelRow.image_id == image.id,
            LabelRow.source == LabelSource.HUMAN,
            LabelRow.model_version == "",
            LabelRow.name == clean,
            LabelRow.instance == 0,
        )
        .with_for_update()
    )
    if row is None:
        model = session.scalar(
            select(LabelRow)
            .where(LabelRow.image_id == image.id, LabelRow.name == clean, LabelRow.instance == 0)
            .limit(1)
        )
        row = LabelRow(
            image_id=image.id,
            source=LabelSource.HUMAN,
            model_version="",
            name=clean,
            instance=0,
            confidence=100.0,
            parents=list(model.parents) if model else [],
            aliases=list(model.aliases) if model else [],
            categories=list(model.categories) if model else [],
        )
        session.add(row)
    row.review = review
    row.created_by = viewer.user_id
    row.created_at = utcnow()
    session.flush()
    # The image's terms follow from its rows (counts.counting derives them): a rejection
    # takes the name (and the parents only it brought) out of search, counts and cards.
    return row


def _awaiting_review() -> list[Any]:
    """Image-level model labels with no human row of the same name on the image."""
    return counts.awaiting_review()


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


def _owns_a_large_share(session: Session, viewer: Viewer) -> bool:
    if session.get_bind().dialect.name not in ("mysql", "mariadb"):
        return False  # the plan choice it feeds is MySQL's STRAIGHT_JOIN
    everyone = count_review_queue(session=session, viewer=Viewer(user_id=ALL_OWNERS, is_admin=True))
    return everyone > 0 and count_review_queue(session=session, viewer=viewer) >= everyone / 100


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


# --------------------------------------------------------------------------- review per photo
# The Review page works per photo: every model label of an image that awaits review, with
# its boxes, at once. "Awaiting review" is :func:`labelkit.db.counts.awaiting_review`, the
# same condition as the review-queue count and the gallery's "unreviewed" filter.


@dataclass(frozen=True, slots=True)
class ReviewLabel:
    """A model label awaiting review on one image (the most confident row of that name)."""

    name: str
    confidence: float
    parents: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # left, top, w, h


@dataclass(frozen=True, slots=True)
class ReviewImage:
    image: Image
    labels: list[ReviewLabel]  # least certain first


def _images_awaiting(viewer: Viewer) -> Select[str, float]:
    """(image id, least confidence among its labels awaiting review) per image, least first."""
    least = func.min(LabelRow.confidence)
    return _scoped(
        select(LabelRow.image_id, least.label("least"))
        .join(Image, Image.id == LabelRow.image_id)
        .where(*_awaiting_review())
        .group_by(LabelRow.image_id)
        .order_by(least.asc(), LabelRow.image_id),
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
                )
                for (i, _), r in best.items()
                if i == image_id
            ),
            key=lambda lab: (lab.confidence, lab.name),
        )
        out.append(ReviewImage(image=images[image_id], labels=labels))
    return out


def set_review_for_images(
    *, session: Session, viewer: Viewer, image_ids: Iterable[str], review: ReviewState
) -> int:
    """Confirm or reject every label awaiting review on the viewer's images among
    ``image_ids`` (others are left out, as if missing); returns how many labels were reviewed.
    Labels people already reviewed keep their answer."""
    ids = sorted(set(image_ids))
    done = 0
    for start in range(0, len(ids), _IN_CHUNK):
        pairs = session.execute(
            _scoped(
                select(LabelRow.image_id, LabelRow.name)
                .join(Image, Image.id == LabelRow.image_id)
                .where(LabelRow.image_id.in_(ids[start : start + _IN_CHUNK]), *_awaiting_review())
                .distinct()
                .order_by(LabelRow.image_id, LabelRow.name),
                viewer,
            )
        ).all()
        for image_id, name in pairs:
            set_human_label(session=session, viewer=viewer, image_id=image_id, name=name, review=review)
            done += 1
    return done


# --------------------------------------------------------------------------- activity range
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


# --------------------------------------------------------------------------- exports and notebooks
# Bulk reads behind ``labelkit.interchange`` (CSV, JSON Lines, COCO and manifest files,
# and the DataFrames the notebooks use) and the writes behind importing human labels.
# Scoped by the Viewer like everything else.

_IN_CHUNK = 500  # ids per IN (...) list, well under every backend's parameter limit


def export_images(
    *,
    session: Session,
    viewer: Viewer,
    owner_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    terms: Sequence[str] = (),
) -> list[Image]:
    """The viewer's images, oldest first, narrowed by owner, upload time (``since`` <= t < ``until``)
    and terms: an image qualifies when it carries any of ``terms`` as a label name or a parent."""
    stmt = _scoped(select(Image), viewer)
    if owner_id is not None:
        stmt = stmt.where(Image.owner_id == owner_id)
    if since is not None:
        stmt = stmt.where(Image.created_at >= since)
    if until is not None:
        stmt = stmt.where(Image.created_at < until)
    wanted = sorted({t.strip() for t in terms if t.strip()})
    if wanted:
        stmt = stmt.where(
            exists().where(
                ImageTerm.image_id == Image.id,
                ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT]),
                ImageTerm.term.in_(wanted),
            )
        )
    return list(session.scalars(stmt.order_by(Image.created_at, Image.id)))


def export_label_rows(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> list[LabelRow]:
    """Every label row (model and human, image level and boxes) of the viewer's images among ``image_ids``."""
    ids = sorted(set(image_ids))
    out: list[LabelRow] = []
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = _scoped(
            select(LabelRow)
            .join(Image, Image.id == LabelRow.image_id)
            .where(LabelRow.image_id.in_(ids[start : start + _IN_CHUNK]))
            .order_by(
                LabelRow.image_id, LabelRow.source, LabelRow.model_version, LabelRow.name, LabelRow.instance
            ),
            viewer,
        )
        out.extend(session.scalars(stmt))
    return out


def image_owners(*, session: Session, viewer: Viewer) -> list[tuple[str, str]]:
    """(user id, username) of everyone whose images the viewer may see, by username."""
    stmt = _scoped(
        select(User.id, User.username).join(Image, Image.owner_id == User.id).distinct(),
        viewer,
    )
    return sorted(((str(i), str(n)) for i, n in session.execute(stmt)), key=lambda r: r[1])


def delete_human_labels(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> int:
    """Remove every human row (reviews, added labels and their boxes) from the viewer's images
    among ``image_ids``; returns the rows removed. Model rows are never touched."""
    ids = sorted(set(image_ids))
    removed = 0
    for start in range(0, len(ids), _IN_CHUNK):
        allowed = session.scalars(
            _scoped(select(Image.id).where(Image.id.in_(ids[start : start + _IN_CHUNK])), viewer)
        ).all()
        if allowed:
            with counts.counting(session, allowed):
                result: Any = session.execute(
                    delete(LabelRow).where(
                        LabelRow.image_id.in_(allowed), LabelRow.source == LabelSource.HUMAN
                    )
                )
            removed += int(result.rowcount or 0)
    return removed


def import_human_label(
    *,
    session: Session,
    viewer: Viewer,
    image_id: str,
    name: str,
    review: ReviewState,
    parents: Sequence[str] | None = None,
    aliases: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
    boxes: Sequence[tuple[float, float, float, float, float]] = (),
) -> LabelRow:
    """A human label from an imported file: :func:`set_human_label`, then the file's
    parents, aliases and categories (when given) and its boxes.

    ``boxes`` are ``(left, top, width, height, confidence)`` with coordinates as
    fractions of the image; they replace the label's human boxes (rows ``instance``
    1..n beside its image-level row, sharing its parents and categories).
    """
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    with counts.counting(session, [image.id]):
        row = _set_human_label(session, viewer, image, name, review)
        _import_details(session, viewer, row, review, parents, aliases, categories, boxes)
    return row


def _import_details(
    session: Session,
    viewer: Viewer,
    row: LabelRow,
    review: ReviewState,
    parents: Sequence[str] | None,
    aliases: Sequence[str] | None,
    categories: Sequence[str] | None,
    boxes: Sequence[tuple[float, float, float, float, float]],
) -> None:
    if parents is not None:
        row.parents = [p for p in parents if p]
    if aliases is not None:
        row.aliases = [a for a in aliases if a]
    if categories is not None:
        row.categories = [c for c in categories if c]
    human = (
        LabelRow.image_id == row.image_id,
        LabelRow.source == LabelSource.HUMAN,
        LabelRow.model_version == "",
        LabelRow.name == row.name,
    )
    session.execute(delete(LabelRow).where(*human, LabelRow.instance > 0))
    for i, (left, top, width, height, conf) in enumerate(boxes, start=1):
        session.add(
            LabelRow(
                image_id=row.image_id,
                source=LabelSource.HUMAN,
                model_version="",
                name=row.name,
                instance=i,
                confidence=float(conf),
                parents=list(row.parents),
                aliases=list(row.aliases),
                categories=list(row.categories),
                box_left=left,
                box_top=top,
                box_width=width,
                box_height=height,
                review=review,
                created_by=viewer.user_id,
                created_at=row.created_at,
            )
        )
    session.flush()


# --------------------------------------------------------------------------- dashboard aggregates
# Read-only queries behind the dashboard's charts and pages. Like everything
# above, each is scoped by a Viewer (admins see all) and returns plain values.


@dataclass(frozen=True, slots=True)
class TermSuggestion:
    term: str
    images: int


def term_suggestions(*, session: Session, viewer: Viewer, limit: int = 500) -> list[TermSuggestion]:
    """Label names and parents the viewer's images carry, most common first (filter suggestions)."""
    return [TermSuggestion(term=t, images=n) for t, n in _top_terms(session, viewer, counts.ANY, limit)]


def count_review_queue(*, session: Session, viewer: Viewer) -> int:
    """How many labels :func:`review_queue` would page through."""
    stmt = select(func.sum(LabelCount.awaiting)).where(LabelCount.owner_id == _totals_owner(viewer))
    return int(session.scalar(stmt) or 0)


def images_by_ids(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> dict[str, Image]:
    """The viewer's images among ``image_ids`` (others are silently left out)."""
    ids = sorted(set(image_ids))
    if not ids:
        return {}
    rows = session.scalars(_scoped(select(Image).where(Image.id.in_(ids)), viewer))
    return {img.id: img for img in rows}


def usernames(*, session: Session, user_ids: Iterable[str]) -> dict[str, str]:
    """Usernames by id (to show who made a human label)."""
    ids = sorted({i for i in user_ids if i})
    if not ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {str(uid): str(name) for uid, name in rows}


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
    return [DayCount(day=d, **counts) for d, counts in sorted(days.items())]


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


def top_labels(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> dict[str, tuple[str, float]]:
    """The label each of the viewer's images shows on its gallery card: among its effective
    labels (``image_terms``: never one a person rejected; people's own at 100) the most
    specific (not a parent of another of its labels), most confident first."""
    ids = sorted(set(image_ids))
    if not ids:
        return {}
    stmt = _scoped(
        select(ImageTerm.image_id, ImageTerm.kind, ImageTerm.term, ImageTerm.confidence)
        .join(Image, Image.id == ImageTerm.image_id)
        .where(ImageTerm.image_id.in_(ids), ImageTerm.kind.in_([TermKind.LABEL, TermKind.PARENT])),
        viewer,
    )
    labels: dict[str, list[tuple[str, float]]] = {}
    parents: dict[str, set[str]] = {}
    for image_id, kind, term, conf in session.execute(stmt):
        if kind == TermKind.LABEL:
            labels.setdefault(image_id, []).append((term, float(conf)))
        else:
            parents.setdefault(image_id, set()).add(term)
    best: dict[str, tuple[str, float]] = {}
    for image_id, named in labels.items():
        above = parents.get(image_id, set())
        leaves = [t for t in named if t[0] not in above] or named  # a cycle of parents: all
        best[image_id] = min(leaves, key=lambda t: (-t[1], t[0]))
    return best


# --------------------------------------------------------------------------- compare mode
# With several labellers configured (LABELKIT_LABELER=local,rekognition) each image
# carries one set of model rows per model version. These functions say how far two
# versions agree, scoped by the Viewer like everything else.
#
# Matching rule (labellers name things differently: local "Cat" vs Rekognition
# "Cat"/"Kitten"): on one image, side A's *vocabulary* is every name, parent and
# alias of A's image-level labels (case-insensitive); likewise for B. A label name
# found on either side counts as *agreed* when it is in both vocabularies, i.e. the
# other labeller has it as a label, a parent or an alias. Per image:
#
#     jaccard = |agreed names| / |names labelled by A or B|
#
# (1.0 when both ran and found nothing). Overall agreement is the mean of that over the
# images both versions labelled. Per label name: images where A has it, where B
# has it, where it is agreed, and the label's Jaccard = agreed / (A or B has it).


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
class LabelAgreement:
    name: str
    a_images: int  # images where A has this label
    b_images: int  # images where B has it
    both: int  # images where it is agreed (see the matching rule above)
    either: int  # images where A or B has it

    @property
    def jaccard(self) -> float:
        return self.both / self.either if self.either else 0.0


@dataclass(frozen=True, slots=True)
class Agreement:
    version_a: str
    version_b: str
    images: int  # images labelled by both versions
    mean_jaccard: float | None  # None when no image has both
    labels: list[LabelAgreement] = field(default_factory=list)
    per_image: dict[str, float] = field(default_factory=dict)


def _vocabulary(rows: Iterable[tuple[str, list[str] | None, list[str] | None]]) -> tuple[set[str], set[str]]:
    """(label names, names + parents + aliases), case-folded."""
    names: set[str] = set()
    vocab: set[str] = set()
    for name, parents, aliases in rows:
        key = name.strip().casefold()
        names.add(key)
        vocab.add(key)
        vocab.update(p.strip().casefold() for p in (parents or []) if p)
        vocab.update(a.strip().casefold() for a in (aliases or []) if a)
    return names, vocab


def image_agreement(
    a: Iterable[tuple[str, list[str] | None, list[str] | None]],
    b: Iterable[tuple[str, list[str] | None, list[str] | None]],
) -> tuple[float, set[str], set[str], set[str]]:
    """One image's Jaccard under the matching rule, with A's names, B's names and the agreed names."""
    a_names, a_vocab = _vocabulary(a)
    b_names, b_vocab = _vocabulary(b)
    union = a_names | b_names
    agreed = union & a_vocab & b_vocab
    return (len(agreed) / len(union) if union else 1.0), a_names, b_names, agreed


def labeller_agreement(
    *, session: Session, viewer: Viewer, version_a: str, version_b: str, limit: int = 500_000
) -> Agreement:
    """How far two model versions agree on the viewer's images that both labelled."""
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
    per: dict[str, dict[str, list[tuple[str, list[str] | None, list[str] | None]]]] = {}
    display: dict[str, str] = {}
    for image_id, version, name, parents, aliases in session.execute(stmt):
        per.setdefault(image_id, {}).setdefault(version, []).append((name, parents, aliases))
        display.setdefault(name.strip().casefold(), name)
    # Images both versions ran on, even if one found nothing (its rows are then absent):
    # the pipeline records every version it ran as "a+b" on the image.
    ran_both = _scoped(
        select(Image.id, Image.model_version).where(
            Image.model_version.contains(version_a), Image.model_version.contains(version_b)
        ),
        viewer,
    )
    for image_id, joined in session.execute(ran_both):
        if {version_a, version_b} <= set(str(joined).split("+")):
            sides = per.setdefault(image_id, {})
            sides.setdefault(version_a, [])
            sides.setdefault(version_b, [])
    counts: dict[str, list[int]] = {}  # name -> [a, b, both, either]
    per_image: dict[str, float] = {}
    for image_id, sides in per.items():
        if version_a not in sides or version_b not in sides:
            continue  # compared only where both versions labelled the image
        score, a_names, b_names, agreed = image_agreement(sides[version_a], sides[version_b])
        per_image[image_id] = score
        for key in a_names | b_names:
            c = counts.setdefault(key, [0, 0, 0, 0])
            c[0] += key in a_names
            c[1] += key in b_names
            c[2] += key in agreed
            c[3] += 1
    labels = sorted(
        (
            LabelAgreement(name=display[k], a_images=a, b_images=b, both=both, either=either)
            for k, (a, b, both, either) in counts.items()
        ),
        key=lambda la: (-la.either, la.name.casefold()),
    )
    mean = sum(per_image.values()) / len(per_image) if per_image else None
    return Agreement(
        version_a=version_a,
        version_b=version_b,
        images=len(per_image),
        mean_jaccard=mean,
        labels=labels,
        per_image=per_image,
    )
