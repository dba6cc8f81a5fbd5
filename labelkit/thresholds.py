"""Thresholds from reviews (issue #27 item 3): per label, how often people confirmed what the
labellers (model or taught) gave, with a confidence interval; the lowest minimum confidence
that keeps that precision at a target; and applying it.

A floor (``label_thresholds``) makes a machine label of that name below it carried by
nothing: not searched, filtered, counted or shown on a card (:func:`labelkit.db.counts.
effective_terms`). A person's own label of the name (100) is never below a floor, and the
model's row stays in the database: lowering or clearing the floor brings it back. Applying
re-derives the photos that carry a machine label of the name, a few hundred per transaction,
so a floor over a large library never holds other people's writes for long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from labelkit.db import counts
from labelkit.db.engine import in_transaction, transaction
from labelkit.db.models import ALL_OWNERS
from labelkit.db.queries import thresholds as thresholds_q
from labelkit.interchange.tables import suggest_min_confidence
from labelkit.taught import wilson

#: Photos re-derived per transaction when a floor changes.
CHUNK = 200
#: Reviews a label needs before a minimum confidence is suggested.
MIN_REVIEWS = 5


@dataclass(frozen=True, slots=True)
class LabelReviews:
    """One label's review figures and its suggested minimum confidence."""

    name: str
    reviewed: int
    confirmed: int
    precision: float
    low: float  # 95% Wilson interval of the precision
    high: float
    suggested: float | None  # the lowest minimum confidence keeping the target, if any
    precision_at_suggestion: float | None
    note: str
    floor: float | None  # the floor in force now
    images_now: int
    images_after: int | None  # with the suggested floor

    def interval_text(self) -> str:
        return f"{self.precision:.0%} ({self.low:.0%}–{self.high:.0%})"


def from_reviews(
    engine: Engine, *, owner_id: str | None, target: float, min_reviews: int = MIN_REVIEWS
) -> list[LabelReviews]:
    """Every label people reviewed on ``owner_id``'s photos (None: everyone's), most reviewed
    first, with the lowest floor that keeps the review precision at ``target``."""
    with transaction(engine) as s:
        rows = thresholds_q.reviewed_machine_labels(session=s, owner_id=owner_id)
        floors = thresholds_q.floors(session=s, owner_id=owner_id)
    if not rows:
        return []
    frame = pd.DataFrame(rows, columns=["label", "confidence", "review"]).assign(added=False)
    table = suggest_min_confidence(
        frame, target_precision=target, min_reviews=min_reviews, include_overall=False
    )
    out = []
    with transaction(engine) as s:
        for r in table.itertuples(index=False):
            name = str(r.label)
            n, ok = int(r.reviewed), int(r.confirmed)
            low, high = wilson(np.array([ok]), np.array([n]), z=1.96)
            suggested = None if pd.isna(r.suggested_min_confidence) else float(r.suggested_min_confidence)
            out.append(
                LabelReviews(
                    name=name,
                    reviewed=n,
                    confirmed=ok,
                    precision=ok / n,
                    low=float(low[0]),
                    high=float(high[0]),
                    suggested=suggested,
                    precision_at_suggestion=None
                    if pd.isna(r.precision_at_suggestion)
                    else float(r.precision_at_suggestion),
                    note=str(r.note),
                    floor=floors.get(name.casefold()),
                    images_now=thresholds_q.images_carrying(
                        session=s, owner_id=owner_id, name=name, floor=floors.get(name.casefold(), 0.0)
                    ),
                    images_after=None
                    if suggested is None
                    else thresholds_q.images_carrying(
                        session=s, owner_id=owner_id, name=name, floor=suggested
                    ),
                )
            )
    return sorted(out, key=lambda r: (-r.reviewed, r.name))


def apply(engine: Engine, *, owner_id: str, name: str, min_confidence: float | None, set_by: str) -> int:
    """Set (or with None clear) the floor of ``name`` for ``owner_id`` (``*``: everyone), and
    re-derive the photos it changes; returns how many photos were re-derived."""
    if min_confidence is not None and not (0.0 <= min_confidence <= 100.0 and math.isfinite(min_confidence)):
        raise ValueError("a minimum confidence is between 0 and 100")

    def store(s: Session) -> None:
        if min_confidence is None:
            thresholds_q.clear_floor(session=s, owner_id=owner_id, name=name)
        else:
            thresholds_q.set_floor(
                session=s, owner_id=owner_id, name=name, min_confidence=float(min_confidence), set_by=set_by
            )

    in_transaction(engine, store)
    with transaction(engine) as s:
        ids = thresholds_q.machine_labelled(
            session=s, owner_id=None if owner_id == ALL_OWNERS else owner_id, name=name
        )
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]

        def derive(s: Session, chunk: list[str] = chunk) -> None:
            with counts.counting(s, chunk):
                pass  # counting derives the photos' terms (with the new floor) and their totals

        in_transaction(engine, derive)
    return len(ids)
