"""image text: the lines and words read in each photo, and its words as search terms (issue #26)

A new table, ``image_text``: per image and labeller version, the lines and words the text
model read (Rekognition's DetectText shape: LINE / WORD, id and parent id, confidence, box and
polygon). The worker writes it with the labels; its words are searchable through
``image_terms`` rows of a new kind, ``text`` (a plain string column: no ALTER needed), which no
running total counts. Photos labelled before this revision have no text until they are
labelled again (``labelkit relabel``: the labeller's version changed, so every photo is due).

Downgrade drops the table and the ``text`` terms (the older code knows neither).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "image_text",
        sa.Column("image_id", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("detection_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("text", sa.String(length=1024), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("box_left", sa.Float(), nullable=False),
        sa.Column("box_top", sa.Float(), nullable=False),
        sa.Column("box_width", sa.Float(), nullable=False),
        sa.Column("box_height", sa.Float(), nullable=False),
        sa.Column("polygon", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_text_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("image_id", "model_version", "detection_id", name=op.f("pk_image_text")),
        **MYSQL,
    )


def downgrade() -> None:
    terms = sa.table("image_terms", sa.column("kind"))
    op.execute(terms.delete().where(terms.c.kind == "text"))
    op.drop_table("image_text")
