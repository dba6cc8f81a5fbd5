"""Taught labels (issue #27): what a person's labels teach, and the ``learned`` rows it suggests.

Every read here is one owner's (the caller resolved the owner: a signed-in viewer's own id,
or an account named on the command line); suggestions are written through
:func:`labelkit.db.counts.counting`, so search, counts and the review queue follow them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.models import (
    Image,
    ImageFeatureRow,
    ImageTerm,
    LabelRow,
    LabelSource,
    LearningRun,
    ReviewState,
    TaughtLabel,
    TermKind,
    utcnow,
)
from labelkit.db.queries._scope import _IN_CHUNK

ACTIVE = "active"
REFUSED = "refused"


@dataclass
class Teaching:
    """One name as a person gave it on their photos (image-level, their own verdicts)."""

    name: str  # as first spelled
    positives: set[str] = field(default_factory=set)  # image ids: added or confirmed
    rejected: set[str] = field(default_factory=set)  # image ids: rejected
    parents: Counter[tuple[str, ...]] = field(default_factory=Counter)
    categories: Counter[tuple[str, ...]] = field(default_factory=Counter)


def teachings(*, session: Session, owner_id: str) -> dict[str, Teaching]:
    """Per folded name, the owner's own verdicts on it (implied rejections are not theirs)."""
    stmt = (
        select(LabelRow.image_id, LabelRow.name, LabelRow.review, LabelRow.parents, LabelRow.categories)
        .join(Image, Image.id == LabelRow.image_id)
        .where(
            Image.owner_id == owner_id,
            LabelRow.source == LabelSource.HUMAN,
            LabelRow.instance == 0,
            LabelRow.implied_by.is_(None),
        )
        .order_by(LabelRow.id)
    )
    out: dict[str, Teaching] = {}
    for image_id, name, review, parents, categories in session.execute(stmt):
        t = out.setdefault(str(name).casefold(), Teaching(name=str(name)))
        if review == ReviewState.CONFIRMED:
            t.positives.add(str(image_id))
            t.parents[tuple(parents or ())] += 1
            t.categories[tuple(categories or ())] += 1
        elif review == ReviewState.REJECTED:
            t.rejected.add(str(image_id))
    return out


def _signature(count: int, newest: object) -> str:
    return f"{int(count)}:{newest.isoformat() if isinstance(newest, datetime) else newest}"[:64]


def signature(*, session: Session, owner_id: str) -> str:
    """The state of the owner's own labels, changing with every write and delete of them:
    how many human rows they have, and the newest one's time."""
    count, newest = session.execute(
        select(func.count(), func.max(LabelRow.created_at))
        .join(Image, Image.id == LabelRow.image_id)
        .where(Image.owner_id == owner_id, LabelRow.source == LabelSource.HUMAN)
    ).one()
    return _signature(count, newest)


def changed_owners(*, session: Session) -> dict[str, str]:
    """{owner: :func:`signature`} of the owners whose own labels changed since their last
    training (or who have taught labels and no labels of their own any more): one grouped
    read of the human rows, one of ``learning_runs``, whatever the number of owners."""
    now = {
        str(o): _signature(n, newest)
        for o, n, newest in session.execute(
            select(Image.owner_id, func.count(), func.max(LabelRow.created_at))
            .join(Image, Image.id == LabelRow.image_id)
            .where(LabelRow.source == LabelSource.HUMAN)
            .group_by(Image.owner_id)
        )
    }
    for owner in session.scalars(select(TaughtLabel.owner_id).distinct()):
        now.setdefault(str(owner), _signature(0, None))
    seen = {
        str(o): str(sig) for o, sig in session.execute(select(LearningRun.owner_id, LearningRun.signature))
    }
    return {o: sig for o, sig in sorted(now.items()) if seen.get(o) != sig}


def owners_with_own_labels(*, session: Session) -> list[str]:
    """Owners who gave any label or verdict (the only ones with anything to learn), plus those
    with taught labels (whose people may have removed what taught them)."""
    people = select(Image.owner_id).join(LabelRow, LabelRow.image_id == Image.id)
    people = people.where(LabelRow.source == LabelSource.HUMAN).distinct()
    taught = select(TaughtLabel.owner_id).distinct()
    return sorted({str(o) for o in session.scalars(people)} | {str(o) for o in session.scalars(taught)})


def record_run(*, session: Session, owner_id: str, signature: str) -> None:
    run = session.get(LearningRun, owner_id)
    if run is None:
        session.add(LearningRun(owner_id=owner_id, signature=signature, trained_at=utcnow()))
    else:
        run.signature, run.trained_at = signature, utcnow()
    session.flush()


def embedding_model_of(*, session: Session, owner_id: str) -> str | None:
    """The embedding model most of the owner's photos were embedded with."""
    row = session.execute(
        select(ImageFeatureRow.embedding_model, func.count())
        .where(ImageFeatureRow.owner_id == owner_id, ImageFeatureRow.embedding_model.is_not(None))
        .group_by(ImageFeatureRow.embedding_model)
        .order_by(func.count().desc(), ImageFeatureRow.embedding_model)
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


def images_carrying(*, session: Session, owner_id: str, name: str) -> set[str]:
    """The owner's images that carry ``name`` as a label already (model, person or suggestion)."""
    stmt = select(ImageTerm.image_id).where(
        ImageTerm.owner_id == owner_id, ImageTerm.kind == TermKind.LABEL, ImageTerm.term == name[:128]
    )
    return {str(i) for i in session.scalars(stmt)}


def suggested_images(*, session: Session, owner_id: str, name: str) -> dict[str, str]:
    """{image id: model version} of the ``learned`` rows of ``name`` on the owner's images."""
    stmt = (
        select(LabelRow.image_id, LabelRow.model_version)
        .join(Image, Image.id == LabelRow.image_id)
        .where(
            Image.owner_id == owner_id, LabelRow.source == LabelSource.LEARNED, LabelRow.name == name[:128]
        )
    )
    return {str(i): str(v) for i, v in session.execute(stmt)}


def write_suggestions(
    *,
    session: Session,
    image_ids: Sequence[str],
    name: str,
    model_version: str,
    confidences: Mapping[str, float],
    parents: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> None:
    """Make ``name``'s ``learned`` rows on these images exactly ``confidences`` (images not in
    it lose theirs), keeping terms and totals in step. Keep ``image_ids`` short (one
    transaction locks them all): :mod:`labelkit.learning` passes a few hundred at a time."""
    with counts.counting(session, image_ids):
        session.execute(
            delete(LabelRow).where(
                LabelRow.image_id.in_(list(image_ids)),
                LabelRow.source == LabelSource.LEARNED,
                LabelRow.name == name[:128],
            )
        )
        rows = [
            _learned_row(i, name, model_version, confidences[i], parents, categories)
            for i in image_ids
            if i in confidences
        ]
        if rows:
            session.execute(insert(LabelRow), rows)


def _learned_row(
    image_id: str,
    name: str,
    version: str,
    confidence: float,
    parents: Sequence[str],
    categories: Sequence[str],
) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "source": LabelSource.LEARNED,
        "model_version": version[:64],
        "name": name[:128],
        "instance": 0,
        "confidence": round(float(confidence), 3),
        "parents": list(parents),
        "aliases": [],
        "categories": list(categories),
        "review": ReviewState.UNREVIEWED,
        "created_at": utcnow(),
        "box_left": None,
        "box_top": None,
        "box_width": None,
        "box_height": None,
    }


def taught_labels(*, session: Session, owner_id: str) -> list[TaughtLabel]:
    """The owner's taught labels, by name."""
    return list(
        session.scalars(
            select(TaughtLabel).where(TaughtLabel.owner_id == owner_id).order_by(TaughtLabel.name)
        )
    )


def active_taught(*, session: Session, owner_id: str, embedding_model: str) -> list[TaughtLabel]:
    return list(
        session.scalars(
            select(TaughtLabel).where(
                TaughtLabel.owner_id == owner_id,
                TaughtLabel.status == ACTIVE,
                TaughtLabel.embedding_model == embedding_model,
            )
        )
    )


def save_taught(*, session: Session, owner_id: str, name: str, values: dict[str, Any]) -> None:
    row = session.get(TaughtLabel, (owner_id, name[:128]))
    if row is None:
        session.add(TaughtLabel(owner_id=owner_id, name=name[:128], **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()


def forget_taught(*, session: Session, owner_id: str, names: Iterable[str]) -> None:
    names = [n[:128] for n in names]
    for start in range(0, len(names), _IN_CHUNK):
        session.execute(
            delete(TaughtLabel).where(
                TaughtLabel.owner_id == owner_id, TaughtLabel.name.in_(names[start : start + _IN_CHUNK])
            )
        )


def labels_on(*, session: Session, image_id: str) -> set[str]:
    """Folded names of every image-level row on the image (any source, any verdict)."""
    stmt = select(LabelRow.name).where(LabelRow.image_id == image_id, LabelRow.instance == 0)
    return {str(n).casefold() for n in session.scalars(stmt)}
