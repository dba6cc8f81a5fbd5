"""An image's labels, and people's labels: confirm, reject or add a label, import one
from a file (with its parents, aliases, categories and boxes), and remove people's labels.

Scoped by the viewer (another user's image is ``NotFound``). Every write runs inside
:func:`labelkit.db.counts.counting`, which keeps the running totals and the image's terms
(a rejection takes the name out of search, counts and cards) in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.models import Image, LabelRow, LabelSource, ReviewState, utcnow
from labelkit.db.queries._scope import _IN_CHUNK, _scoped
from labelkit.db.queries.images import get_image
from labelkit.domain import Viewer


def labels_for_image(*, session: Session, viewer: Viewer, image_id: str) -> list[LabelRow]:
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    rows = session.scalars(
        select(LabelRow)
        .where(LabelRow.image_id == image.id)
        .order_by(LabelRow.source, LabelRow.confidence.desc(), LabelRow.name, LabelRow.instance)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class KnownDetails:
    """A label's parents, aliases and categories as a catalogue knows them: stored on a
    person's label when the image has no model label of that name to copy them from."""

    parents: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


def set_human_label(
    *,
    session: Session,
    viewer: Viewer,
    image_id: str,
    name: str,
    review: ReviewState,
    known: KnownDetails | None = None,
) -> LabelRow:
    """Confirm, reject or add a label as a person (stored beside the model's labels).

    Adding is confirming a name the model did not give. Repeating an action
    updates the same human row (who and when) rather than adding another. A name that
    differs only in case from a label already on the image is that label ("beach" on a
    photo labelled "Beach"), on every database.
    """
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    with counts.counting(session, [image.id]):
        return _set_human_label(session, viewer, image, name, review, known)


def _spelling_on_image(session: Session, image_id: str, clean: str) -> str:
    """``clean`` spelled as a label already on the image spells it (a model's label first)."""
    found = session.execute(
        select(LabelRow.source, LabelRow.name).where(
            LabelRow.image_id == image_id,
            LabelRow.instance == 0,
            func.lower(LabelRow.name) == clean.lower(),
        )
    ).all()
    folded = clean.casefold()
    same = sorted((source != LabelSource.MODEL, str(n)) for source, n in found if str(n).casefold() == folded)
    return same[0][1] if same else clean


def _set_human_label(
    session: Session,
    viewer: Viewer,
    image: Image,
    name: str,
    review: ReviewState,
    known: KnownDetails | None = None,
) -> LabelRow:
    clean = " ".join(name.split())[:128]
    if not clean:
        raise ValueError("a label needs a name")
    clean = _spelling_on_image(session, image.id, clean)
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
            parents=list(model.parents) if model else list(known.parents) if known else [],
            aliases=list(model.aliases) if model else list(known.aliases) if known else [],
            categories=list(model.categories) if model else list(known.categories) if known else [],
        )
        session.add(row)
    row.review = review
    row.implied_by = None  # a person's own verdict (see counts.implied_rejections)
    row.created_by = viewer.user_id
    row.created_at = utcnow()
    session.flush()
    # The image's terms follow from its rows (counts.counting derives them): a rejection
    # takes the name (and the parents only it brought) out of search, counts and cards.
    return row


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
    known: KnownDetails | None = None,
) -> LabelRow:
    """A human label from an imported file: :func:`set_human_label`, then the file's
    parents, aliases and categories (when given) and its boxes.

    ``boxes`` are ``(left, top, width, height, confidence)`` with coordinates as
    fractions of the image; they replace the label's human boxes (rows ``instance``
    1..n beside its image-level row, sharing its parents and categories).
    """
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    with counts.counting(session, [image.id]):
        row = _set_human_label(session, viewer, image, name, review, known)
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
