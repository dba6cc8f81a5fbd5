"""derived terms: a person's rejection outranks the model; one "images with label X" (issue #16)

No schema change: a data migration. ``image_terms`` used to be added to on every write
(insert-or-ignore), so a label a person rejected kept its name and parents there: the
gallery's search and cards, the filter's counts and the exports still showed it. Now every
write derives an image's terms from its *effective* labels (``labelkit.db.counts.
effective_terms``: the model's minus those a person rejected, plus people's own at 100), and
``label_counts.images`` counts images carrying the name as a label or a parent (the gallery
filter's count), not images with a model row of that name. This derives every image's terms
again and recomputes the running totals under those rules (the same code as
``python -m labelkit.db.counts --terms``): one pass over the images, 500 at a time.

Downgrade changes nothing: the derived terms are valid rows for the older code too. The older
code counts ``label_counts.images`` its own way, so after downgrading run that version's
``python -m labelkit.db.counts`` to recount under its rules.

Offline (``alembic upgrade --sql``) there is no data to derive from: the generated script
says to run ``python -m labelkit.db.counts --terms`` once it has been applied.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy.orm import Session

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if context.is_offline_mode():
        op.get_context().impl.static_output(
            "-- 0008 derives image_terms and the running totals from the rows: "
            "run `python -m labelkit.db.counts --terms` after applying this script."
        )
        return
    from labelkit.db.counts import derive_all_terms, rebuild

    session = Session(bind=op.get_bind())
    # image_terms.owner_id comes with 0011, labels.implied_by with 0013
    derive_all_terms(session, with_owner=False, implied=False)
    rebuild(session)
    session.flush()


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
