"""Thresholds from reviews (issue #27 item 3): people's verdicts on machine labels, the
floors in force (``label_thresholds``) and how many photos a floor would keep.

``owner_id`` is one person's id, or None for everyone's photos (an admin choosing a
threshold for everyone); callers pass the signed-in viewer's own id otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session, aliased

from labelkit.db import counts
from labelkit.db.models import (
    ALL_OWNERS,
    MACHINE_SOURCES,
    Image,
    ImageTerm,
    LabelCount,
    LabelRow,
    LabelSource,
    LabelThreshold,
    ReviewState,
    TermKind,
    utcnow,
)


def reviewed_machine_labels(*, session: Session, owner_id: str | None) -> list[tuple[str, float, str]]:
    """(name, machine confidence, verdict) of every image-level machine label a person
    confirmed or rejected themselves (implied rejections are not theirs)."""
    human = aliased(LabelRow)
    stmt = (
        select(LabelRow.name, LabelRow.confidence, human.review)
        .join(
            human,
            and_(
                human.image_id == LabelRow.image_id,
                human.source == LabelSource.HUMAN,
                human.model_version == "",
                human.name == LabelRow.name,
                human.instance == 0,
                human.implied_by.is_(None),
                human.review.in_([ReviewState.CONFIRMED, ReviewState.REJECTED]),
            ),
        )
        .where(LabelRow.source.in_(MACHINE_SOURCES), LabelRow.instance == 0)
    )
    if owner_id is not None:
        stmt = stmt.join(Image, Image.id == LabelRow.image_id).where(Image.owner_id == owner_id)
    return [(str(n), float(c), ReviewState(r).value) for n, c, r in session.execute(stmt)]


def floors(*, session: Session, owner_id: str | None) -> dict[str, float]:
    """The floors in force for a person (everyone's, with their own on top), by folded name;
    ``None``: everyone's only."""
    if owner_id is None:
        return counts.read_floors(session, [ALL_OWNERS]).get(ALL_OWNERS, {})
    return counts.read_floors(session, [owner_id])[owner_id]


def images_carrying(*, session: Session, owner_id: str | None, name: str, floor: float = 0.0) -> int:
    """Photos that carry ``name`` as a label at ``floor`` or more (a person's own label counts
    at 100, so no floor takes it away)."""
    stmt = select(func.count()).where(
        ImageTerm.kind == TermKind.LABEL, ImageTerm.term == name[:128], ImageTerm.confidence >= floor
    )
    if owner_id is not None:
        stmt = stmt.where(ImageTerm.owner_id == owner_id)
    return int(session.scalar(stmt) or 0)


def machine_labelled(*, session: Session, owner_id: str | None, name: str) -> list[str]:
    """Ids of the photos with an image-level machine label ``name``, in any case (those a
    floor changes). The spellings come from the totals (one row per name), so the labels are
    read by name through their index."""
    key = " ".join(name.split())[:128].casefold()
    known = session.scalars(
        select(LabelCount.name).where(LabelCount.owner_id.in_([ALL_OWNERS, owner_id or ALL_OWNERS]))
    )
    spellings = sorted({str(n) for n in known if str(n).casefold() == key} | {name[:128]})
    stmt = select(LabelRow.image_id).where(
        LabelRow.source.in_(MACHINE_SOURCES), LabelRow.instance == 0, LabelRow.name.in_(spellings)
    )
    if owner_id is not None:
        stmt = stmt.join(Image, Image.id == LabelRow.image_id).where(Image.owner_id == owner_id)
    return sorted({str(i) for i in session.scalars(stmt.distinct())})


def set_floor(*, session: Session, owner_id: str, name: str, min_confidence: float, set_by: str) -> None:
    """Store the floor of ``name`` for ``owner_id`` (``*``: everyone)."""
    key = " ".join(name.split())[:128].casefold()
    row = session.get(LabelThreshold, (owner_id, key))
    if row is None:
        session.add(
            LabelThreshold(
                owner_id=owner_id, name=key, min_confidence=min_confidence, set_by=set_by, set_at=utcnow()
            )
        )
    else:
        row.min_confidence, row.set_by, row.set_at = min_confidence, set_by, utcnow()
    session.flush()


def clear_floor(*, session: Session, owner_id: str, name: str) -> None:
    key = " ".join(name.split())[:128].casefold()
    session.execute(
        delete(LabelThreshold).where(LabelThreshold.owner_id == owner_id, LabelThreshold.name == key)
    )


def floors_set(*, session: Session, owner_ids: Sequence[str]) -> list[LabelThreshold]:
    """The stored floors of these owners (``*`` included if asked), by owner then name."""
    stmt = select(LabelThreshold).where(LabelThreshold.owner_id.in_(list(owner_ids)))
    return list(session.scalars(stmt.order_by(LabelThreshold.owner_id, LabelThreshold.name)))
