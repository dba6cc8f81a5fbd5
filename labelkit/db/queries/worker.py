"""The worker's side: finding an image by its object key, recording attempts, writing a
labeller's result, marking an image labelled or failed, and the reads behind reconciling
(images never queued, attempts exhausted) and relabelling.

Unscoped on purpose (``*_for_worker`` and the writes): the pipeline acts for the system, by
object key.

Writes of model labels are idempotent: the unique key (image, source, model version, name,
instance) plus insert-or-ignore means a re-delivered job writes nothing new. Every write to
labels runs inside :func:`labelkit.db.counts.counting`, which keeps the running totals and
the image's terms in step. A result's moderation flags are stored as labels (category
``Moderation``); the text it read goes to ``image_text`` (:func:`save_text`), its words to
the image's terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.models import (
    Image,
    ImageFeatureRow,
    ImageStatus,
    ImageTextRow,
    LabelRow,
    LabelSource,
    ReviewState,
    utcnow,
)
from labelkit.db.queries._scope import _insert_ignore
from labelkit.domain import ImageFeatures, LabelResult, TextDetection


def get_image_by_key_for_worker(*, session: Session, object_key: str, lock: bool = False) -> Image | None:
    stmt = select(Image).where(Image.object_key == object_key)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


@dataclass(frozen=True, slots=True)
class UnqueuedImage:
    id: str
    object_key: str
    bytes: int


def never_queued_for_worker(
    *, session: Session, older_than_seconds: float, limit: int = 500
) -> list[UnqueuedImage]:
    """Images still ``pending`` with no job handed to the queue ``older_than_seconds`` after
    their last change: the upload (or a retry) stopped between writing the row and enqueueing."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    rows = session.execute(
        select(Image.id, Image.object_key, Image.bytes)
        .where(Image.status == ImageStatus.PENDING, Image.queued_at.is_(None), Image.updated_at < cutoff)
        .order_by(Image.updated_at)
        .limit(limit)
    )
    return [UnqueuedImage(id=i, object_key=k, bytes=int(b)) for i, k, b in rows]


def exhausted_for_worker(
    *, session: Session, max_attempts: int, older_than_seconds: float, limit: int = 500
) -> list[str]:
    """Ids of images still ``labelling`` after their last allowed attempt began more than
    ``older_than_seconds`` ago: no delivery will come again (the queue dead-letters it)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            select(Image.id)
            .where(
                Image.status == ImageStatus.LABELLING,
                Image.attempts >= max_attempts,
                Image.updated_at < cutoff,
            )
            .order_by(Image.updated_at)
            .limit(limit)
        )
    )


def fail_unfinished_for_worker(*, session: Session, image_id: str, reason: str) -> bool:
    """Mark the image failed if it is still pending or labelling (never over a result).

    Returns whether it was changed."""
    result = session.execute(
        update(Image)
        .where(Image.id == image_id, Image.status.in_([ImageStatus.PENDING, ImageStatus.LABELLING]))
        .values(status=ImageStatus.FAILED, failure_reason=reason[:2000], updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_labelling(*, session: Session, image_id: str) -> int:
    """Record an attempt; returns the attempt number."""
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(status=ImageStatus.LABELLING, attempts=Image.attempts + 1, updated_at=utcnow())
    )
    return int(session.scalar(select(Image.attempts).where(Image.id == image_id)) or 0)


def mark_failed(*, session: Session, image_id: str, reason: str) -> None:
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(status=ImageStatus.FAILED, failure_reason=reason[:2000], updated_at=utcnow())
    )


def version_family(model_version: str) -> str:
    """The labeller a model version belongs to: its first dash-separated word
    (``efficientnet-lite2-...`` -> ``efficientnet``, ``rekognition-3.0`` -> ``rekognition``)."""
    return model_version.split("-", 1)[0]


def save_model_labels(*, session: Session, image_id: str, result: LabelResult) -> int:
    """Write a labeller's result for an image, idempotently. Returns the label rows in the result.

    The result replaces the image's model labels written by *earlier versions of the same
    labeller* (same :func:`version_family`: relabelling with a new local model replaces the
    old local labels, never Rekognition's in compare mode); human rows (reviews, added
    labels) are kept. Until an image is relabelled, its old labels stay as they are.

    A result with no labels still records the model version (on the image) so a
    re-delivery knows the work is done. Its moderation flags are label rows too; the text it
    read (when its labeller reads text) replaces that family's earlier text (:func:`save_text`).
    """
    with counts.counting(session, [image_id]):
        _replace_older_versions(session, image_id, result.model_version)
        saved = _save_model_labels(session, image_id, result)
    if result.text is not None:
        save_text(session=session, image_id=image_id, model_version=result.model_version, text=result.text)
    return saved


def save_text(*, session: Session, image_id: str, model_version: str, text: list[TextDetection]) -> int:
    """Make the image's text from this labeller family (:func:`version_family`) these
    detections, and its ``text`` terms their words. Delete-then-insert in the caller's
    transaction: a re-delivery writes the same rows again. Returns the rows written."""
    family = version_family(model_version)
    versions = session.scalars(
        select(ImageTextRow.model_version).where(ImageTextRow.image_id == image_id).distinct()
    )
    mine = [v for v in versions if version_family(v) == family]
    if mine:
        session.execute(
            delete(ImageTextRow).where(
                ImageTextRow.image_id == image_id, ImageTextRow.model_version.in_(mine)
            )
        )
    rows = [
        {
            "image_id": image_id,
            "model_version": model_version[:64],
            "detection_id": d.id,
            "parent_id": d.parent_id,
            "kind": d.type,
            "text": d.text[:1024],
            "confidence": d.confidence,
            "box_left": d.box.left,
            "box_top": d.box.top,
            "box_width": d.box.width,
            "box_height": d.box.height,
            "polygon": [[x, y] for x, y in d.polygon] or None,
        }
        for d in text
    ]
    if rows:
        session.execute(insert(ImageTextRow), rows)
    counts.derive_text_terms(session, [image_id])
    return len(rows)


def _replace_older_versions(session: Session, image_id: str, model_version: str) -> None:
    family = version_family(model_version)
    versions = session.scalars(
        select(LabelRow.model_version)
        .where(LabelRow.image_id == image_id, LabelRow.source == LabelSource.MODEL)
        .distinct()
    )
    older = [v for v in versions if v != model_version and version_family(v) == family]
    if not older:
        return  # the usual case: one extra indexed read per write
    session.execute(
        delete(LabelRow).where(
            LabelRow.image_id == image_id,
            LabelRow.source == LabelSource.MODEL,
            LabelRow.model_version.in_(older),
        )
    )


def outdated_images_for_worker(
    *, session: Session, model_version: str, limit: int | None = None
) -> list[Image]:
    """Labelled images whose labels come from another configuration than ``model_version``
    (the pipeline's: its labellers' versions joined by '+'), oldest first."""
    stmt = (
        select(Image)
        .where(Image.status == ImageStatus.LABELLED, Image.model_version != model_version)
        .order_by(Image.created_at, Image.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def _save_model_labels(session: Session, image_id: str, result: LabelResult) -> int:
    rows: list[dict[str, Any]] = []
    flags = [m.as_label() for m in result.moderation or []]
    for lab in [*result.labels, *flags]:
        common = {
            "image_id": image_id,
            "source": LabelSource.MODEL,
            "model_version": result.model_version,
            "name": lab.name[:128],
            "parents": list(lab.parents),
            "aliases": list(lab.aliases),
            "categories": list(lab.categories),
            "review": ReviewState.UNREVIEWED,
            "created_at": utcnow(),
            # Every row needs every key: a multi-row INSERT takes its columns from the
            # first row, so box values on later rows were silently dropped.
            "box_left": None,
            "box_top": None,
            "box_width": None,
            "box_height": None,
        }
        rows.append({**common, "instance": 0, "confidence": lab.confidence})
        for i, inst in enumerate(lab.instances, start=1):
            rows.append(
                {
                    **common,
                    "instance": i,
                    "confidence": inst.confidence,
                    "box_left": inst.box.left,
                    "box_top": inst.box.top,
                    "box_width": inst.box.width,
                    "box_height": inst.box.height,
                }
            )
    _insert_ignore(session, LabelRow.__table__, rows)
    # image_terms follow from the rows (counts.counting derives them after this write).
    return len(rows)


def save_features(
    *, session: Session, image_id: str, features: ImageFeatures, thumb_key: str | None = None
) -> None:
    """Replace an image's derived features (hash, embedding, thumbnail key) with these.

    Delete-then-insert in the caller's transaction: a re-delivery writes the same row again
    (idempotent), and two workers on one image serialise on the row (a deadlock loser is
    retried by :func:`labelkit.db.engine.in_transaction`)."""
    owner_id = session.scalar(select(Image.owner_id).where(Image.id == image_id))
    session.execute(delete(ImageFeatureRow).where(ImageFeatureRow.image_id == image_id))
    if owner_id is None or (features.empty and thumb_key is None):
        return
    session.add(
        ImageFeatureRow(
            image_id=image_id,
            owner_id=owner_id,
            phash=features.phash,
            embedding=features.embedding,
            embedding_model=features.embedding_model,
            thumb_key=thumb_key,
        )
    )
    session.flush()


def mark_labelled(
    *,
    session: Session,
    image_id: str,
    model_version: str,
    properties: dict[str, Any] | None,
) -> None:
    session.execute(
        update(Image)
        .where(Image.id == image_id)
        .values(
            status=ImageStatus.LABELLED,
            failure_reason=None,
            model_version=model_version[:64],
            properties=properties,
            labelled_at=utcnow(),
            updated_at=utcnow(),
        )
    )
