"""The worker's job: one S3-event-shaped message in, labels in the database out.

``Pipeline.handle_message(body, receive_count=n)`` is what the Lambda handler
and the listener both call. For every object-created record it

1. finds the image row by object key (no row: the image was deleted or the
   object was not uploaded through Labelkit; nothing to do),
2. skips work already done (every configured model version present: a
   re-delivery writes nothing),
3. records the attempt, fetches the bytes, labels them with each labeller,
4. derives the photo's features (``labelkit.features``: perceptual hash, embedding,
   thumbnail; the thumbnail is stored beside the photo under ``thumbnail_key``),
5. writes the labels (moderation flags among them), the text read in the photo (its words
   searchable) and the features idempotently and sets ``labelled`` in one transaction,
   which first holds the image row (``thumbs.lock_image_for_worker``) and writes nothing
   if the image was deleted meanwhile.

**No thumbnail outlives its photo** (issue 25). The owner may delete the image at any
moment of this; :func:`labelkit.uploads.delete_image` removes the object, then the rows,
then the thumbnail, and this worker stores the thumbnail *before* the transaction of step 5
checks the row. The row lock orders the check against the delete of the rows, so each
interleaving ends with no thumbnail of a deleted photo:

* delete before step 1 finds the row: nothing to do (skipped), nothing stored;
* delete between step 1 and the fetch: the object is gone, the image fails (its row is
  gone too, so nothing shows), nothing stored;
* delete while labelling, before or after the thumbnail is stored, its rows removed before
  step 5 holds the row: step 5 finds no row, writes nothing and this worker deletes the
  thumbnail it stored (the outcome is "skipped", :data:`DELETED_WHILE_LABELLING`);
* delete whose rows go after step 5 committed (it waited on the row lock): the thumbnail
  was stored before step 5, so before the delete's last step, which removes it.

What is left is a thumbnail this worker could not delete (the store failed at that moment)
or one stored by a delivery that then failed before step 5 (and whose image was deleted
before the next): :func:`labelkit.reconcile.reconcile` sweeps thumbnails whose photo has
no row.

Records the store cannot own are **refused** before anything is looked up: an
event naming another bucket than the configured store's (the S3 bucket, or the
local store's pseudo-bucket ``local``) and a key the store will not accept
(``users/x//y.jpg``, a key outside the S3 prefix). No delivery can change that,
so the refusal is logged as a warning and the message is acknowledged.

Failures fall in two kinds:

* **permanent** (the bytes are not an image, the stored file is gone, the
  labeller says retrying cannot help): the image becomes ``failed`` with a
  reason a person understands, and the message is acknowledged;
* **transient** (database or store unreachable, labeller error): the
  exception propagates so the message is *not* deleted and comes back after
  its visibility timeout. On the last allowed delivery the image is marked
  ``failed`` first (the queue then dead-letters the message), so every upload
  ends labelled or failed-with-a-reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from labelkit import learning, people
from labelkit.db.engine import in_transaction, transaction
from labelkit.db.models import ImageStatus
from labelkit.db.queries import thumbs as thumb_q
from labelkit.db.queries import worker as worker_q
from labelkit.domain import LabelResult
from labelkit.errors import IntakeError, LabelerError, ObjectNotFound, StorageError
from labelkit.features import FeatureExtractor, FeatureInput, extract_all, thumbnail_key
from labelkit.labelers.base import ImageInput, Labeler, LabelOptions
from labelkit.queue.events import ObjectEvent, parse_s3_event
from labelkit.storage import ObjectStore, event_bucket

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What happened to one record; logged as one structured line per image."""

    key: str
    status: str  # labelled | failed | skipped | refused | retry
    image_id: str | None = None
    labels: int = 0
    reason: str | None = None
    attempt: int = 0
    #: Faces described for people, and faces found but too small to describe (skipped).
    faces: int | None = None
    faces_skipped: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def as_log(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "event": "image",
                "status": self.status,
                "image_id": self.image_id,
                "key": self.key,
                "labels": self.labels,
                "attempt": self.attempt,
                "reason": self.reason,
                "faces": self.faces,
                "faces_skipped": self.faces_skipped,
                **{f"{k}_ms": round(v, 1) for k, v in self.timings_ms.items()},
            }.items()
            if v is not None
        }


DELETED_WHILE_LABELLING = "the image was deleted while it was being labelled"


class RetryableError(Exception):
    """A record failed in a way a later delivery may fix; the message must not be deleted."""

    def __init__(self, outcome: Outcome, cause: BaseException) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome
        self.__cause__ = cause


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IntakeError | LabelerError):
        return exc.reason
    if isinstance(exc, ObjectNotFound):
        return "The stored file is missing; upload the image again."
    if isinstance(exc, StorageError):
        return f"Could not read the stored file: {exc}"
    if isinstance(exc, SQLAlchemyError):
        return "The database was not reachable."
    return f"Unexpected error while labelling ({type(exc).__name__}: {exc})"


def _stage_timings(labelers: Sequence[Labeler]) -> dict[str, float]:
    """What each model of the labellers that time them took for this image (``label_text``,
    ``label_moderation`` ...: :meth:`labelkit.labelers.local.LocalLabeler.timings`)."""
    out: dict[str, float] = {}
    for labeler in labelers:
        timings = getattr(labeler, "timings", None)
        if callable(timings):
            out.update({f"label_{stage}": float(ms) for stage, ms in timings().items()})
    return out


class Pipeline:
    def __init__(
        self,
        *,
        engine: Engine,
        store: ObjectStore,
        labelers: Sequence[Labeler],
        options: LabelOptions,
        max_receives: int,
        extractors: Sequence[FeatureExtractor] = (),
        make_thumbnail: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if not labelers:
            raise ValueError("at least one labeller is needed")
        self.engine = engine
        self.store = store
        self.labelers = list(labelers)
        self.options = options
        self.max_receives = max_receives
        self.extractors = list(extractors)
        self.make_thumbnail = make_thumbnail

    @property
    def model_version(self) -> str:
        return "+".join(lab.model_version for lab in self.labelers)

    def handle_message(self, body: str | dict[str, Any], *, receive_count: int = 1) -> list[Outcome]:
        """Process every record of one message.

        Raises ``RetryableError`` (after processing the other records) when a
        record should be retried; ``MalformedEvent`` for a body that is not an
        S3 event (the caller acknowledges it: no delivery will ever parse).
        """
        outcomes: list[Outcome] = []
        retry: RetryableError | None = None
        for event in parse_s3_event(body):
            refused = self._refusal(event)
            if refused is not None:
                outcomes.append(refused)
                continue
            try:
                outcomes.append(self._handle_key(event.key, receive_count=receive_count))
            except RetryableError as e:
                outcomes.append(e.outcome)
                retry = retry or e
        for outcome in outcomes:
            level = logging.WARNING if outcome.status == "refused" else logging.INFO
            logger.log(level, "image %s", outcome.status, extra={"labelkit": outcome.as_log()})
        if retry is not None:
            raise retry
        return outcomes

    def _refusal(self, event: ObjectEvent) -> Outcome | None:
        """A permanent refusal for a record this store cannot own, else None."""
        expected = event_bucket(self.store)
        if event.bucket != expected:
            reason = f"event names bucket {event.bucket!r}, not this store's {expected!r}"
            return Outcome(key=event.key, status="refused", reason=reason)
        try:
            self.store.relative_key(event.key)
        except StorageError as e:
            return Outcome(key=event.key, status="refused", reason=f"the store refuses this key: {e}")
        return None

    def _handle_key(self, full_key: str, *, receive_count: int) -> Outcome:
        t0 = time.perf_counter()
        key = self.store.relative_key(full_key)  # checked by _refusal
        outcome = Outcome(key=key, status="skipped")
        try:
            with transaction(self.engine) as s:
                image = worker_q.get_image_by_key_for_worker(session=s, object_key=key)
                if image is None:
                    outcome.reason = "no image row for this key (deleted, or not uploaded through Labelkit)"
                    return outcome
                outcome.image_id = image_id = image.id
                owner_id = image.owner_id
                if image.status == ImageStatus.LABELLED and image.model_version == self.model_version:
                    outcome.reason = "already labelled"
                    return outcome
                outcome.attempt = worker_q.mark_labelling(session=s, image_id=image_id)
        except SQLAlchemyError as e:
            outcome.status, outcome.reason = "retry", _reason(e)
            raise RetryableError(outcome, e) from e

        try:
            t1 = time.perf_counter()
            data = self.store.get(key)
            t2 = time.perf_counter()
            results: list[LabelResult] = []
            for labeler in self.labelers:
                results.append(
                    labeler.label(
                        ImageInput(data=data, s3_bucket=self.store.bucket, s3_key=self.store.full_key(key)),
                        self.options,
                    )
                )
            t3 = time.perf_counter()
            stages = _stage_timings(self.labelers)
            props = next((r.image_properties for r in results if r.image_properties), None)
            features = extract_all(
                self.extractors, FeatureInput(data, results=results, make_thumbnail=self.make_thumbnail)
            )
            thumb_key = None
            if features.thumbnail is not None:
                thumb_key = thumbnail_key(key)
                self.store.put(
                    thumb_key, features.thumbnail, content_type=features.thumbnail_type or "image/jpeg"
                )
            t_features = time.perf_counter()

            def write(s: Session) -> int | None:
                if not thumb_q.lock_image_for_worker(session=s, image_id=image_id):
                    return None  # deleted meanwhile: write nothing
                saved = sum(
                    worker_q.save_model_labels(session=s, image_id=image_id, result=r) for r in results
                )
                worker_q.save_features(session=s, image_id=image_id, features=features, thumb_key=thumb_key)
                # The faces, grouped into the owner's people (issue #29).
                people.add_faces(s, image_id=image_id, owner_id=owner_id, features=features)
                # What the owner taught, on their new photo (issue #27).
                saved += learning.suggest_for_new(s, image_id=image_id, owner_id=owner_id, features=features)
                worker_q.mark_labelled(
                    session=s,
                    image_id=image_id,
                    model_version=self.model_version,
                    properties=props.model_dump() if props else None,
                )
                return saved

            # Writers of shared running totals can deadlock on MySQL: the loser is retried.
            saved = in_transaction(self.engine, write)
            if saved is None:
                if thumb_key is not None:
                    self._discard_thumbnail(thumb_key)
                outcome.reason = DELETED_WHILE_LABELLING
                return outcome
            outcome.labels += saved
            if features.faces is not None:
                outcome.faces, outcome.faces_skipped = len(features.faces), features.faces_skipped
            t4 = time.perf_counter()
            outcome.status = "labelled"
            outcome.timings_ms = {
                "claim": (t1 - t0) * 1e3,
                "fetch": (t2 - t1) * 1e3,
                "label": (t3 - t2) * 1e3,
                "features": (t_features - t3) * 1e3,
                "write": (t4 - t_features) * 1e3,
                "total": (t4 - t0) * 1e3,
                **stages,
            }
            return outcome
        except (IntakeError, ObjectNotFound) as e:
            return self._fail(outcome, e)
        except LabelerError as e:
            if e.permanent:
                return self._fail(outcome, e)
            return self._retry_or_fail(outcome, e, receive_count)
        except Exception as e:  # any other failure is retried, then reported
            return self._retry_or_fail(outcome, e, receive_count)

    def _discard_thumbnail(self, thumb_key: str) -> None:
        """Delete the thumbnail this worker stored for an image deleted meanwhile."""
        try:
            self.store.delete(thumb_key)
        except StorageError:
            # Its photo has no row any more: the reconciler's sweep removes it later.
            logger.warning("could not delete the thumbnail %s of a deleted image", thumb_key, exc_info=True)

    def _fail(self, outcome: Outcome, exc: BaseException) -> Outcome:
        outcome.status, outcome.reason = "failed", _reason(exc)
        assert outcome.image_id is not None
        try:
            with transaction(self.engine) as s:
                worker_q.mark_failed(session=s, image_id=outcome.image_id, reason=outcome.reason)
        except SQLAlchemyError as e:
            # Could not record the failure: let the message come back and try again.
            outcome.status = "retry"
            raise RetryableError(outcome, e) from e
        return outcome

    def _retry_or_fail(self, outcome: Outcome, exc: BaseException, receive_count: int) -> Outcome:
        reason = _reason(exc)
        logger.warning(
            "labelling %s failed (delivery %d): %s",
            outcome.key,
            receive_count,
            reason,
            exc_info=not isinstance(exc, SQLAlchemyError | StorageError | LabelerError),
        )
        if receive_count >= self.max_receives:
            # Last delivery: say so on the image before the queue dead-letters the message.
            outcome.reason = f"Labelling failed after {receive_count} attempts: {reason}"
            assert outcome.image_id is not None
            try:
                with transaction(self.engine) as s:
                    worker_q.mark_failed(session=s, image_id=outcome.image_id, reason=outcome.reason)
                outcome.status = "failed"
            except SQLAlchemyError:
                outcome.status = "retry"
        else:
            outcome.status, outcome.reason = "retry", reason
        raise RetryableError(outcome, exc)
