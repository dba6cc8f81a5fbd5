"""It learns what you teach it (issue #27): every label a person added or confirmed on at least
three of their photos becomes a *taught* label, suggested on their other photos.

* :func:`learn` trains one owner's taught labels (:mod:`labelkit.taught`: logistic regression
  over the stored image embeddings, cross-validated, calibrated), stores each one's quality in
  ``taught_labels`` and makes the ``learned`` label rows (its suggestions) match: a photo gets
  the suggestion when its confidence reaches the label's threshold, unless it carries the name
  already or its owner gave a verdict on it. A rejected suggestion is a person's rejection like
  any other: the next training learns from it as a negative.
* :func:`learn_changed` is the worker's debounced trigger: it trains the owners whose labels
  changed and then stayed unchanged for ``quiet_seconds``.
* :func:`suggest_for_new` gives a photo being labelled its owner's taught labels, in the
  worker's own transaction, so new uploads get them as soon as they are labelled.

Suggestions are written a few hundred photos per transaction, so a person with 10,000 photos
never holds everyone else's writes for long.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from labelkit import taught
from labelkit.db.engine import in_transaction, transaction
from labelkit.db.models import TaughtLabel, utcnow
from labelkit.db.queries import features as features_q
from labelkit.db.queries import learning as learning_q
from labelkit.domain import ImageFeatures
from labelkit.features import embedding

logger = logging.getLogger(__name__)

#: Photos whose suggestions are rewritten per transaction.
CHUNK = 200
#: The worker trains an owner again once their labels stayed unchanged this long.
QUIET_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Quality:
    """One taught label after training: what :func:`describe` says about it."""

    name: str
    status: str  # active | refused
    positives: int
    negatives: int
    folds: int
    precision: float | None
    recall: float | None
    threshold: float
    suggested: int
    reason: str | None
    seconds: float


def describe(label: Quality | TaughtLabel) -> str:
    """ "Beach: taught from 6 photos (1 rejected); precision 0.83, recall 0.71 in cross-validation"."""
    n = label.positives
    text = f"{label.name}: taught from {n} photo{'s' if n != 1 else ''}"
    if label.negatives:
        text += f" ({label.negatives} rejected)"
    precision = label.precision if isinstance(label, Quality) else label.cv_precision
    recall = label.recall if isinstance(label, Quality) else label.cv_recall
    if precision is not None and recall is not None:
        text += f"; precision {precision:.2f}, recall {recall:.2f} in cross-validation"
    if label.status == learning_q.ACTIVE:
        text += f"; suggested on {label.suggested} photo{'s' if label.suggested != 1 else ''}"
        text += f" at {label.threshold:.0f}% or more"
    else:
        text += f"; suggests nothing: {label.reason}"
    return text


def _version(owner_id: str, name: str, positives: Sequence[str], rejected: Sequence[str]) -> str:
    """The training snapshot's name: when, and a digest of what it learned from."""
    digest = hashlib.sha256("\x1f".join([owner_id, name, *positives, "|", *rejected]).encode()).hexdigest()
    return f"learned-{utcnow():%Y%m%dT%H%M%S}-{digest[:8]}"


def learn(engine: Engine, owner_id: str, *, write: bool = True) -> list[Quality]:
    """Train every taught label of one owner and (with ``write``) store them and their
    suggestions; returns their quality, by name. ``write=False`` only evaluates."""
    with transaction(engine) as s:
        state = learning_q.signature(session=s, owner_id=owner_id)
        teach = learning_q.teachings(session=s, owner_id=owner_id)
        model = learning_q.embedding_model_of(session=s, owner_id=owner_id)
        before = {t.name.casefold(): t for t in learning_q.taught_labels(session=s, owner_id=owner_id)}
        ids: list[str] = []
        blobs: list[bytes] = []
        if model is not None:
            for part in features_q.owner_embeddings(session=s, owner_id=owner_id, model=model):
                for image_id, blob in part:
                    ids.append(image_id)
                    blobs.append(blob)
        s.expunge_all()
    x = embedding.unpack_many(blobs) if blobs else np.zeros((0, embedding.EMBED_DIM), np.float32)
    row_of = {image_id: i for i, image_id in enumerate(ids)}
    out: list[Quality] = []
    for key in sorted(set(teach) | set(before)):
        t = teach.get(key)
        if t is None or (len(t.positives) < taught.MIN_PHOTOS and key not in before):
            if key in before and write:
                _store(engine, owner_id, before[key].name, {}, refused_values(0, 0))
            continue
        started = time.perf_counter()
        pos = sorted(i for i in t.positives if i in row_of)
        rej = sorted(i for i in t.rejected - t.positives if i in row_of)
        result, conf = taught.teach(
            x, [row_of[i] for i in pos], [row_of[i] for i in rej], seed=taught.seed_for(owner_id, key)
        )
        if result.positives < taught.MIN_PHOTOS and len(t.positives) >= taught.MIN_PHOTOS:
            result = _without_embeddings(result, len(t.positives))
        confidences: dict[str, float] = {}
        clf = result.classifier
        if clf is not None and write:
            with transaction(engine) as s:
                carrying = learning_q.images_carrying(session=s, owner_id=owner_id, name=t.name)
                suggested = learning_q.suggested_images(session=s, owner_id=owner_id, name=t.name)
            skip = (carrying - set(suggested)) | t.positives | t.rejected
            confidences = {
                image_id: float(conf[i])
                for i, image_id in enumerate(ids)
                if conf[i] >= clf.threshold and image_id not in skip
            }
        parents = list(t.parents.most_common(1)[0][0]) if t.parents else []
        categories = list(t.categories.most_common(1)[0][0]) if t.categories else []
        quality = Quality(
            name=t.name,
            status=learning_q.ACTIVE if clf is not None else learning_q.REFUSED,
            positives=len(t.positives),
            negatives=len(t.rejected - t.positives),
            folds=result.folds,
            precision=result.cv_precision,
            recall=result.cv_recall,
            threshold=clf.threshold if clf is not None else 0.0,
            suggested=len(confidences),
            reason=result.refused,
            seconds=0.0,
        )
        if write:
            values = {
                "model_version": _version(owner_id, key, pos, rej),
                "embedding_model": model or "",
                "status": quality.status,
                "reason": quality.reason,
                "positives": quality.positives,
                "negatives": quality.negatives,
                "threshold": quality.threshold,
                "cv_precision": quality.precision,
                "cv_recall": quality.recall,
                "platt_a": clf.platt_a if clf else 1.0,
                "platt_b": clf.platt_b if clf else 0.0,
                "weights": clf.pack() if clf else None,
                "parents": parents,
                "categories": categories,
                "suggested": quality.suggested,
                "trained_at": utcnow(),
            }
            _store(engine, owner_id, t.name, confidences, values, parents, categories)
        out.append(dataclasses.replace(quality, seconds=time.perf_counter() - started))
    if write:
        with transaction(engine) as s:
            learning_q.record_run(session=s, owner_id=owner_id, signature=state)
    return out


def _without_embeddings(result: taught.Training, given: int) -> taught.Training:
    reason = (
        f"only {result.positives} of the {given} photos have been analysed yet; "
        f"{taught.MIN_PHOTOS} are needed"
    )
    return taught.Training(
        None, result.positives, result.negatives, 0, None, None, reason, result.background_confidence
    )


def refused_values(positives: int, negatives: int) -> dict[str, object]:
    """A taught label whose teaching is gone (its photos lost the label): it suggests nothing."""
    return {
        "model_version": "",
        "embedding_model": "",
        "status": learning_q.REFUSED,
        "reason": f"taught from {positives} photos; {taught.MIN_PHOTOS} are needed",
        "positives": positives,
        "negatives": negatives,
        "threshold": 0.0,
        "cv_precision": None,
        "cv_recall": None,
        "weights": None,
        "suggested": 0,
        "trained_at": utcnow(),
    }


def _store(
    engine: Engine,
    owner_id: str,
    name: str,
    confidences: dict[str, float],
    values: Mapping[str, object],
    parents: Sequence[str] = (),
    categories: Sequence[str] = (),
) -> None:
    """Store the label and make its suggestions ``confidences``, a chunk per transaction."""
    with transaction(engine) as s:
        old = learning_q.suggested_images(session=s, owner_id=owner_id, name=name)
    version = str(values.get("model_version") or "")
    # Every photo that had a suggestion or gets one is rewritten (the version names the snapshot).
    touched = sorted(set(old) | set(confidences))
    for start in range(0, len(touched), CHUNK):
        chunk = touched[start : start + CHUNK]

        def write(s: Session, chunk: list[str] = chunk) -> None:
            learning_q.write_suggestions(
                session=s,
                image_ids=chunk,
                name=name,
                model_version=version,
                confidences=confidences,
                parents=parents,
                categories=categories,
            )

        in_transaction(engine, write)
    with transaction(engine) as s:
        learning_q.save_taught(session=s, owner_id=owner_id, name=name, values=dict(values))


def learn_changed(engine: Engine, *, quiet_seconds: float = QUIET_SECONDS) -> int:
    """Train the owners whose own labels changed since their last training and then stayed
    unchanged for ``quiet_seconds`` (the worker's debounce); returns how many were trained."""
    trained = 0
    with transaction(engine) as s:
        changed = learning_q.changed_owners(session=s)
    for owner_id, state in changed.items():
        if still_changing(state, quiet_seconds):
            continue  # still changing: wait for a quiet moment
        try:
            qualities = learn(engine, owner_id)
        except Exception:
            logger.warning("learning from %s's labels failed; trying again later", owner_id, exc_info=True)
            continue
        trained += 1
        logger.info("learned %d taught labels for %s", len(qualities), owner_id)
    return trained


def still_changing(state: str, quiet_seconds: float) -> bool:
    """The worker's debounce: whether an owner's state ``<count>:<newest change>`` (ISO time, or
    ``None`` / empty for none) changed less than ``quiet_seconds`` ago. The people's re-cluster
    (:func:`labelkit.people.recluster_changed`) waits the same way."""
    newest = state.split(":", 1)[1]
    if newest in ("None", ""):
        return False
    when = datetime.fromisoformat(newest)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return utcnow() - when < timedelta(seconds=quiet_seconds)


def suggest_for_new(session: Session, *, image_id: str, owner_id: str, features: ImageFeatures) -> int:
    """Give a photo being labelled its owner's taught labels (in the caller's transaction,
    after its model labels are written); returns how many were suggested."""
    if features.embedding is None or not features.embedding_model:
        return 0
    labels = learning_q.active_taught(
        session=session, owner_id=owner_id, embedding_model=features.embedding_model
    )
    if not labels:
        return 0
    x = embedding.unpack(features.embedding).reshape(1, -1)
    have = learning_q.labels_on(session=session, image_id=image_id)
    wrote = 0
    for label in labels:
        if label.weights is None or label.name.casefold() in have:
            continue
        clf = taught.Classifier.unpack(label.weights, label.platt_a, label.platt_b, label.threshold)
        if clf.weights.shape[0] != x.shape[1]:
            continue
        conf = float(clf.confidences(x)[0])
        if conf < clf.threshold:
            continue
        learning_q.write_suggestions(
            session=session,
            image_ids=[image_id],
            name=label.name,
            model_version=label.model_version,
            confidences={image_id: conf},
            parents=label.parents,
            categories=label.categories,
        )
        wrote += 1
    return wrote
