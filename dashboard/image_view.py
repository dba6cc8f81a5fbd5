"""What the image page shows of an image's label rows: one entry per label name (its
confidence, parents, categories, boxes and the person's verdict) and the boxes to draw.

Plain functions over rows (no Streamlit), so the rules are tested without a browser:

* **One confidence per thing.** A label's confidence is the labeller's certainty that the
  photo shows it (the best model row of that name). A box's own number (the detector's score
  for that one box) is a different thing: it is listed with the label as "box confidence",
  never written on the photo beside the label's name, where two numbers for "Dog" (60% on
  the box, 83.8% in the list) read as a contradiction.
* **A rejected name draws no box.** A person's rejection (or one it implies, see
  :func:`labelkit.db.counts.implied_rejections`) takes the label's boxes off the photo, the
  model's and any a person drew for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from labelkit import render
from labelkit.db.models import MACHINE_SOURCES, LabelRow, LabelSource, ReviewState
from labelkit.domain import FACE_LABEL, BoundingBox


@dataclass
class LabelView:
    name: str
    confidence: float | None = None  # the model's, None for labels people added
    parents: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    box_confidences: list[float] = field(default_factory=list)  # the model's boxes, best first
    drawn_boxes: int = 0  # boxes people drew (or imported)
    review: ReviewState | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    implied_by: str | None = None  # rejected because the person rejected this name
    suggested: bool = False  # a suggestion from what the owner taught (source ``learned``)

    @property
    def boxes(self) -> int:
        return len(self.box_confidences) + self.drawn_boxes

    @property
    def rejected(self) -> bool:
        return self.review == ReviewState.REJECTED

    def box_text(self) -> str:
        """How many boxes, and what the model's box numbers are ("" when none)."""
        if not self.boxes:
            return ""
        text = f"{self.boxes} box{'es' if self.boxes > 1 else ''}"
        if self.box_confidences:
            shown = ", ".join(f"{c:.0f}%" for c in self.box_confidences[:5])
            more = " …" if len(self.box_confidences) > 5 else ""
            text += f" (box confidence {shown}{more})"
        return text


def label_views(rows: Iterable[LabelRow], names: dict[str, str]) -> list[LabelView]:
    """One view per label name: those that stand first, the most confident first (labels only
    people gave after the model's), then the rejected ones."""
    views: dict[str, LabelView] = {}
    for r in rows:
        v = views.setdefault(r.name, LabelView(name=r.name))
        if r.source in MACHINE_SOURCES:
            if r.instance == 0:
                v.suggested = v.suggested or r.source == LabelSource.LEARNED
                v.confidence = max(v.confidence or 0.0, r.confidence)
                v.parents = list(r.parents or [])
                v.categories = list(r.categories or [])
            else:
                v.box_confidences.append(float(r.confidence))
        elif r.instance > 0:
            v.drawn_boxes += 1
        else:
            v.review = ReviewState(r.review)
            v.reviewed_by = names.get(r.created_by or "", "someone")
            v.reviewed_at = r.created_at
            v.implied_by = r.implied_by
            v.parents = v.parents or list(r.parents or [])
            v.categories = v.categories or list(r.categories or [])
    for v in views.values():
        v.box_confidences.sort(reverse=True)
    return sorted(
        views.values(), key=lambda v: (v.rejected, v.confidence is None, -(v.confidence or 0), v.name)
    )


def rejected_names(rows: Iterable[LabelRow]) -> set[str]:
    """Names a person rejected on the image (or that a rejection implies)."""
    return {
        r.name
        for r in rows
        if r.source == LabelSource.HUMAN and r.instance == 0 and r.review == ReviewState.REJECTED
    }


def boxes_to_draw(rows: Iterable[LabelRow]) -> list[render.Box]:
    """The boxes of the labels that stand, captioned with the label's name only."""
    rows = list(rows)
    rejected = rejected_names(rows)
    return [
        render.Box(
            left=r.box_left or 0.0,
            top=r.box_top or 0.0,
            width=r.box_width or 0.0,
            height=r.box_height or 0.0,
            caption=r.name,
        )
        for r in rows
        if r.instance > 0 and r.box_left is not None and r.name not in rejected
    ]


def _overlap(a: render.Box, b: render.Box) -> float:
    """Intersection over union of two boxes."""
    w = min(a.left + a.width, b.left + b.width) - max(a.left, b.left)
    h = min(a.top + a.height, b.top + b.height) - max(a.top, b.top)
    inter = max(0.0, w) * max(0.0, h)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def with_people(boxes: list[render.Box], named: Iterable[tuple[BoundingBox, str]]) -> list[render.Box]:
    """The boxes to draw with each named person's face captioned with their name, in place of
    the face box it is (a detector's "Face" box overlapping it by half or more)."""
    people = [
        render.Box(left=b.left, top=b.top, width=b.width, height=b.height, caption=name) for b, name in named
    ]
    kept = [
        box
        for box in boxes
        if not (box.caption == FACE_LABEL and any(_overlap(box, p) >= 0.5 for p in people))
    ]
    return kept + people
