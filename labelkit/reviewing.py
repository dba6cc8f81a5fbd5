"""Reviewing many photos at once (the Review page's "Accept selected" / "select all"), in
short transactions.

A selection of 10,000 photos holds about 50,000 labels. Written in one transaction it held the
database for minutes, and every other person's sign-in, upload and labelling waited or failed
("database is locked" on SQLite). Here the labels awaiting review on the chosen photos are
read first, then written :data:`BATCH_ROWS` at a time, each batch its own transaction (one
write per image within it, all its labels at once), with progress after each.

Exactly the photos asked for are reviewed: the page passes the ids it counted and showed, so
a photo that arrives meanwhile is not reviewed by a "select all" that never showed it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from labelkit.db.engine import let_others_write, transaction
from labelkit.db.models import ReviewState
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.domain import Viewer
from labelkit.errors import NotFound

#: Labels written per transaction.
BATCH_ROWS = 200


def review_images(
    *,
    engine: Engine,
    viewer: Viewer,
    image_ids: Sequence[str],
    review: ReviewState,
    progress: Callable[[int, int], None] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Confirm or reject every label awaiting review on these photos (the viewer's; others
    are left out, as if missing); returns how many labels were reviewed. ``progress(labels
    done, labels)`` after each transaction."""
    with transaction(engine) as s:
        pairs = review_q.awaiting_pairs(session=s, viewer=viewer, image_ids=image_ids)
    done = 0
    for start in range(0, len(pairs), batch_rows):
        batch = pairs[start : start + batch_rows]
        by_image: dict[str, list[str]] = {}
        for image_id, name in batch:
            by_image.setdefault(image_id, []).append(name)
        with transaction(engine) as s:
            for image_id, names in by_image.items():
                try:
                    label_q.set_human_labels(
                        session=s,
                        viewer=viewer,
                        image_id=image_id,
                        labels=[label_q.HumanLabel(name, review) for name in names],
                    )
                except NotFound:  # deleted meanwhile
                    continue
                done += len(names)
        if progress is not None:
            progress(min(start + len(batch), len(pairs)), len(pairs))
        if start + batch_rows < len(pairs):
            let_others_write(engine)
    return done
