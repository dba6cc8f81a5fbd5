"""Bulk reads behind :mod:`labelkit.interchange` (CSV, JSON Lines, COCO and manifest files,
and the DataFrames the notebooks use): the viewer's images narrowed by owner, time and
terms, all their label rows, and the owners whose images the viewer may see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from labelkit.db.models import Image, ImageTerm, LabelRow, TermKind, User
from labelkit.db.queries._scope import _IN_CHUNK, _scoped
from labelkit.domain import Viewer


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
