"""Reads for near-duplicate detection (:mod:`labelkit.duplicates`): one owner's perceptual
hashes, what picks a group's keeper (pixels, bytes, age and whether people labelled it), embeddings
of chosen images, and storing a hash made at upload time.

Scoped by the :class:`~labelkit.domain.Viewer`: a person reads only their own images; an
administrator may read any owner's. Duplicates are always found within one owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelkit.db.models import Image, ImageFeatureRow, LabelRow, LabelSource
from labelkit.db.queries._scope import _IN_CHUNK
from labelkit.domain import Viewer


@dataclass(frozen=True, slots=True)
class HashedImage:
    """What grouping needs of one image (no embedding: those are read for candidates only)."""

    image_id: str
    phash: str | None
    sha256: str
    width: int
    height: int
    bytes: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeeperFacts:
    """What the keeper rule (:func:`labelkit.duplicates.keeper_key`) reads of one image."""

    image_id: str
    width: int
    height: int
    bytes: int
    created_at: datetime
    human_labels: int  # label names a person added, confirmed or rejected on it (not implied ones)


def _may_read(viewer: Viewer, owner_id: str) -> bool:
    return viewer.is_admin or viewer.user_id == owner_id


def hashed_images(*, session: Session, viewer: Viewer, owner_id: str) -> list[HashedImage]:
    """Every image of ``owner_id`` with its hash (None when it has none yet), oldest first.

    One indexed read of narrow columns; ~100k rows is a few hundred milliseconds (see the
    README's duplicates section)."""
    if not _may_read(viewer, owner_id):
        return []
    stmt = (
        select(
            Image.id,
            ImageFeatureRow.phash,
            Image.sha256,
            Image.width,
            Image.height,
            Image.bytes,
            Image.created_at,
        )
        .outerjoin(ImageFeatureRow, ImageFeatureRow.image_id == Image.id)
        .where(Image.owner_id == owner_id)
        .order_by(Image.created_at, Image.id)
    )
    out: list[HashedImage] = []
    for image_id, phash, sha256, width, height, nbytes, created in session.execute(stmt):
        out.append(
            HashedImage(
                image_id=image_id,
                phash=phash,
                sha256=sha256,
                width=width,
                height=height,
                bytes=nbytes,
                created_at=created,
            )
        )
    return out


def keeper_facts(
    *, session: Session, viewer: Viewer, owner_id: str, image_ids: Iterable[str]
) -> dict[str, KeeperFacts]:
    """image id -> what picks a keeper, for those of ``image_ids`` that are ``owner_id``'s: one
    query (per 500 ids) for a whole set of groups, people's labels counted per image by a
    correlated count over the labels' (image, source) key."""
    if not _may_read(viewer, owner_id):
        return {}
    human = (
        select(func.count(func.distinct(LabelRow.name)))
        .where(
            LabelRow.image_id == Image.id,
            LabelRow.source == LabelSource.HUMAN,
            LabelRow.implied_by.is_(None),  # a person's own verdicts, not what follows from them
        )
        .correlate(Image)
        .scalar_subquery()
    )
    ids = list(dict.fromkeys(image_ids))
    out: dict[str, KeeperFacts] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(Image.id, Image.width, Image.height, Image.bytes, Image.created_at, human).where(
            Image.owner_id == owner_id, Image.id.in_(ids[start : start + _IN_CHUNK])
        )
        for image_id, width, height, nbytes, created, n_human in session.execute(stmt):
            out[image_id] = KeeperFacts(
                image_id=image_id,
                width=int(width),
                height=int(height),
                bytes=int(nbytes),
                created_at=created,
                human_labels=int(n_human or 0),
            )
    return out


def owner_hashes(*, session: Session, viewer: Viewer, owner_id: str) -> list[str]:
    """Every hash of ``owner_id``'s images (one column: what an upload is compared with; the
    image behind a close one is found with :func:`image_with_hash`)."""
    if not _may_read(viewer, owner_id):
        return []
    stmt = select(ImageFeatureRow.phash).where(
        ImageFeatureRow.owner_id == owner_id, ImageFeatureRow.phash.is_not(None)
    )
    return [h for h in session.scalars(stmt) if h]


def image_with_hash(
    *, session: Session, viewer: Viewer, owner_id: str, phash: str, exclude: str
) -> str | None:
    """The oldest of ``owner_id``'s images (other than ``exclude``) with this hash."""
    if not _may_read(viewer, owner_id):
        return None
    stmt = (
        select(ImageFeatureRow.image_id)
        .join(Image, Image.id == ImageFeatureRow.image_id)
        .where(ImageFeatureRow.owner_id == owner_id, ImageFeatureRow.phash == phash, Image.id != exclude)
        .order_by(Image.created_at, Image.id)
        .limit(1)
    )
    return session.scalar(stmt)


def hash_version(*, session: Session, viewer: Viewer, owner_id: str) -> tuple[int, str]:
    """Changes whenever ``owner_id``'s hashes or images change (count and latest write): what a
    cached grouping is keyed by."""
    if not _may_read(viewer, owner_id):
        return (0, "")
    n, latest = session.execute(
        select(func.count(), func.max(ImageFeatureRow.updated_at)).where(ImageFeatureRow.owner_id == owner_id)
    ).one()
    images = session.scalar(select(func.count()).select_from(Image).where(Image.owner_id == owner_id))
    return (int(n) * 1_000_003 + int(images or 0), str(latest))


def embeddings(
    *, session: Session, viewer: Viewer, owner_id: str, image_ids: Iterable[str]
) -> dict[str, tuple[str, bytes]]:
    """image id -> (embedding model, blob) for those of ``image_ids`` (of ``owner_id``) that have one."""
    if not _may_read(viewer, owner_id):
        return {}
    ids = list(dict.fromkeys(image_ids))
    out: dict[str, tuple[str, bytes]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(
            ImageFeatureRow.image_id, ImageFeatureRow.embedding_model, ImageFeatureRow.embedding
        ).where(
            ImageFeatureRow.owner_id == owner_id,
            ImageFeatureRow.image_id.in_(ids[start : start + _IN_CHUNK]),
            ImageFeatureRow.embedding.is_not(None),
            ImageFeatureRow.embedding_model.is_not(None),
        )
        for image_id, model, blob in session.execute(stmt):
            if model is not None and blob is not None:
                out[image_id] = (model, blob)
    return out


def owners_with_hashes(*, session: Session, viewer: Viewer) -> list[str]:
    """Owners whose duplicates the viewer may list: themselves, or (admins) every owner with hashes."""
    if not viewer.is_admin:
        return [viewer.user_id]
    stmt = select(ImageFeatureRow.owner_id).where(ImageFeatureRow.phash.is_not(None)).distinct()
    return sorted(session.scalars(stmt))


def save_upload_hash(*, session: Session, image_id: str, owner_id: str, phash: str) -> None:
    """Record the hash made at upload, before the worker labels the image, so that a photo
    uploaded moments ago already counts. The worker's write (``worker.save_features``)
    replaces this row with the full features later; it never overwrites a row that exists."""
    if session.get(ImageFeatureRow, image_id) is None:
        session.add(ImageFeatureRow(image_id=image_id, owner_id=owner_id, phash=phash))
        session.flush()
