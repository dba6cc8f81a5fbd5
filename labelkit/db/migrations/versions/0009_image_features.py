"""image features: perceptual hash, embedding and thumbnail key per image (issue #18)

A new table, ``image_features``, one row per labelled image: what the worker derives from
the photo besides its labels (``labelkit.features``). Similar photos read the embeddings,
near-duplicate detection the perceptual hashes, the gallery the stored thumbnails. It is
kept apart from ``images`` so that loading images never loads embeddings; ``owner_id`` is
repeated so one person's features are read without a join. Images labelled before this
revision have no row until they are labelled again (``python -m labelkit.relabel``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "image_features",
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("phash", sa.String(length=16), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(length=64), nullable=True),
        sa.Column("thumb_key", sa.String(length=600), nullable=True),
        sa.Column("updated_at", DT, nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_features_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_image_features_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_features")),
        **MYSQL,
    )
    with op.batch_alter_table("image_features", schema=None) as batch_op:
        batch_op.create_index("ix_image_features_owner", ["owner_id"], unique=False)


def downgrade() -> None:
    # Dropping the table drops its indexes (InnoDB keeps ix_image_features_owner as the
    # owner_id foreign key's index, so it cannot be dropped first).
    op.drop_table("image_features")
