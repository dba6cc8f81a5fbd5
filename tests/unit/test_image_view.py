"""The image page's view of label rows (issue 24, items 2 and 7): one confidence per thing,
and a rejected label draws no box."""

from __future__ import annotations

from dashboard.image_view import boxes_to_draw, label_views
from labelkit.db.models import LabelRow, LabelSource, ReviewState


def _row(
    name: str,
    instance: int = 0,
    confidence: float = 80.0,
    *,
    source: LabelSource = LabelSource.MODEL,
    review: ReviewState = ReviewState.UNREVIEWED,
    implied_by: str | None = None,
) -> LabelRow:
    box = (0.1, 0.1, 0.3, 0.3) if instance else (None, None, None, None)
    return LabelRow(
        image_id="i",
        source=source,
        model_version="m" if source == LabelSource.MODEL else "",
        name=name,
        instance=instance,
        confidence=confidence,
        parents=[],
        aliases=[],
        categories=[],
        box_left=box[0],
        box_top=box[1],
        box_width=box[2],
        box_height=box[3],
        review=review,
        implied_by=implied_by,
    )


def test_a_box_is_captioned_with_its_label_and_its_own_number_is_named_in_the_list() -> None:
    rows = [_row("Dog", 0, 83.8), _row("Dog", 1, 60.0), _row("Dog", 2, 45.0)]
    # THEN the photo says "Dog" on each box, with no second percentage beside the label's
    assert [b.caption for b in boxes_to_draw(rows)] == ["Dog", "Dog"]
    (dog,) = label_views(rows, {})
    assert dog.confidence == 83.8
    assert dog.box_text() == "2 boxes (box confidence 60%, 45%)"


def test_a_rejected_label_and_one_its_rejection_implies_draw_no_box() -> None:
    rows = [
        _row("Dog", 0),
        _row("Dog", 1),
        _row("Cat", 0),
        _row("Cat", 1),
        _row("Cat", 0, 100, source=LabelSource.HUMAN, review=ReviewState.REJECTED),
        _row("Feline", 0),
        _row("Feline", 1),
        _row("Feline", 0, 100, source=LabelSource.HUMAN, review=ReviewState.REJECTED, implied_by="Cat"),
        # a box a person drew, then rejected the name: not drawn either
        _row("Sofa", 1, 100, source=LabelSource.HUMAN),
        _row("Sofa", 0, 100, source=LabelSource.HUMAN, review=ReviewState.REJECTED),
    ]
    assert [b.caption for b in boxes_to_draw(rows)] == ["Dog"]
    views = {v.name: v for v in label_views(rows, {})}
    assert views["Feline"].rejected and views["Feline"].implied_by == "Cat"
    assert views["Cat"].rejected and views["Cat"].implied_by is None
