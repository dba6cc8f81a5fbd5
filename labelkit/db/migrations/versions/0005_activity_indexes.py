"""activity indexes: the 30-day activity chart and the per-minute chart at a million images

``images.labelled_at`` had no index, so "labelled per day" read every row of a user's
(or, for admins, everyone's) images. (owner, labelled_at) serves a user; (labelled_at)
serves admins and the pipeline page's per-minute chart. Key lengths on utf8mb4:
64*4 + 8 = 264 bytes and 8 bytes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_owner_labelled", ["owner_id", "labelled_at"], unique=False)
        batch_op.create_index("ix_images_labelled", ["labelled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_labelled")
        batch_op.drop_index("ix_images_owner_labelled")
