"""dashboard indexes: aggregates at a million images (issue #9)

* ``labels``: a covering index for the queries over image-level model labels (label
  counts, the confidence histogram, model versions): ``WHERE source = 'model' AND
  instance = 0``, grouped by name, reading image id and confidence from the index alone.
  Key length on utf8mb4: source 16*4 + instance 2 + name 128*4 + image_id 32*4 +
  confidence 4 = 710 bytes, well under InnoDB's 3,072.
* ``images``: (owner, status) for a user's status counts (the gallery's header), which
  otherwise scanned the whole status index. 64*4 + 16*4 = 320 bytes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_owner_status", ["owner_id", "status"], unique=False)
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_labels_model_stats", ["source", "instance", "name", "image_id", "confidence"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index("ix_labels_model_stats")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_owner_status")
