"""Stored gallery thumbnails (issue #18): which of a page's images have one, and recording one
the dashboard made for an image labelled before the worker stored thumbnails.

The worker records its thumbnails itself (``image_features.thumb_key``, written with the
labels by :func:`~labelkit.db.queries.worker.save_features`). Scoped by a viewer: another
user's image has no thumbnail here, exactly as an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labelkit.db.models import Image, ImageFeatureRow, ImageStatus, utcnow
from labelkit.db.queries._scope import _IN_CHUNK, _insert_ignore, _scoped
from labelkit.domain import Viewer
from labelkit.errors import NotFound


def thumb_keys(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> dict[str, str]:
    """The stored thumbnail's key of each of the viewer's images among ``image_ids`` that has
    one (the others are absent): one primary-key lookup per image, no join."""
    ids = sorted(set(image_ids))
    out: dict[str, str] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(ImageFeatureRow.image_id, ImageFeatureRow.thumb_key).where(
            ImageFeatureRow.image_id.in_(ids[start : start + _IN_CHUNK]),
            ImageFeatureRow.thumb_key.is_not(None),
        )
        if not viewer.is_admin:
            stmt = stmt.where(ImageFeatureRow.owner_id == viewer.user_id)
        out.update({image_id: key for image_id, key in session.execute(stmt) if key})
    return out


def record_thumb_key(*, session: Session, viewer: Viewer, image_id: str, thumb_key: str) -> bool:
    """Record ``thumb_key`` as the stored thumbnail of a labelled image that has none recorded
    (labelled before the worker stored thumbnails); keeps its other features. Returns whether
    it was recorded: not for an image not labelled (the worker will store its own) or one
    that has a thumbnail already. Raises :class:`~labelkit.errors.NotFound` for an image the
    viewer cannot see, as for one that does not exist."""
    image = session.execute(
        _scoped(select(Image.owner_id, Image.status).where(Image.id == image_id), viewer)
    ).one_or_none()
    if image is None:
        raise NotFound(f"no image {image_id!r}")
    if image.status != ImageStatus.LABELLED:
        return False
    # The worker's row (delete-then-insert in its labelling transaction) wins: insert-or-ignore,
    # then fill in only a missing key.
    _insert_ignore(
        session,
        ImageFeatureRow.__table__,
        [{"image_id": image_id, "owner_id": image.owner_id, "updated_at": utcnow()}],
    )
    done = session.execute(
        update(ImageFeatureRow)
        .where(ImageFeatureRow.image_id == image_id, ImageFeatureRow.thumb_key.is_(None))
        .values(thumb_key=thumb_key, updated_at=utcnow())
    )
    return bool(getattr(done, "rowcount", 0))
