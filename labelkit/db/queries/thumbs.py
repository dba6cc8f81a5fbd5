"""Stored gallery thumbnails (issue #18): which of a page's images have one, and recording one
the dashboard made for an image labelled before the worker stored thumbnails.

The worker records its thumbnails itself (``image_features.thumb_key``, written with the
labels by :func:`~labelkit.db.queries.worker.save_features`). Scoped by a viewer: another
user's image has no thumbnail here, exactly as an id that does not exist.

No thumbnail outlives its photo (issue 25): whoever stores a thumbnail stores it first and
then, in the transaction that records it, holds the image row with
:func:`lock_image_for_worker`; a delete removes the rows before the thumbnail. The unscoped
``*_for_worker`` reads serve the worker and the reconciler's sweep of thumbnails whose
photo is gone (:func:`existing_object_keys_for_worker`).
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
    # Held until the caller commits: a delete of this image waits, then removes the thumbnail
    # stored before this call; or it went first, and the NotFound tells the caller to.
    if not lock_image_for_worker(session=session, image_id=image_id):
        raise NotFound(f"no image {image_id!r}")
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


def lock_image_for_worker(*, session: Session, image_id: str) -> bool:
    """Hold the image's row until the transaction ends and say whether it still exists.

    On MySQL a locking read (``FOR UPDATE``: the latest committed row, waiting for a delete in
    progress); on SQLite, which has no row locks, a no-op write first takes the database's
    write lock, so the read after it sees every committed delete and none can commit before
    this transaction does. Call it before writing anything else in the transaction (SQLite
    starts the transaction at the first write)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Image)
            .where(Image.id == image_id)
            .values(attempts=Image.attempts, updated_at=Image.updated_at)  # (no onupdate either)
        )
        found = session.scalar(select(Image.id).where(Image.id == image_id))
    else:
        found = session.scalar(select(Image.id).where(Image.id == image_id).with_for_update())
    return found is not None


def existing_object_keys_for_worker(*, session: Session, object_keys: Iterable[str]) -> set[str]:
    """Which of these object keys still have an image row (by the unique key's index, in
    chunks): a thumbnail of any other key has lost its photo."""
    keys = sorted(set(object_keys))
    found: set[str] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        stmt = select(Image.object_key).where(Image.object_key.in_(keys[start : start + _IN_CHUNK]))
        found.update(session.scalars(stmt))
    return found
