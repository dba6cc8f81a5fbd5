"""Text read in photos (``image_text``) and the moderation flag: the reads behind the image
page's "Text in the photo", the JSON Lines export and the gallery's blur.

Scoped by the viewer like every person-facing query: another user's image behaves as one
that does not exist (its text is never returned). The worker writes the text
(:func:`labelkit.db.queries.worker.save_text`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelkit.db.models import Image, ImageTerm, ImageTextRow, TermKind
from labelkit.db.queries._scope import _IN_CHUNK, _owned, _scoped
from labelkit.domain import BoundingBox, TextDetection, Viewer
from labelkit.errors import NotFound

#: The moderation label the gallery blurs (labelkit.labelers.moderation.EXPLICIT).
EXPLICIT = "Explicit"


@dataclass(frozen=True, slots=True)
class ImageText:
    """One labeller's text of one image: its lines (each with its words), top to bottom."""

    model_version: str
    detections: list[TextDetection] = field(default_factory=list)

    @property
    def lines(self) -> list[TextDetection]:
        return [d for d in self.detections if d.type == "LINE"]

    def words_of(self, line: TextDetection) -> list[TextDetection]:
        return [d for d in self.detections if d.type == "WORD" and d.parent_id == line.id]


def _detection(row: ImageTextRow) -> TextDetection:
    return TextDetection(
        text=row.text,
        type="LINE" if row.kind == "LINE" else "WORD",
        id=int(row.detection_id),
        parent_id=row.parent_id,
        confidence=min(100.0, max(0.0, float(row.confidence))),
        box=BoundingBox.clamped(
            float(row.box_left), float(row.box_top), float(row.box_width), float(row.box_height)
        ),
        polygon=[(float(x), float(y)) for x, y in row.polygon or []],
    )


def _group(rows: Iterable[ImageTextRow]) -> dict[str, list[ImageText]]:
    """Rows (ordered by image, version, id) -> per image, one :class:`ImageText` per version."""
    out: dict[str, list[ImageText]] = {}
    for row in rows:
        texts = out.setdefault(row.image_id, [])
        if not texts or texts[-1].model_version != row.model_version:
            texts.append(ImageText(model_version=row.model_version))
        texts[-1].detections.append(_detection(row))
    return out


def text_of_image(*, session: Session, viewer: Viewer, image_id: str) -> list[ImageText]:
    """The text read in the image, per labeller version (none read: an empty list);
    ``NotFound`` when the viewer may not see the image."""
    if session.scalar(_scoped(select(Image.id).where(Image.id == image_id), viewer)) is None:
        raise NotFound(f"no image {image_id!r}")
    rows = session.scalars(
        select(ImageTextRow)
        .where(ImageTextRow.image_id == image_id)
        .order_by(ImageTextRow.model_version, ImageTextRow.detection_id)
    )
    return _group(rows).get(image_id, [])


def text_of_images(
    *, session: Session, viewer: Viewer, image_ids: Iterable[str]
) -> dict[str, list[ImageText]]:
    """The text of each of the viewer's images among ``image_ids`` that has some (others absent)."""
    ids = sorted(set(image_ids))
    out: dict[str, list[ImageText]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = _owned(
            select(ImageTextRow).where(ImageTextRow.image_id.in_(ids[start : start + _IN_CHUNK])),
            viewer,
            ImageTextRow.image_id,
        ).order_by(ImageTextRow.image_id, ImageTextRow.model_version, ImageTextRow.detection_id)
        out.update(_group(session.scalars(stmt)))
    return out


def flagged_images(*, session: Session, viewer: Viewer, image_ids: Iterable[str]) -> set[str]:
    """Which of the viewer's images among ``image_ids`` carry the Explicit moderation label
    (as an effective label: a person who rejected it has unflagged the photo)."""
    ids = sorted(set(image_ids))
    found: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        stmt = select(ImageTerm.image_id).where(
            ImageTerm.image_id.in_(ids[start : start + _IN_CHUNK]),
            ImageTerm.kind == TermKind.LABEL,
            ImageTerm.term == EXPLICIT,
        )
        if not viewer.is_admin:
            stmt = stmt.where(ImageTerm.owner_id == viewer.user_id)
        found.update(str(i) for i in session.scalars(stmt))
    return found


def text_terms_present(
    *, session: Session, viewer: Viewer, terms: Iterable[str], owner_id: str | None
) -> set[str]:
    """Which of these words (any case) some photo the search can return has read in it:
    the viewer's own (``owner_id``), or anyone's for an admin's search of everyone's (None).
    One probe of the term index per word."""
    present: set[str] = set()
    for term in sorted(set(terms)):
        stmt = select(ImageTerm.image_id).where(
            ImageTerm.kind == TermKind.TEXT, ImageTerm.term == term.casefold()[:128]
        )
        if not viewer.is_admin:  # a person's own photos only, whatever owner is asked for
            stmt = stmt.where(ImageTerm.owner_id == viewer.user_id)
        if owner_id is not None:
            stmt = stmt.where(ImageTerm.owner_id == owner_id)
        if session.scalar(stmt.limit(1)) is not None:
            present.add(term)
    return present
