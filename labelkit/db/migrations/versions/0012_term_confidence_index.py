"""search ranking: an index on image_terms (kind, term, confidence) (issue #18)

A search's page is ranked from the best-scored matches only: the confidence of the n-th
best row of each matched term, then the images scoring at least that. For a search of
everyone's photos (an admin's, no owner to narrow it) this index holds each term's rows in
confidence order, so both read about n rows per term instead of every row carrying it
(an admin's "dog" at 1,000,000 photos: 400,000). A person's search reads the owner index of
0011, which is in that order already.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_terms", schema=None) as batch_op:
        batch_op.create_index("ix_image_terms_term_confidence", ["kind", "term", "confidence"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_terms", schema=None) as batch_op:
        batch_op.drop_index("ix_image_terms_term_confidence")
