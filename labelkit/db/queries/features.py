"""Image features (``image_features``): the reads behind similar photos.

The query image is looked up through the viewer's scope (:func:`embedding_of`); everything
else reads one owner's rows by ``owner_id`` (the column is repeated on ``image_features``
so no join to ``images`` is needed), after the caller has resolved the owner through that
scoped read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labelkit.db.models import Image, ImageFeatureRow
from labelkit.db.queries._scope import _IN_CHUNK, _scoped
from labelkit.domain import Viewer
from labelkit.errors import NotFound


@dataclass(frozen=True, slots=True)
class StoredEmbedding:
    image_id: str
    owner_id: str
    embedding: bytes | None
    embedding_model: str | None


def embedding_of(*, session: Session, viewer: Viewer, image_id: str) -> StoredEmbedding:
    """The image's owner and embedding (None if it has none yet); ``NotFound`` if the
    viewer may not see the image."""
    stmt = _scoped(
        select(Image.id, Image.owner_id, ImageFeatureRow.embedding, ImageFeatureRow.embedding_model)
        .outerjoin(ImageFeatureRow, ImageFeatureRow.image_id == Image.id)
        .where(Image.id == image_id),
        viewer,
    )
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound(f"no image {image_id!r}")
    return StoredEmbedding(
        image_id=row[0], owner_id=row[1], embedding=row[2], embedding_model=row[3] if row[2] else None
    )


def latest_update(*, session: Session, owner_id: str, model: str) -> datetime | None:
    """The latest ``updated_at`` of the owner's embeddings of ``model`` (one index seek,
    migration 0010): a cached index of them is current while this has not changed."""
    stmt = select(func.max(ImageFeatureRow.updated_at)).where(
        ImageFeatureRow.owner_id == owner_id, ImageFeatureRow.embedding_model == model
    )
    latest: datetime | None = session.scalar(stmt)
    return latest


def owner_embeddings(
    *, session: Session, owner_id: str, model: str, since: datetime | None = None, batch: int = 20_000
) -> Iterator[list[tuple[str, bytes]]]:
    """The (image id, blob) of the owner's embeddings of ``model`` (updated at or after
    ``since`` if given), ``batch`` rows at a time."""
    stmt = select(ImageFeatureRow.image_id, ImageFeatureRow.embedding).where(
        ImageFeatureRow.owner_id == owner_id, ImageFeatureRow.embedding_model == model
    )
    if since is not None:
        stmt = stmt.where(ImageFeatureRow.updated_at >= since)
    result = session.execute(stmt.execution_options(yield_per=batch))
    for part in result.partitions(batch):
        yield [(str(r[0]), bytes(r[1])) for r in part if r[1] is not None]


def existing_of_owner(*, session: Session, owner_id: str, model: str, image_ids: Collection[str]) -> set[str]:
    """Which of these images still have an embedding of ``model`` and belong to the owner."""
    ids = list(image_ids)
    found: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        # By primary key only, the rest checked here: given the owner too, SQLite's planner
        # walks the owner's index (tens of ms) instead of a few primary-key lookups.
        stmt = select(
            ImageFeatureRow.image_id, ImageFeatureRow.owner_id, ImageFeatureRow.embedding_model
        ).where(ImageFeatureRow.image_id.in_(ids[start : start + _IN_CHUNK]))
        found.update(i for i, o, m in session.execute(stmt) if o == owner_id and m == model)
    return found
