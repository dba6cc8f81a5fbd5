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

from sqlalchemy import delete, insert, select, update
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


Box = tuple[float, float, float, float, float]  # left, top, width, height (fractions), confidence


@dataclass(frozen=True, slots=True)
class HumanLabel:
    """One label a person gives an image: a verdict on a name (confirmed, rejected), and when
    given, its parents, aliases and categories (None: keep or copy them) and boxes."""

    name: str
    review: ReviewState
    parents: Sequence[str] | None = None
    aliases: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    boxes: Sequence[Box] | None = None  # None: leave its boxes; a list (also empty): replace them
    known: KnownDetails | None = None  # a catalogue's details, for a name no model gave

    @property
    def rows(self) -> int:
        """Label rows this writes (the label and its boxes)."""
        return 1 + len(self.boxes or ())


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
    (row,) = set_human_labels(
        session=session, viewer=viewer, image_id=image_id, labels=[HumanLabel(name, review, known=known)]
    )
    return row


def set_human_labels(
    *, session: Session, viewer: Viewer, image_id: str, labels: Sequence[HumanLabel]
) -> list[LabelRow]:
    """Several labels a person gives one image, written at once: the image's rows are read
    once and its counts kept once, so the cost is linear in the image's labels (one label
    at a time re-read all of them for each: 1,600 labels held the database for 72 s)."""
    image = get_image(session=session, viewer=viewer, image_id=image_id)
    if not labels:
        return []
    with counts.counting(session, [image.id]):
        return _write_human_labels(session, viewer, image, labels)


def _write_human_labels(
    session: Session, viewer: Viewer, image: Image, labels: Sequence[HumanLabel]
) -> list[LabelRow]:
    # A locking read: with the image locked (counting), it sees rows another transaction
    # committed meanwhile (a plain read could use an older snapshot and insert a duplicate).
    # Plain columns, not ORM objects: an image can carry a thousand labels.
    existing = session.execute(
        select(
            LabelRow.id,
            LabelRow.source,
            LabelRow.name,
            LabelRow.parents,
            LabelRow.aliases,
            LabelRow.categories,
            LabelRow.model_version,
        )
        .where(LabelRow.image_id == image.id, LabelRow.instance == 0)
        .with_for_update()
    ).all()
    human: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for r in existing:
        if r.source == LabelSource.HUMAN and r.model_version:
            continue  # written for the person by a feature (people's names), not a person's own
        (human if r.source == LabelSource.HUMAN else model).setdefault(r.name.casefold(), r)
    now = utcnow()
    new: dict[str, dict[str, Any]] = {}  # folded name -> the row to insert
    changed: dict[int, dict[str, Any]] = {}  # id -> the human row's new values
    names: dict[str, str] = {}  # folded name -> the name stored
    for lab in labels:
        clean = " ".join(lab.name.split())[:128]
        if not clean:
            raise ValueError("a label needs a name")
        key = clean.casefold()
        values: dict[str, Any] = {
            "review": lab.review,
            "implied_by": None,  # a person's own verdict (see counts.implied_rejections)
            "created_by": viewer.user_id,
            "created_at": now,
        }
        for column, given in (
            ("parents", lab.parents),
            ("aliases", lab.aliases),
            ("categories", lab.categories),
        ):
            if given is not None:
                values[column] = [v for v in given if v]
        if key in human:
            row = human[key]
            names[key] = row.name
            changed.setdefault(row.id, {}).update(values)
        elif key in new:
            new[key].update(values)
        else:
            # Spelled as a label already on the image spells it (the model's first), with the
            # model's details, else the catalogue's.
            source = model.get(key)
            details = lab.known or KnownDetails()
            names[key] = source.name if source is not None else clean
            new[key] = {
                "image_id": image.id,
                "source": LabelSource.HUMAN,
                "model_version": "",
                "name": names[key],
                "instance": 0,
                "confidence": 100.0,
                "parents": list(source.parents) if source is not None else list(details.parents),
                "aliases": list(source.aliases) if source is not None else list(details.aliases),
                "categories": list(source.categories) if source is not None else list(details.categories),
                **values,
            }
    if new:
        session.execute(insert(LabelRow), list(new.values()))
    for row_id, values in changed.items():
        session.execute(update(LabelRow).where(LabelRow.id == row_id).values(**values))
    written = sorted(set(names.values()))
    rows: dict[str, LabelRow] = {}
    for start in range(0, len(written), _IN_CHUNK):
        for row in session.scalars(
            select(LabelRow)
            .where(
                LabelRow.image_id == image.id,
                LabelRow.source == LabelSource.HUMAN,
                LabelRow.instance == 0,
                LabelRow.name.in_(written[start : start + _IN_CHUNK]),
            )
            # Rows this session loaded before were changed by the statements above: refresh them.
            .execution_options(populate_existing=True)
        ):
            rows[row.name.casefold()] = row
    out = [rows[" ".join(lab.name.split())[:128].casefold()] for lab in labels]
    _replace_boxes(
        session, viewer, [(row, lab) for row, lab in zip(out, labels, strict=True) if lab.boxes is not None]
    )
    # The image's terms follow from its rows (counts.counting derives them): a rejection
    # takes the name (and the parents only it brought) out of search, counts and cards.
    return out


def _replace_boxes(session: Session, viewer: Viewer, pairs: Sequence[tuple[LabelRow, HumanLabel]]) -> None:
    """The labels' human boxes become the given ones (rows ``instance`` 1..n beside the
    image-level row, sharing its parents and categories)."""
    if not pairs:
        return
    image_id = pairs[0][0].image_id
    names = sorted({row.name for row, _ in pairs})
    for start in range(0, len(names), _IN_CHUNK):
        session.execute(
            delete(LabelRow).where(
                LabelRow.image_id == image_id,
                LabelRow.source == LabelSource.HUMAN,
                LabelRow.model_version == "",
                LabelRow.name.in_(names[start : start + _IN_CHUNK]),
                LabelRow.instance > 0,
            )
        )
    boxes = [
        {
            "image_id": row.image_id,
            "source": LabelSource.HUMAN,
            "model_version": "",
            "name": row.name,
            "instance": i,
            "confidence": float(conf),
            "parents": list(row.parents),
            "aliases": list(row.aliases),
            "categories": list(row.categories),
            "box_left": left,
            "box_top": top,
            "box_width": width,
            "box_height": height,
            "review": lab.review,
            "created_by": viewer.user_id,
            "created_at": row.created_at,
        }
        for row, lab in pairs
        for i, (left, top, width, height, conf) in enumerate(lab.boxes or (), start=1)
    ]
    if boxes:
        session.execute(insert(LabelRow), boxes)


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
    boxes: Sequence[Box] = (),
    known: KnownDetails | None = None,
) -> LabelRow:
    """A human label from an imported file: :func:`set_human_label`, then the file's
    parents, aliases and categories (when given) and its boxes.

    ``boxes`` are ``(left, top, width, height, confidence)`` with coordinates as
    fractions of the image; they replace the label's human boxes (rows ``instance``
    1..n beside its image-level row, sharing its parents and categories).
    """
    (row,) = set_human_labels(
        session=session,
        viewer=viewer,
        image_id=image_id,
        labels=[HumanLabel(name, review, parents, aliases, categories, list(boxes), known)],
    )
    return row
