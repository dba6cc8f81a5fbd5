"""queued_at: when an image's labelling job was handed to the queue

An upload writes the row, stores the object, then enqueues (or, on AWS, the bucket's
notification enqueues). A dashboard killed between those steps used to leave an
image ``pending`` forever. ``queued_at`` is set once the job is surely on its way,
so the reconciler (``labelkit.reconcile``) can tell "waiting in a long queue" (set)
from "never enqueued" (NULL) without looking inside the queue. Existing rows were
enqueued when they were uploaded: they get their ``created_at``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "queued_at",
                sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
                nullable=True,
            )
        )
    op.execute("UPDATE images SET queued_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("queued_at")
